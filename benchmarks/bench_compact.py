"""The served embeddings of ``python -m ian_d2.search serve`` in fp32, fp16 and int8: bytes per
detection held in memory and recall@k against exact float32 search; prints JSON.

For each ``--served-vectors`` precision, the service's own :class:`ServedStore` is fed
``--rows`` stand-in embeddings (``benchmarks.bench_search.make_dataset``: clustered,
anisotropic with ``--decay`` 0.5, 256-d; ``--data uniform`` for random unit vectors) in appends
of ``--append-rows`` (as shards arrive), then ``--queries`` queries are ranked:

* ``recall_compact_only``: the top ``--k`` (100) by the compact similarity alone (no re-ranking);
* ``recall_rerank_fixed``: the ``--rerank`` (200) best compact candidates re-ranked in float32,
  their top ``--k`` (the classic SQ8 + re-ranking, no error bound);
* ``recall_served``: the service's ranking (``query.rank``: re-ranking widened until the error
  bound proves the page exact; 1.0 by construction), with the rows it re-ranked per query
  (mean, max) and its scans of the codes per query, for a page of ``--k`` and of 20 hits.

recall@k = |top-k ∩ exact top-k| / k, averaged over the queries. Bytes per detection: the
vectors held in the process (codes + ranges, or the float32 matrix: ``resident_bytes``), the
float32 file (disk; the OS's file cache), the snapshot's other per-row columns (source, frame,
time, box, score: 36 bytes), and the process's anonymous memory growth while building
(``RssAnon``, Linux, after returning the allocator's free memory with ``malloc_trim``; the
float32 matrix of ``fp32`` has a growing buffer's spare room). ``served_mb_at_1e6``: (vectors + columns) x 10^6.
``cpu_ms_per_query_at_20`` (this process's CPU time, all threads, per ranking of a page of 20;
other processes disturb it less than the wall time, also recorded) is informative only: the
service's speed is measured by ``benchmarks/bench_serve.py`` on a quiet machine.

Usage: ``python -m benchmarks.bench_compact [--rows 100000] [--queries 200] [--output FILE]``
"""

import argparse
import ctypes
import json
import logging
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmarks.bench_search import make_dataset, recall_at
from benchmarks.machine import cpu_model, load_avg, other_processes, write_json
from ian_d2.search.serve import query
from ian_d2.search.serve.matrix import SERVED_PRECISIONS, ServedStore, ServeVectors

logger = logging.getLogger("bench_compact")

ROW_COLUMNS_BYTES = 4 + 4 + 8 + 16 + 4  # src int32, frame int32, time float64, box 4 x f32, score
GOAL_MB_AT_1E6 = 600


def rss_anon() -> Optional[int]:
    """Anonymous resident bytes of this process (Linux ``/proc/self/status``), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _trim() -> None:
    """Return the allocator's free memory to the system (glibc ``malloc_trim``; elsewhere
    nothing): what stays resident is then what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def build(precision: str, x: np.ndarray, append_rows: int, rerank: int, directory: str):
    """The served matrix of ``x`` [N, D] fed in appends, and the anonymous memory it took."""
    _trim()
    before = rss_anon()
    settings = ServeVectors(precision, rerank=rerank, batch_window_ms=0)  # one query at a time
    store = ServedStore(x.shape[1], settings, directory)
    served = None
    for a in range(0, len(x), append_rows):
        store, served = store.append(a, x[a : a + append_rows])
    _trim()
    after = rss_anon()
    grown = None if before is None or after is None else max(after - before, 0)
    return store, served, grown


def _uncount(served) -> None:
    served.__dict__.pop("candidates", None)


def _counted(served):
    """Counts the scans and candidates of ``served`` ([scans, candidates]; :func:`_uncount`)."""
    count = [0, 0]
    inner = served.candidates

    def candidates(q, k, mask=None):
        count[0] += 1
        count[1] += k
        return inner(q, k, mask)

    served.candidates = candidates
    return count


def measure(precision: str, x, queries, exact_ids, args, directory: str) -> Dict:
    n, d = x.shape
    store, served, grown = build(precision, x, args.append_rows, args.rerank, directory)
    k = args.k
    zeros_i, zeros_f = np.zeros(n, np.int32), np.zeros(n, np.float32)
    times = np.full(n, np.nan)
    out = {
        "precision": precision,
        "vector_bytes_per_detection": round(served.resident_bytes / n, 2),
        "float32_file_bytes_per_detection": 4 * d if served.compact else 0,
        "row_columns_bytes_per_detection": ROW_COLUMNS_BYTES,
        "rss_anon_growth_bytes_per_detection": None if grown is None else round(grown / n, 1),
    }
    out["served_mb_at_1e6"] = round(
        (out["vector_bytes_per_detection"] + ROW_COLUMNS_BYTES) * 1e6 / 2**20, 1
    )
    served_ids, compact_ids, fixed_ids = [], [], []
    reranked: List[int] = []
    scans: List[int] = []
    for q in queries:
        if served.compact:
            rows, sims = served.candidates(q, k)
            compact_ids.append(rows[np.argsort(-sims, kind="stable")])
            rows, _ = served.candidates(q, max(args.rerank, k))
            rows, _ = query.sort_hits(rows, served.similarities_of(rows, q))
            fixed_ids.append(rows[:k])
        count = _counted(served)
        r = query.rank(served, zeros_i, times, zeros_f, q, top_k=k)
        _uncount(served)
        served_ids.append(r.rows)
        scans.append(count[0])
        reranked.append(count[1])
    out[f"recall_served_at_{k}"] = round(recall_at(np.stack(served_ids), exact_ids, k), 4)
    if served.compact:
        out[f"recall_compact_only_at_{k}"] = round(
            recall_at(np.stack(compact_ids), exact_ids, k), 4
        )
        out[f"recall_rerank_fixed_at_{k}"] = round(recall_at(np.stack(fixed_ids), exact_ids, k), 4)
        out[f"reranked_rows_per_query_at_{k}"] = {
            "mean": round(float(np.mean(reranked)), 1),
            "max": int(np.max(reranked)),
        }
        out[f"scans_per_query_at_{k}"] = round(float(np.mean(scans)), 2)
        bounds = [served.error_bound(q) for q in queries]
        out["error_bound_mean"] = round(float(np.mean(bounds)), 5)
        rows, sims = served.candidates(queries[0], n)
        out["max_error_query0"] = round(float(np.abs(sims - x[rows] @ queries[0]).max()), 5)
    wall: List[float] = []
    counts = []
    cpu0 = time.process_time()
    for q in queries:
        count = _counted(served)
        t0 = time.perf_counter()
        query.rank(served, zeros_i, times, zeros_f, q, top_k=20)
        wall.append((time.perf_counter() - t0) * 1000.0)
        counts.append(count[1])
        _uncount(served)
    out["reranked_rows_per_query_at_20"] = round(float(np.mean(counts)), 1)
    out["cpu_ms_per_query_at_20"] = round((time.process_time() - cpu0) * 1000.0 / len(queries), 3)
    out["wall_ms_per_query_at_20_median"] = round(float(np.median(wall)), 3)
    del store, served
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--rerank", type=int, default=200)
    p.add_argument("--append-rows", type=int, default=5000, help="rows per append (a shard)")
    p.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    p.add_argument("--decay", type=float, default=0.5)
    p.add_argument("--precisions", nargs="+", choices=SERVED_PRECISIONS, default=SERVED_PRECISIONS)
    p.add_argument("--dir", default=None, help="folder of the float32 files (default: temporary)")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    x, queries, desc, _ = make_dataset(
        args.data, args.rows, args.queries, args.dim, decay=args.decay
    )
    exact_ids = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, : args.k]
    out = {
        "benchmark": "bench_compact",
        "rows": args.rows,
        "queries": args.queries,
        "k": args.k,
        "rerank": args.rerank,
        "append_rows": args.append_rows,
        "dataset": desc,
        "machine": {"cpu": cpu_model(), "load_avg": load_avg(), "busy": other_processes(4)},
        "goal_mb_at_1e6": GOAL_MB_AT_1E6,
        "results": [],
    }
    for precision in args.precisions:  # warm-up: imports and first allocations
        build(precision, x[:1000], 500, args.rerank, args.dir)
    for precision in args.precisions:
        logger.info("%s ...", precision)
        out["results"].append(measure(precision, x, queries, exact_ids, args, args.dir))
    fits = [
        r
        for r in out["results"]
        if r[f"recall_served_at_{args.k}"] >= 0.999 and r["served_mb_at_1e6"] <= GOAL_MB_AT_1E6
    ]
    out["chosen"] = min(fits, key=lambda r: r["served_mb_at_1e6"])["precision"] if fits else None
    print(json.dumps(out, indent=1))
    if args.output:
        write_json(out, args.output)
    return out


if __name__ == "__main__":
    main()
