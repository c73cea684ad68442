"""Benchmark of the gallery vector index (``ian_d2.search.vector_index``); prints JSON.

For each number of stored detections N and each index kind (``flat``, ``ivf``, ``hnsw``): build
time, serialised bytes per stored vector, the latency of single queries (one query per call, as a
user issues them: median, p99 and mean wall-clock over the queries, and the process CPU time per
query, which other processes on the machine disturb less), the throughput of one batched call
with all the queries, and recall@10 / recall@100 of the index against exact search (``flat``):
recall@k = |approximate top-k ∩ exact top-k| / k, averaged over the queries. Every search asks for
the top ``--k`` (100) and recall@10 is read from its first 10 hits. With ``clustered`` data also
``identity_recall_at_100``: the share of the true matches (detections of the query's identity) in
the exact top-100 that the index returns too. faiss runs with its default number of threads
unless ``--threads`` is given; both are recorded.

Data (``--data``), 256-d L2-normalised float32 (generated in chunks into one array):

* ``clustered``: a stand-in for person embeddings. Identities are random unit centres; each has a
  few to a few dozen detections (log-uniform sizes, 2 to 40), each detection = normalise(centre +
  Gaussian noise) with the noise set for a within-identity cosine of about ``--within-cos``
  (0.7); a share ``--background`` (0.3) of the stored vectors are unrelated ("background /
  unlabeled") random unit vectors. Queries are fresh noisy samples of stored identities.
  ``--decay`` > 0 makes the space anisotropic: centres, background and noise are drawn with
  dimension i scaled by (i + 1) ** -decay (0.5: an effective dimension of about 23 of 256, closer
  to learned embeddings); 0 (the default) is isotropic, where the neighbours beyond a query's own
  identity are as hard to find as in ``uniform``.
* ``uniform``: random unit vectors, queries too: the worst case for approximate search.

An ``ivf`` index is built once per ``--nlist`` value and searched at every ``--nprobe``; an
``hnsw`` index is built once per (``--hnsw-m``, ``--ef-construction``) and searched at every
``--ef-search``; with ``--cache-dir`` the built indexes are saved and later runs on the same data
load them (query-only reruns; ``build_s`` is then the recorded one, ``build_cached`` true).
Parameters not given take the defaults of ``VectorIndexParams``. A size whose data and indexes
would not fit in half the available memory is skipped (said in ``skipped``); so is 10^7 on a
24 GiB machine (10 GiB per copy of the vectors).

Usage: ``python -m benchmarks.bench_search [--sizes 10000 100000 1000000]
[--kinds flat ivf hnsw] [--queries 200] [--data clustered|uniform] [--decay 0.5]
[--nprobe 64 128] [--ef-search 256 512] [--threads N] [--output FILE]``
"""

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import platform
import time
from typing import Dict, List, Optional, Sequence, Tuple

import faiss
import numpy as np

from ian_d2.search.vector_index import (
    INDEX_KINDS,
    VectorIndexParams,
    build_vector_index,
    load_vector_index,
    save_vector_index,
    search_vectors,
    set_search_params,
)

__all__ = [
    "make_dataset",
    "recall_at",
    "identity_recall",
    "measure_queries",
    "index_bytes",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
CHUNK = 65_536  # rows generated per step
WARMUP_QUERIES = 5


def _available_memory() -> Optional[int]:
    """MemAvailable of /proc/meminfo in bytes (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _normalise_rows(x: np.ndarray) -> None:
    """L2-normalise the rows of ``x`` [n, D] in place."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _scales(dim: int, decay: float) -> np.ndarray:
    """Per-dimension scale [D] of the anisotropic space; unit root-mean-square."""
    s = (np.arange(1, dim + 1, dtype=np.float64)) ** -decay
    return (s / np.sqrt(np.mean(s**2))).astype(np.float32)


def make_dataset(
    kind: str,
    n: int,
    n_queries: int,
    dim: int = 256,
    seed: int = 0,
    within_cos: float = 0.7,
    background: float = 0.3,
    id_size: Tuple[int, int] = (2, 40),
    decay: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """
    Stored vectors and queries (see the module docstring), L2-normalised float32.

    Returns:
        (stored [N, D], queries [Q, D], description: the generator's parameters and measured
        statistics, e.g. the mean cosine of two detections of one identity, identities: None for
        ``uniform``, else (identity of each stored vector [N] int32, -1 = background, identity of
        each query [Q] int32))
    """
    rng = np.random.default_rng(seed)
    x = np.empty((n, dim), np.float32)
    if kind == "uniform":
        for a in range(0, n, CHUNK):
            x[a : a + CHUNK] = rng.standard_normal((min(CHUNK, n - a), dim), dtype=np.float32)
            _normalise_rows(x[a : a + CHUNK])
        q = rng.standard_normal((n_queries, dim), dtype=np.float32)
        _normalise_rows(q)
        return x, q, {"data": "uniform", "dim": dim, "seed": seed}, None
    if kind != "clustered":
        raise ValueError(f"unknown data kind {kind!r}")
    scale = _scales(dim, decay)
    # noise of norm^2 ~ tau2 around a unit centre: cos(two samples) ~ 1 / (1 + tau2)
    tau2 = 1.0 / within_cos - 1.0
    sigma = math.sqrt(tau2 / dim)
    n_lab = int(round(n * (1.0 - background)))
    lo, hi = id_size
    sizes: List[np.ndarray] = []
    total = 0
    while total < n_lab:
        s = np.rint(np.exp(rng.uniform(math.log(lo), math.log(hi), 4096))).astype(np.int64)
        sizes.append(s)
        total += int(s.sum())
    sizes = np.concatenate(sizes)
    cum = np.cumsum(sizes)
    n_ids = int(np.searchsorted(cum, n_lab) + 1)
    sizes = sizes[:n_ids]
    sizes[-1] -= int(cum[n_ids - 1] - n_lab)  # the last identity takes what is left
    sizes = sizes[sizes > 0]
    n_ids = len(sizes)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32) * scale
    _normalise_rows(centres)
    labels = np.full(n, -1, np.int32)  # -1: background
    labels[:n_lab] = np.repeat(np.arange(n_ids, dtype=np.int32), sizes)
    rng.shuffle(labels)

    def sample(lab: np.ndarray) -> np.ndarray:
        out = rng.standard_normal((len(lab), dim), dtype=np.float32)
        out *= scale  # background: a centre-like direction; identity: the noise
        fg = lab >= 0
        out[fg] *= np.float32(sigma)
        out[fg] += centres[lab[fg]]
        _normalise_rows(out)
        return out

    for a in range(0, n, CHUNK):
        x[a : a + CHUNK] = sample(labels[a : a + CHUNK])
    # queries: a fresh detection of a random stored identity each
    q_ids = rng.integers(0, n_ids, n_queries).astype(np.int32)
    q = sample(q_ids)
    # measured statistics: cosine of a query with a stored detection of its identity / another
    first = np.full(n_ids, -1, np.int64)
    lab_idx = np.flatnonzero(labels >= 0)
    first[labels[lab_idx[::-1]]] = lab_idx[::-1]
    same = np.einsum("ij,ij->i", q, x[first[q_ids]])
    other = np.einsum("ij,ij->i", q, x[rng.integers(0, n, n_queries)])
    desc = {
        "data": "clustered",
        "dim": dim,
        "seed": seed,
        "identities": n_ids,
        "background_share": background,
        "identity_size_range": [lo, hi],
        "mean_identity_size": round(float(n_lab / max(n_ids, 1)), 2),
        "noise_sigma_per_dim": round(sigma, 5),
        "target_within_identity_cos": within_cos,
        "measured_within_identity_cos": round(float(same.mean()), 3),
        "measured_random_pair_cos": round(float(other.mean()), 3),
        "measured_random_pair_cos_std": round(float(other.std()), 3),
        "spectrum_decay": decay,
        "effective_dim": round(float(np.sum(scale**2) ** 2 / np.sum(scale**4)), 1),
    }
    return x, q, desc, (labels, q_ids)


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over the queries of |approx[:, :k] ∩ exact[:, :k]| / k (ids; -1 never matches)."""
    k = min(k, exact.shape[1])
    if k <= 0:
        return 1.0
    hits = 0
    for a, e in zip(approx[:, :k], exact[:, :k]):
        hits += np.intersect1d(a[a >= 0], e).size
    return float(hits / (k * len(exact)))


def identity_recall(
    approx: np.ndarray, exact: np.ndarray, labels: np.ndarray, q_ids: np.ndarray
) -> float:
    """
    Share of the true matches (stored detections of the query's identity) in the exact top-k that
    the approximate top-k also returns, summed over the queries (1.0 where there are none).
    """
    found = total = 0
    for a, e, ident in zip(approx, exact, q_ids):
        match = e[labels[e] == ident]
        total += match.size
        found += np.intersect1d(a[a >= 0], match).size
    return float(found / total) if total else 1.0


def measure_queries(index, queries: np.ndarray, k: int) -> Tuple[Dict, np.ndarray]:
    """
    Single-query latency (one call per query) and one batched call with all the queries.

    Returns:
        (timings: latency_ms {median, p99, mean, max} (wall clock), cpu_ms_per_query (process
        CPU time of the single queries, all threads: less sensitive to other processes),
        batch_queries_per_s; ids [Q, K] of the batched call)
    """
    for i in range(min(WARMUP_QUERIES, len(queries))):
        search_vectors(index, queries[i : i + 1], k)
    times = np.empty(len(queries))
    cpu0 = time.process_time()
    for i in range(len(queries)):
        t0 = time.perf_counter()
        search_vectors(index, queries[i : i + 1], k)
        times[i] = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    t0 = time.perf_counter()
    _, ids = search_vectors(index, queries, k)
    batch_s = time.perf_counter() - t0
    ms = times * 1e3
    timing = {
        "latency_ms": {
            "median": round(float(np.median(ms)), 4),
            "p99": round(float(np.percentile(ms, 99)), 4),
            "mean": round(float(ms.mean()), 4),
            "max": round(float(ms.max()), 4),
        },
        "cpu_ms_per_query": round(cpu_s * 1e3 / len(queries), 4),
        "batch_queries_per_s": round(len(queries) / batch_s, 1),
    }
    return timing, ids


def index_bytes(index) -> int:
    """Size of ``faiss.write_index``'s serialisation, counted without holding it in memory."""
    count = [0]

    def _count(buf) -> int:
        count[0] += len(buf)
        return len(buf)

    writer = faiss.PyCallbackIOWriter(_count)
    faiss.write_index(index, writer)
    del writer  # flushes
    return count[0]


def _estimated_peak(n: int, dim: int, kinds: Sequence[str], hnsw_ms: Sequence[int]) -> int:
    """Rough peak bytes of one size: the data, the flat index and the largest other index."""
    vec = 4 * n * dim
    other = 0
    if "ivf" in kinds:
        other = max(other, vec + 8 * n)
    if "hnsw" in kinds:
        other = max(other, vec + n * (2 * max(hnsw_ms) * 4 + 16) * 1.1)
    return int(2 * vec + other)


def _params_grid(args, kind: str) -> List[Tuple[VectorIndexParams, List[VectorIndexParams]]]:
    """[(build params, [search params ...]), ...] of one kind."""
    base = VectorIndexParams(kind=kind)
    if args.train_size is not None:
        base = dataclasses.replace(base, train_size=args.train_size)
    if kind == "flat":
        return [(base, [base])]
    if kind == "ivf":
        out = []
        for nlist in args.nlist or [base.nlist]:
            b = dataclasses.replace(base, nlist=nlist)
            probes = args.nprobe or [base.nprobe]
            out.append((b, [dataclasses.replace(b, nprobe=p) for p in probes]))
        return out
    out = []
    for m, efc in itertools.product(
        args.hnsw_m or [base.hnsw_m], args.ef_construction or [base.ef_construction]
    ):
        b = dataclasses.replace(base, hnsw_m=m, ef_construction=efc)
        efs = args.ef_search or [base.ef_search]
        out.append((b, [dataclasses.replace(b, ef_search=e) for e in efs]))
    return out


def _search_params_of(index, params: VectorIndexParams) -> Dict:
    """The parameters that describe a run: the kind's own, with the actual nlist of an IVF."""
    d = {"kind": params.kind}
    if params.kind == "ivf":
        ivf = faiss.extract_index_ivf(index)
        d.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe), train_size=params.train_size)
    elif params.kind == "hnsw":
        d.update(
            hnsw_m=params.hnsw_m,
            ef_construction=params.ef_construction,
            ef_search=int(index.hnsw.efSearch),
        )
    return d


def _cache_path(args, n: int, params: VectorIndexParams) -> Optional[str]:
    """Where ``--cache-dir`` keeps the index of these data and build parameters (None: no cache)."""
    if not args.cache_dir:
        return None
    data = f"{args.data}-d{args.decay:g}-c{args.within_cos:g}-b{args.background:g}"
    if params.kind == "ivf":
        build = f"ivf-nlist{params.nlist}-train{params.train_size}"
    else:
        build = f"hnsw-m{params.hnsw_m}-efc{params.ef_construction}"
    return os.path.join(args.cache_dir, f"{data}-D{args.dim}-s{args.seed}-n{n}-{build}.faiss")


def _build_or_load(args, x: np.ndarray, params: VectorIndexParams) -> Tuple[object, float, bool]:
    """(the index of ``params`` over ``x``, its build time in seconds, whether from the cache)."""
    path = _cache_path(args, len(x), params)
    if path and os.path.exists(path) and os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            build_s = json.load(f)["build_s"]
        logger.info("loading %s", path)
        return load_vector_index(path, params), build_s, True
    logger.info("n=%d: building %s", len(x), params)
    t0 = time.perf_counter()
    index = build_vector_index(x, params, seed=args.seed)
    build_s = time.perf_counter() - t0
    if path:
        os.makedirs(args.cache_dir, exist_ok=True)
        save_vector_index(index, path)
        with open(path + ".json", "w") as f:
            json.dump({"build_s": build_s, "params": params.to_dict()}, f)
    return index, build_s, False


def run_size(args, n: int) -> Tuple[List[Dict], Dict]:
    """All the kinds and parameters at ``n`` stored vectors: (results, dataset description)."""
    t0 = time.perf_counter()
    x, q, desc, ident = make_dataset(
        args.data,
        n,
        args.queries,
        dim=args.dim,
        seed=args.seed,
        within_cos=args.within_cos,
        background=args.background,
        decay=args.decay,
    )
    logger.info("n=%d: data in %.1f s (%s)", n, time.perf_counter() - t0, desc)
    k = min(args.k, n)
    # exact ground truth (and the flat results) from the flat index
    t0 = time.perf_counter()
    flat = build_vector_index(x, VectorIndexParams(kind="flat"))
    flat_build = time.perf_counter() - t0
    _, exact = search_vectors(flat, q, k)
    results = []

    def record(params: Dict, build_s: float, nbytes: int, timing: Dict, ids: np.ndarray) -> Dict:
        r = {
            "n": n,
            "params": params,
            "build_s": round(build_s, 6),
            "bytes_per_vector": round(nbytes / n, 2),
            **timing,
            "recall_at_10": recall_at(ids, exact, 10),
            "recall_at_100": recall_at(ids, exact, 100),
        }
        if ident is not None:
            r["identity_recall_at_100"] = identity_recall(ids, exact, *ident)
        r["load_avg_1min"] = round(os.getloadavg()[0], 2)
        logger.info("%s", r)
        return r

    if "flat" in args.kinds:
        timing, ids = measure_queries(flat, q, k)
        results.append(record({"kind": "flat"}, flat_build, index_bytes(flat), timing, ids))
    del flat
    for kind in args.kinds:
        if kind == "flat":
            continue
        if kind == "hnsw" and args.hnsw_max_n and n > args.hnsw_max_n:
            logger.info("n=%d: hnsw skipped (--hnsw-max-n %d)", n, args.hnsw_max_n)
            continue
        for build_params, search_params in _params_grid(args, kind):
            index, build_s, cached = _build_or_load(args, x, build_params)
            nbytes = index_bytes(index)
            for sp in search_params:
                set_search_params(index, sp)
                timing, ids = measure_queries(index, q, k)
                params = _search_params_of(index, sp)
                results.append(record(params, build_s, nbytes, timing, ids))
                if cached:
                    results[-1]["build_cached"] = True
            del index
    return results, desc


def _run_sizes(args, out: Dict) -> None:
    """Every size of ``args.sizes`` that fits in memory; fills ``out``."""
    hnsw_ms = args.hnsw_m or [VectorIndexParams().hnsw_m]
    for n in args.sizes:
        need = _estimated_peak(n, args.dim, args.kinds, hnsw_ms)
        avail = _available_memory()
        if avail is not None and need > avail // 2:
            msg = (
                f"n={n}: skipped, needs about {need / 2**30:.1f} GiB (data + flat + the largest "
                f"other index), over half the {avail / 2**30:.1f} GiB available"
            )
            logger.warning(msg)
            out["skipped"].append(msg)
            continue
        if "hnsw" in args.kinds and args.hnsw_max_n and n > args.hnsw_max_n:
            out["skipped"].append(f"n={n}: hnsw skipped (--hnsw-max-n {args.hnsw_max_n})")
        results, desc = run_size(args, n)
        out["datasets"][str(n)] = desc
        out["results"].extend(results)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Runs the benchmark; prints (and returns) its JSON result."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_search", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--kinds", nargs="+", default=list(INDEX_KINDS), choices=INDEX_KINDS)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", default="clustered", choices=("clustered", "uniform"))
    parser.add_argument("--k", type=int, default=100, help="neighbours asked per query")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--within-cos", type=float, default=0.7)
    parser.add_argument("--background", type=float, default=0.3)
    parser.add_argument("--decay", type=float, default=0.0, help="spectrum decay (clustered)")
    parser.add_argument("--nlist", type=int, nargs="+", help="IVF cells (0 = automatic)")
    parser.add_argument("--nprobe", type=int, nargs="+")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--hnsw-m", type=int, nargs="+")
    parser.add_argument("--ef-construction", type=int, nargs="+")
    parser.add_argument("--ef-search", type=int, nargs="+")
    parser.add_argument("--hnsw-max-n", type=int, default=0, help="skip hnsw above this N")
    parser.add_argument("--threads", type=int, default=0, help="faiss threads (0 = its default)")
    parser.add_argument(
        "--cache-dir", help="keep the built ivf / hnsw indexes here and reuse them (same data)"
    )
    parser.add_argument("--output", help="also write the JSON to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    default_threads = faiss.omp_get_max_threads()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    out = {
        "benchmark": "vector_index",
        "data": args.data,
        "queries": args.queries,
        "k": args.k,
        "recall": "|approx top-k ∩ exact (flat) top-k| / k, mean over queries; recall@10 from "
        "the first 10 hits of the top-k search",
        "identity_recall": "clustered data: share of the query identity's detections in the "
        "exact top-k that the index returns too",
        "latency": "one query per search call, after %d warm-up calls" % WARMUP_QUERIES,
        "faiss_version": faiss.__version__,
        "omp_threads": faiss.omp_get_max_threads(),
        "omp_threads_default": default_threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()],
        "defaults": VectorIndexParams().to_dict(),
        "datasets": {},
        "results": [],
        "skipped": [],
    }
    try:
        _run_sizes(args, out)
    finally:
        faiss.omp_set_num_threads(default_threads)
    out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(out, indent=2)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
