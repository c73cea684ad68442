"""The k-reciprocal Jaccard distance (Zhong et al. 2017) in sparse form, and DBSCAN over it.

Written from the definitions of "Re-ranking Person Re-identification with k-reciprocal Encoding"
(Zhong, Zheng, Cao, Li; CVPR 2017), the distance that SpCL and DAPS cluster pseudo identities with.
For points p, g of a set of L2-normalised features (cosine similarity s, squared Euclidean
distance d(p, g) = 2 - 2 s):

* N(p, k): p and its k nearest other points (exact inner-product k-NN, faiss ``IndexFlatIP``;
  ties by index);
* R(p, k) = {g in N(p, k) : p in N(g, k)}: the k-reciprocal neighbours (p included);
* R*(p, k) = R(p, k) united with every R(q, k/2), q in R(p, k), that shares at least two thirds
  of its members with R(p, k) (k/2 rounded half up);
* V_p: the k-reciprocal encoding, V_p[g] = exp(-d(p, g)) for g in R*(p, k1), 0 elsewhere, scaled
  to unit sum (so that points of dense and sparse regions weigh alike);
* local query expansion: V_p is replaced by the mean of V_g over the k2 nearest points of p,
  p counted (k2 = 1: no expansion). The paper averages over all k2 (``expansion="knn"``); the
  default, ``expansion="mutual"``, over those that are also in R(p, k1): the same for a point
  inside a cluster (its nearest points are mutual neighbours), but an isolated point (a false
  detection, a person seen once) is no longer made to look like the cluster it happens to be
  nearest to, whose border it would join in DBSCAN: it stays an outlier;
* d_J(p, g) = 1 - sum_j min(V_p[j], V_g[j]) / sum_j max(V_p[j], V_g[j]), in [0, 1], 0 on the
  diagonal, symmetric.

Sparse form: d_J is computed for the *candidate pairs* only: g among the k1 nearest points of p,
in R*(p, k1) or in the support of p's expanded encoding, or the other way round. Every other pair
is taken at distance 1, as if the two shared no k-reciprocal neighbour (pairs that far apart in
the k-NN graph share little: the tests check against the dense definition that none is within
the usual ``eps``; the dense matrix of the paper costs O(N^2)). Memory is O(N k1 k2) (the expanded encodings), the k-NN
search O(N^2 D) time, so N up to ~1e5 runs on a CPU. :class:`JaccardDistances` holds the result
as a CSR matrix of *similarities* 1 - d_J, where an entry not stored means distance 1 (so the
usual sparse convention, 0 when absent, holds).

:func:`dbscan` clusters over it: a point is a core point when the weights of its neighbours
within ``eps`` (itself included) sum to at least ``min_samples``; clusters are the connected
components of core points, and a border point joins the cluster of its nearest core neighbour
(ties by index). Deterministic; labels numbered by first row.

Shape shorthand: N points, D feature dimension, K = min(N, k1 + 1) columns of a k-NN list.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import faiss
import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

__all__ = [
    "EXPANSIONS",
    "JaccardDistances",
    "NORM_TOLERANCE",
    "check_features",
    "dbscan",
    "k_reciprocal_jaccard",
    "nearest_neighbours",
    "relabel_by_first_row",
]

logger = logging.getLogger(__name__)

EXPANSIONS = ("mutual", "knn")  # the points a local query expansion averages over
NORM_TOLERANCE = 1e-3  # |norm - 1| allowed for an "L2-normalised" feature row
_CHUNK_ENTRIES = 1 << 22  # stored entries per chunk of the pairwise row operations


def check_features(features, name: str = "features") -> np.ndarray:
    """``features`` [N, D] checked (2-D, not empty, floating point, finite, rows of L2 norm 1
    within :data:`NORM_TOLERANCE`) and returned as C-contiguous float32 [N, D]; ``ValueError``
    naming the first offending row and value otherwise."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    finite = np.isfinite(x)
    bad = ~finite.all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = x[i][~finite[i]][0]
        raise ValueError(
            f"{name} must be finite: row {i} holds {value} ({int(bad.sum())} rows not finite)"
        )
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name} must be L2-normalised (norm 1 within {NORM_TOLERANCE}): row {i} has norm "
            f"{norms[i]:.6g} ({int(off.sum())} rows off)"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def relabel_by_first_row(labels: np.ndarray) -> np.ndarray:
    """``labels`` [N] (-1 = none) renumbered 0..K-1 in the order of each label's first row;
    -1 stays -1. Returns int64 [N]."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(labels.shape, -1, dtype=np.int64)
    kept = np.flatnonzero(labels >= 0)
    if kept.size:
        _, first, inverse = np.unique(labels[kept], return_index=True, return_inverse=True)
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        out[kept] = rank[inverse.ravel()]
    return out


def nearest_neighbours(features: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact inner-product k-NN of every row among the rows (faiss ``IndexFlatIP``).

    Args:
        features: [N, D] float32, L2-normalised.
        k: neighbours per row, besides the row itself.

    Returns:
        indices [N, K] int64 and similarities [N, K] float64, K = min(N, k + 1): column 0 is the
        row itself (similarity 1), then its nearest other rows by decreasing cosine similarity,
        ties by index.
    """
    n = features.shape[0]
    kk = min(n, k + 1)
    index = faiss.IndexFlatIP(features.shape[1])
    index.add(features)
    sims, idx = index.search(features, kk)
    rows = np.arange(n)
    is_self = idx == rows[:, None]
    # drop the row itself from its own list (or the last entry, when duplicates pushed it out)
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[rows, drop] = False
    others = idx[keep].reshape(n, kk - 1).astype(np.int64)
    other_sims = sims[keep].reshape(n, kk - 1).astype(np.float64)
    order = np.lexsort((others, -other_sims), axis=-1)
    others = np.take_along_axis(others, order, axis=1)
    other_sims = np.take_along_axis(other_sims, order, axis=1)
    indices = np.concatenate([rows[:, None], others], axis=1)
    similarities = np.concatenate([np.ones((n, 1)), other_sims], axis=1)
    return indices, similarities


def _csr(rows: np.ndarray, cols: np.ndarray, n: int, data=None) -> sparse.csr_matrix:
    """[n, n] float64 CSR from coordinates (duplicates summed), canonical (sorted indices)."""
    if data is None:
        data = np.ones(len(rows))
    out = sparse.csr_matrix((data, (rows, cols)), shape=(n, n), dtype=np.float64)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _binary(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """The support of ``matrix`` as a canonical 0/1 float64 CSR matrix."""
    out = sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sort_indices()
    return out


def _pair_reduce(a, b, rows_a: np.ndarray, rows_b: np.ndarray, op: str) -> np.ndarray:
    """sum_j op(a[rows_a[e], j], b[rows_b[e], j]) for every pair e, op in {"multiply",
    "minimum"}; chunked so that a chunk holds about :data:`_CHUNK_ENTRIES` stored entries.
    Returns float64 [E]."""
    out = np.zeros(len(rows_a), dtype=np.float64)
    widest = int(np.diff(a.indptr).max(initial=0) + np.diff(b.indptr).max(initial=0))
    chunk = max(1, _CHUNK_ENTRIES // max(1, widest))
    for start in range(0, len(rows_a), chunk):
        stop = start + chunk
        left, right = a[rows_a[start:stop]], b[rows_b[start:stop]]
        both = left.multiply(right) if op == "multiply" else left.minimum(right)
        out[start:stop] = np.asarray(both.sum(axis=1)).ravel()
    return out


def _pair_dots(features: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Cosine similarity of the row pairs (rows[e], cols[e]), float64 [E], chunked."""
    out = np.empty(len(rows), dtype=np.float64)
    chunk = max(1, _CHUNK_ENTRIES // features.shape[1])
    for start in range(0, len(rows), chunk):
        r, c = rows[start : start + chunk], cols[start : start + chunk]
        out[start : start + chunk] = np.einsum("ij,ij->i", features[r], features[c])
    return out


@dataclass(frozen=True)
class JaccardDistances:
    """Sparse k-reciprocal Jaccard distances of N points.

    ``similarity`` is a symmetric [N, N] float64 CSR matrix of 1 - d_J for the candidate pairs
    that share k-reciprocal neighbours (diagonal 1); an entry not stored is distance 1.
    """

    similarity: sparse.csr_matrix

    @property
    def n(self) -> int:
        return self.similarity.shape[0]

    def dense(self) -> np.ndarray:
        """The distances as a dense [N, N] float64 array (1 where not stored): small N only."""
        return 1.0 - self.similarity.toarray()

    def within(self, eps: float) -> sparse.csr_matrix:
        """The pairs at distance <= ``eps`` (< 1), each point with itself: [N, N] CSR holding
        their similarity 1 - d_J."""
        near = self.similarity.copy()
        near.data[(1.0 - near.data) > eps] = 0.0
        near.eliminate_zeros()
        return near


def k_reciprocal_jaccard(
    features, k1: int = 20, k2: int = 6, expansion: str = "mutual"
) -> JaccardDistances:
    """The k-reciprocal Jaccard distance of the rows of ``features`` (see the module docstring).

    Args:
        features: [N, D] float L2-normalised (checked).
        k1: the k of the k-reciprocal neighbours R(p, k1) (clipped to N - 1).
        k2: the points averaged by the local query expansion, the point itself counted
            (1 <= k2 <= k1 + 1; clipped to N).
        expansion: ``"mutual"`` (default) averages over those of the k2 nearest points that are
            k-reciprocal neighbours (in R(p, k1)); ``"knn"`` over all k2, as in the paper.

    Returns:
        :class:`JaccardDistances` over the N rows.
    """
    x = check_features(features)
    k1 = _check_positive_int(k1, "k1")
    k2 = _check_positive_int(k2, "k2")
    if k2 > k1 + 1:
        raise ValueError(
            f"k2 must be at most k1 + 1 = {k1 + 1} (it expands over N(p, k1)), got {k2}"
        )
    if expansion not in EXPANSIONS:
        raise ValueError(f"expansion must be one of {EXPANSIONS}, got {expansion!r}")
    n = x.shape[0]
    if n <= 2 * k1:
        logger.warning(
            "k-reciprocal Jaccard of %d points with k1=%d: meant for N well above k1 (with few "
            "points every one is everyone's neighbour and distances shrink towards 0)",
            n,
            k1,
        )
    indices, _ = nearest_neighbours(x, k1)
    kk = indices.shape[1]
    rows = np.repeat(np.arange(n), kk)
    knn = _csr(rows, indices.ravel(), n)  # A[p, g] = 1: g in N(p, k1)
    reciprocal = _binary(knn.multiply(knn.T))  # R(p, k1), p included
    half = min(kk, int(np.floor(k1 / 2.0 + 0.5)) + 1)
    knn_half = _csr(np.repeat(np.arange(n), half), indices[:, :half].ravel(), n)
    reciprocal_half = _binary(knn_half.multiply(knn_half.T))  # R(q, k1/2)

    # R*(p): R(p) united with each R(q, k1/2), q in R(p), sharing >= 2/3 of its members with R(p)
    pairs = reciprocal.tocoo()
    p, q = pairs.row.astype(np.int64), pairs.col.astype(np.int64)
    shared = np.rint(_pair_reduce(reciprocal, reciprocal_half, p, q, "multiply"))
    half_sizes = np.diff(reciprocal_half.indptr)[q]
    accepted = 3 * shared >= 2 * half_sizes
    expand = _csr(p[accepted], q[accepted], n)
    expanded = _binary(reciprocal + expand @ reciprocal_half)

    # V_p[g] = exp(-d(p, g)) on R*(p), unit sum; then the mean over the k2 nearest points
    support = expanded.tocoo()
    r, c = support.row.astype(np.int64), support.col.astype(np.int64)
    s = _pair_dots(x, r, c)
    s[r == c] = 1.0
    weights = np.exp(-np.maximum(0.0, 2.0 - 2.0 * s))
    encoding = _csr(r, c, n, weights)
    encoding = sparse.diags(1.0 / np.asarray(encoding.sum(axis=1)).ravel()) @ encoding
    k2 = min(k2, kk)
    average = _csr(np.repeat(np.arange(n), k2), indices[:, :k2].ravel(), n)
    if expansion == "mutual":
        average = _binary(average.multiply(reciprocal))  # N(p, k2) within R(p, k1)
    average = sparse.diags(1.0 / np.asarray(average.sum(axis=1)).ravel()) @ average
    encoding = sparse.csr_matrix(average @ encoding)
    encoding.sort_indices()

    # d_J of the candidate pairs (upper triangle, mirrored): unit sums give max = 2 - min
    reach = knn + expanded + encoding
    candidates = sparse.triu(_binary(reach + reach.T), k=1).tocoo()
    p, g = candidates.row.astype(np.int64), candidates.col.astype(np.int64)
    overlap = np.clip(_pair_reduce(encoding, encoding, p, g, "minimum"), 0.0, 1.0)
    similarity = overlap / (2.0 - overlap)
    keep = similarity > 0
    p, g, similarity = p[keep], g[keep], similarity[keep]
    diagonal = np.arange(n)
    matrix = _csr(
        np.concatenate([p, g, diagonal]),
        np.concatenate([g, p, diagonal]),
        n,
        np.concatenate([similarity, similarity, np.ones(n)]),
    )
    logger.debug(
        "k-reciprocal Jaccard of %d points (k1=%d, k2=%d): %d candidate pairs, %d stored",
        n,
        k1,
        k2,
        len(keep),
        int(keep.sum()),
    )
    return JaccardDistances(matrix)


def dbscan(
    distances: JaccardDistances,
    eps: float,
    min_samples: float,
    weights: Optional[np.ndarray] = None,
) -> np.ndarray:
    """DBSCAN over sparse Jaccard distances (see the module docstring), deterministic.

    Args:
        distances: :class:`JaccardDistances` of N points.
        eps: the neighbourhood radius, a Jaccard distance in (0, 1).
        min_samples: the weight a neighbourhood (the point itself included) needs for a core
            point (> 0).
        weights: [N] non-negative weight of each point (default 1 each: min_samples counts
            points), e.g. the detections a track node stands for.

    Returns:
        labels [N] int64: clusters 0..K-1 numbered by first row, -1 for noise.
    """
    n = distances.n
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a Jaccard distance in (0, 1), got {eps!r}")
    if not isinstance(min_samples, (int, float, np.number)) or not min_samples > 0:
        raise ValueError(f"min_samples must be > 0, got {min_samples!r}")
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"weights must be [{n}] finite and >= 0, got {np.asarray(weights)}")
    near = distances.within(eps)
    linked = _binary(near)
    core = linked @ w >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    core_rows = np.flatnonzero(core)
    if core_rows.size:
        _, component = connected_components(linked[core_rows][:, core_rows], directed=False)
        labels[core_rows] = component
        # a border point joins its nearest core neighbour's cluster (ties: lowest index)
        pairs = near.tocoo()
        mask = ~core[pairs.row] & core[pairs.col]
        r, c, s = pairs.row[mask], pairs.col[mask], pairs.data[mask]
        order = np.lexsort((c, -s, r))
        r, c = r[order], c[order]
        first = np.ones(len(r), dtype=bool)
        first[1:] = r[1:] != r[:-1]
        labels[r[first]] = labels[c[first]]
    return relabel_by_first_row(labels)
