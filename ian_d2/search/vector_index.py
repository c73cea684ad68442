"""Nearest-neighbour search over stored embeddings with faiss (inner product = cosine similarity
of the L2-normalised IAN embeddings).

Three kinds, chosen when an index is built:

* ``flat``: exact search (``IndexFlatIP``), the default; memory 4 D bytes per vector, query time
  linear in the number of vectors.
* ``ivf``: inverted lists (``IndexIVFFlat``): k-means into ``nlist`` cells, a query scans the
  ``nprobe`` nearest cells. Approximate; recall and speed set by ``nprobe``.
* ``hnsw``: a navigable small-world graph (``IndexHNSWFlat``, ``M`` links per vector); a query
  explores ``ef_search`` candidates. Approximate; more memory than ``flat``.

The recall of the approximate kinds against ``flat`` at the default parameters is measured by
``benchmarks/bench_search.py`` (see ``benchmarks/RESULTS.md``).

Shape shorthand:
    N: number of stored vectors
    Q: number of queries
    D: embedding dimension
    K: number of neighbours returned per query
"""

import logging
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import faiss
import numpy as np

from ..utils.io import atomic_write

__all__ = [
    "INDEX_KINDS",
    "VectorIndexParams",
    "build_vector_index",
    "add_vectors",
    "set_search_params",
    "search_vectors",
    "save_vector_index",
    "load_vector_index",
]

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")


@dataclass(frozen=True)
class VectorIndexParams:
    """
    Attributes:
        kind: "flat", "ivf" or "hnsw".
        nlist: IVF cells; 0 = automatic (about 4 sqrt(N), at least 1, at most N / 39).
        nprobe: IVF cells scanned per query.
        hnsw_m: HNSW links per vector.
        ef_construction: HNSW candidates explored when adding.
        ef_search: HNSW candidates explored per query.
        train_size: IVF: at most this many vectors train the k-means (0 = all).
    """

    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 256
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 1280
    train_size: int = 200_000

    def __post_init__(self):
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; expected one of {INDEX_KINDS}")

    def to_dict(self) -> dict:
        return asdict(self)


def _as_matrix(x: np.ndarray, dim: Optional[int] = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"[n, {dim}]" if dim is not None else "[n, D]"
        raise ValueError(f"embeddings of shape {list(x.shape)}, expected {want}")
    return x


def _auto_nlist(n: int) -> int:
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39 if n >= 39 else 1)))


def build_vector_index(
    embeddings: np.ndarray, params: VectorIndexParams = VectorIndexParams(), seed: int = 0
):
    """
    Build an index of ``params.kind`` over ``embeddings`` [N, D]; vector i gets id i.

    Returns:
        faiss.Index
    """
    x = _as_matrix(embeddings)
    d = x.shape[1]
    if params.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
    else:
        nlist = params.nlist or _auto_nlist(len(x))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = x
        if params.train_size and len(x) > params.train_size:
            rng = np.random.default_rng(seed)
            sample = x[np.sort(rng.choice(len(x), params.train_size, replace=False))]
        if len(sample) < nlist:
            raise ValueError(f"an IVF index with {nlist} cells needs >= {nlist} vectors to train")
        index.cp.seed = seed
        index.train(sample)
    set_search_params(index, params)
    add_vectors(index, x)
    return index


def add_vectors(index, embeddings: np.ndarray) -> None:
    """Append ``embeddings`` [n, D]; they get the next ids (``index.ntotal`` onwards)."""
    x = _as_matrix(embeddings, index.d)
    if len(x):
        index.add(x)


def set_search_params(index, params: VectorIndexParams) -> None:
    """Apply the query-time parameters (``nprobe`` / ``ef_search``) of ``params``."""
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
    if ivf is not None:
        ivf.nprobe = int(min(params.nprobe, ivf.nlist))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = int(params.ef_search)


def search_vectors(index, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """
    The ``k`` stored vectors most similar to each query.

    Returns:
        (similarities [Q, K'] float32, ids [Q, K'] int64) best first, K' = min(k, N); an
        approximate index may return fewer than K' hits, padded with id -1.
    """
    q = _as_matrix(queries, index.d)
    k = int(min(k, index.ntotal))
    if k <= 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    sims, ids = index.search(q, k)
    return sims, ids


def save_vector_index(index, path: str) -> None:
    """Write ``index`` to ``path`` atomically (temporary file, then rename)."""
    atomic_write(path, lambda f: f.write(faiss.serialize_index(index).tobytes()))


def load_vector_index(path: str, params: Optional[VectorIndexParams] = None):
    """Read an index written by :func:`save_vector_index`; apply ``params``' query settings."""
    try:
        index = faiss.read_index(path)
    except Exception as e:  # faiss raises RuntimeError with its own message
        raise ValueError(f"'{path}' is not a readable faiss index ({e})") from e
    if params is not None:
        set_search_params(index, params)
    return index
