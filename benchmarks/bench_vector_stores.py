"""Benchmark of the vector stores side by side (``ian_d2.search.vector_store``): faiss in-process
(``flat``, ``hnsw``) and Milvus Lite (``FLAT``, ``HNSW``, through pymilvus and the code the
index uses, :class:`ian_d2.search.milvus_store.MilvusStore`); prints and writes JSON.

For each number of stored detections N (``--sizes``, default 10^5 and 10^6) and each store and
index kind: insert throughput (vectors/s: the faiss build, or the Milvus upserts, index build
and load), single-query latency (p50 / p99 / mean, wall clock, top ``--k`` = 100) and
recall@100 against the exact top-100 of the same filter, for three cases:

* ``all``: no filter;
* ``camera``: one camera of 20 (``source == cam07``; about N / 20 rows pass);
* ``hour``: one hour of 24 (``time_s`` in [7 h, 8 h]; about N / 24 rows pass).

Each stored vector gets a camera (uniform over 20) and a time (uniform over 24 h); the vectors
are the ``clustered`` data of ``benchmarks/bench_search.py`` (``--decay`` as there). Filters
are applied before the top-k (faiss: an id selector; Milvus: a boolean expression).

**Milvus Lite is slow** (a pure-Python engine in a gRPC server process): about 3.3 s per top-100
query at 10^5 vectors was measured on 2 cores, so each (size, store, case) gets at most
``--milvus-queries`` queries and stops early after ``--milvus-query-budget-s`` seconds (at
least 2 queries); sizes above ``--milvus-max-size`` skip Milvus (said in ``skipped``). HNSW
builds use ``--ef-construction`` (default 40 here, 200 in the product's default) to keep a full
run within about 15 minutes on 2 cores; the value is recorded. Milvus Lite builds its HNSW
graph far slower than faiss (about 110 s for 10^5 vectors at efConstruction 40 on 2 busy cores,
measured while sizing this benchmark), so Milvus Lite HNSW runs only up to
``--milvus-hnsw-max-size`` (10^5) in the default run; 10^6 is a separate run of its own.

Usage (the full run; about 12-15 minutes on 2 idle cores, estimated from 10^5 runs)::

    python -m benchmarks.bench_vector_stores --output benchmarks/vector_stores_cpu.json

Milvus Lite HNSW at 10^6 (alone: an estimated 20-30 minutes, most of it the graph build)::

    python -m benchmarks.bench_vector_stores --sizes 1000000 --stores milvus-lite \
        --kinds hnsw --milvus-hnsw-max-size 1000000 --output benchmarks/vector_stores_hnsw1e6.json

Smoke test::

    python -m benchmarks.bench_vector_stores --sizes 2000 --faiss-queries 20 \\
        --milvus-queries 3 --output /tmp/vs.json
"""

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import faiss
import numpy as np

from benchmarks.bench_search import make_dataset, recall_at
from benchmarks.machine import cpu_model, load_avg, other_processes, write_json
from ian_d2.search.vector_index import VectorIndexParams, build_vector_index
from ian_d2.search.vector_store import FaissStore, SearchFilter, parse_store_uri

__all__ = ["make_fields", "exact_topk", "shard_bytes_per_detection", "main"]

logger = logging.getLogger(__name__)

CAMERAS = 20
DAY_S = 24 * 3600.0
CASES = {
    "all": SearchFilter(),
    "camera": SearchFilter(sources=("cam07",)),
    "hour": SearchFilter(time_min=7 * 3600.0, time_max=8 * 3600.0),
}


def make_fields(n: int, seed: int = 0):
    """(sources list, [N] camera index, [N] time_s, [N] score) of N synthetic detections."""
    rng = np.random.default_rng(seed + 1)
    cam = rng.integers(0, CAMERAS, n).astype(np.int32)
    t = rng.uniform(0.0, DAY_S, n)
    score = rng.uniform(0.5, 1.0, n).astype(np.float32)
    return [f"cam{c:02d}" for c in range(CAMERAS)], cam, t, score


def exact_topk(x: np.ndarray, q: np.ndarray, mask: Optional[np.ndarray], k: int) -> np.ndarray:
    """[Q, k] ids of the exact top-k of ``x`` [N, D] for ``q`` [Q, D] among ``mask``'s rows."""
    rows = np.arange(len(x)) if mask is None else np.flatnonzero(mask)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x[rows]))
    _, ids = index.search(q, min(k, len(rows)))
    return np.where(ids >= 0, rows[np.maximum(ids, 0)], -1)


def shard_bytes_per_detection(per_item: int, items: int = 256, seed: int = 0) -> Dict:
    """Bytes per stored detection of one Parquet shard as ``index`` writes it: ``items`` video
    frames (``index``'s default shard of 256) of one camera with ``per_item`` detections each,
    256-d L2-normalised float32 embeddings (random: as incompressible as real ones)."""
    from ian_d2.search.manifest import SHARDS
    from ian_d2.search.shards import ShardWriter
    from ian_d2.search.sources import GalleryItem

    rng = np.random.default_rng(seed)
    src = "/footage/site-a/camera-0042/2026-12-01T08.mp4"
    frames = [GalleryItem(src, 2 * i, float(i)) for i in range(items)]
    dets = []
    for _ in frames:
        e = rng.standard_normal((per_item, 256)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        boxes = rng.uniform(0, 1000, (per_item, 4)).astype(np.float32)
        scores = rng.uniform(0.5, 1, per_item).astype(np.float32)
        dets.append({"boxes": boxes, "scores": scores, "embeds": e})
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, SHARDS))
        path = ShardWriter(d, 0, 256).write(frames, [(1920, 1080)] * items, dets)
        size = os.path.getsize(path)
    n = items * per_item
    return {"detections_per_item": per_item, "rows": n, "bytes": size,
            "bytes_per_detection": round(size / n, 1)}  # fmt: skip


def _latency(times_s: Sequence[float]) -> Dict[str, float]:
    ms = np.asarray(times_s) * 1e3
    return {
        "p50": round(float(np.median(ms)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(float(ms.mean()), 3),
        "queries": int(len(ms)),
    }


def _pad(ids: List[np.ndarray], k: int) -> np.ndarray:
    out = np.full((len(ids), k), -1, np.int64)
    for i, r in enumerate(ids):
        out[i, : min(k, len(r))] = r[:k]
    return out


def run_faiss(args, x, fields, queries, truth, kind: str) -> Dict:
    params = VectorIndexParams(kind=kind, ef_construction=args.ef_construction)
    t0 = time.perf_counter()
    index = build_vector_index(x, params)
    build_s = time.perf_counter() - t0
    store = FaissStore(index, *fields)
    out = {"store": "faiss", "kind": kind, "insert_s": round(build_s, 2),
           "insert_per_s": round(len(x) / build_s, 1), "cases": {}}  # fmt: skip
    if kind == "hnsw":
        out["params"] = {"M": params.hnsw_m, "efConstruction": params.ef_construction,
                         "efSearch": params.ef_search}  # fmt: skip
    for case, f in CASES.items():
        q = queries[: args.faiss_queries]
        store.search(q[:2], args.k, f)  # warm-up
        times, ids = [], []
        for i in range(len(q)):
            t0 = time.perf_counter()
            _, rows = store.search(q[i : i + 1], args.k, f)
            times.append(time.perf_counter() - t0)
            ids.append(rows[0])
        out["cases"][case] = {
            "latency_ms": _latency(times),
            "recall_at_100": round(recall_at(_pad(ids, args.k), truth[case][: len(q)], 100), 4),
        }
        logger.info("faiss %s N=%d %s: %s", kind, len(x), case, out["cases"][case])
    return out


def run_milvus(args, x, fields, queries, truth, kind: str, work: str) -> Dict:
    from ian_d2.search.milvus_store import MilvusStore

    db = os.path.join(work, f"bench_{kind}_{len(x)}.db")
    spec = parse_store_uri(f"milvus-lite://{db}")
    params = VectorIndexParams(kind=kind, ef_construction=args.ef_construction)
    model = {"weights_sha256": "bench", "config_sha256": "bench"}
    store = MilvusStore(spec, "bench", x.shape[1], model, params, timeout=3600.0)
    sources, cam, t, score = fields
    src = [sources[c] for c in cam]
    try:
        store.drop()
        store.create()
        t0 = time.perf_counter()
        keys = np.arange(len(x), dtype=np.int64)
        for a in range(0, len(x), args.insert_batch):
            b = min(a + args.insert_batch, len(x))
            store.upsert(keys[a:b], x[a:b], src[a:b], t[a:b], score[a:b], keys[a:b], 0,
                         batch=args.insert_batch)  # fmt: skip
        upsert_s = time.perf_counter() - t0
        store.client.flush(store.name)
        store.client.release_collection(store.name)
        store._loaded = False
        store._load()  # index built and loaded
        insert_s = time.perf_counter() - t0
        assert store.count() == len(x)
        out = {"store": "milvus-lite", "kind": kind.upper(), "insert_s": round(insert_s, 2),
               "upsert_s": round(upsert_s, 2), "insert_per_s": round(len(x) / insert_s, 1),
               "cases": {}}  # fmt: skip
        if kind == "hnsw":
            out["params"] = {"M": params.hnsw_m, "efConstruction": params.ef_construction,
                             "ef": params.ef_search}  # fmt: skip
        for case, f in CASES.items():
            store.search(queries[:1], args.k, f)  # warm-up
            times, ids = [], []
            t_case = time.perf_counter()
            for i in range(args.milvus_queries):
                t0 = time.perf_counter()
                _, found = store.search(queries[i : i + 1], args.k, f)
                times.append(time.perf_counter() - t0)
                ids.append(found[0])
                if i >= 1 and time.perf_counter() - t_case > args.milvus_query_budget_s:
                    break
            out["cases"][case] = {
                "latency_ms": _latency(times),
                "recall_at_100": round(recall_at(_pad(ids, args.k), truth[case][: len(ids)],
                                                 100), 4),  # fmt: skip
            }
            logger.info("milvus-lite %s N=%d %s: %s", kind, len(x), case, out["cases"][case])
        return out
    finally:  # the file goes with the work folder (a drop would race Milvus Lite's builds)
        store.close()


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--kinds", nargs="+", choices=("flat", "hnsw"), default=["flat", "hnsw"])
    p.add_argument("--stores", nargs="+", choices=("faiss", "milvus-lite"),
                   default=["faiss", "milvus-lite"])  # fmt: skip
    p.add_argument("--faiss-queries", type=int, default=200, help="queries per faiss case")
    p.add_argument("--milvus-queries", type=int, default=5,
                   help="at most this many queries per Milvus Lite case")  # fmt: skip
    p.add_argument("--milvus-query-budget-s", type=float, default=20.0,
                   help="stop a Milvus Lite case's queries after this (>= 2 queries)")  # fmt: skip
    p.add_argument("--milvus-max-size", type=int, default=1_000_000,
                   help="sizes above this skip Milvus Lite")  # fmt: skip
    p.add_argument("--milvus-hnsw-max-size", type=int, default=100_000,
                   help="sizes above this skip Milvus Lite HNSW (its build: ~110 s at 10^5 "
                   "on 2 cores, about linear in N)")  # fmt: skip
    p.add_argument("--insert-batch", type=int, default=5000, help="rows per Milvus upsert")
    p.add_argument("--ef-construction", type=int, default=40, help="HNSW build candidates")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--decay", type=float, default=0.5, help="as bench_search --decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None, help="folder for the Milvus Lite files (temp)")
    p.add_argument("--output", default=None, help="JSON file to write")
    p.add_argument("--shard-bytes-only", action="store_true",
                   help="only the Parquet bytes per detection (1, 4, 10 per frame)")  # fmt: skip
    args = p.parse_args(argv)
    if args.shard_bytes_only:
        out = {"shard_bytes": [shard_bytes_per_detection(k) for k in (1, 4, 10)]}
        print(json.dumps(out, indent=1))
        return out
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s")
    out = {
        "benchmark": "bench_vector_stores",
        "args": vars(args),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "load_avg_before": load_avg(),
            "other_processes": other_processes(),
        },
        "shard_bytes": [shard_bytes_per_detection(k) for k in (1, 4, 10)],
        "results": [],
        "skipped": [],
    }
    try:
        import milvus_lite
        import pymilvus

        out["machine"]["pymilvus"] = pymilvus.__version__
        out["machine"]["milvus_lite"] = milvus_lite.__version__
    except ImportError:
        pass
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_vs_")
    os.makedirs(work, exist_ok=True)
    t_all = time.perf_counter()
    try:
        for n in args.sizes:
            nq = max(args.faiss_queries, args.milvus_queries)
            x, queries = make_dataset("clustered", n, nq, seed=args.seed, decay=args.decay)[:2]
            fields = make_fields(n, args.seed)
            truth = {}
            for case, f in CASES.items():
                mask = f.mask(fields[0], fields[1], fields[2], fields[3])
                truth[case] = exact_topk(x, queries, mask, args.k)
            for store in args.stores:
                if store == "milvus-lite" and n > args.milvus_max_size:
                    out["skipped"].append(f"milvus-lite at N={n} (> --milvus-max-size)")
                    continue
                for kind in args.kinds:
                    if store == "milvus-lite" and kind == "hnsw" and n > args.milvus_hnsw_max_size:
                        out["skipped"].append(
                            f"milvus-lite HNSW at N={n} (> --milvus-hnsw-max-size)"
                        )
                        continue
                    if store == "faiss":
                        r = run_faiss(args, x, fields, queries, truth, kind)
                    else:
                        r = run_milvus(args, x, fields, queries, truth, kind, work)
                    r["n"] = n
                    out["results"].append(r)
            del x
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    out["machine"]["load_avg_after"] = load_avg()
    if args.output:
        write_json(out, args.output)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
