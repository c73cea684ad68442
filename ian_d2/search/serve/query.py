"""Ranking of the search service: filters BEFORE top-k, grouping, paging (pure functions).

The filters (sources, time range, detection score) select rows first, then the rows are ranked
by cosine similarity to the query embedding (inner product of L2-normalised embeddings), so a
filtered page is full whenever enough rows pass the filters:

* exact search (the ``flat`` kind, and small filtered sets of any kind): one matrix-vector
  product over the filtered rows with numpy;
* approximate kinds (``ivf``, ``hnsw``): faiss searches only the filtered rows (an
  ``IDSelectorBitmap``), fetching more candidates until the page is full; if the approximate
  search returns fewer rows than asked for, the exact search over the filtered rows answers.
* compact served vectors (``serve --served-vectors int8|fp16``, :mod:`.matrix`): faiss scans the
  codes of the filtered rows for the best ``rerank`` candidates, which are ranked again with
  their float32 embeddings. The codes' error is bounded (:mod:`.compact`): a re-ranked hit whose
  exact similarity exceeds the last candidate's compact similarity plus the bound is better than
  every row left out, so the hits are taken from that proven prefix, fetching 4x more candidates
  until it holds the page (and, with ``min_similarity``, every row above it): the ranking and
  its total are the exact ones (with ``source_window`` grouping, ``total`` counts the proven
  prefix: ``total_exact`` false unless every row was seen). Small filtered sets are ranked in
  float32 directly.
* fp32 served vectors with ``--batch-window-ms``: the exact product of concurrent queries is
  computed in one matrix product (:mod:`.batcher`).

Order: similarity descending, then row ascending (deterministic: the pages of a query concatenate
to its unpaged ranking). ``min_similarity`` drops the rows below it; grouping ``source_window``
keeps one hit per source per time window, greedily by similarity (a hit is dropped when a kept,
better hit of the same video lies within ``window_s`` seconds, ``|dt| <= window_s``; still
images are never grouped).

Shape shorthand: N stored rows, M rows passing the filters, D embedding dimension, P page size.
"""

import bisect
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .matrix import ServedEmbeddings

__all__ = [
    "EXACT_BELOW",
    "Filters",
    "Ranking",
    "filter_mask",
    "group_source_window",
    "rank",
    "sort_hits",
]

# approximate kinds: filtered sets up to this many rows are ranked exactly (cheaper than faiss)
EXACT_BELOW = 20_000


@dataclass(frozen=True)
class Filters:
    """
    Attributes:
        sources: source indexes to keep (None: all).
        time_min, time_max: keep video rows with time in [time_min, time_max] seconds (either
            given: still images, which have no time, are dropped).
        min_score: keep rows with detection score >= this.
        min_similarity: keep rows with similarity >= this.
    """

    sources: Optional[Sequence[int]] = None
    time_min: Optional[float] = None
    time_max: Optional[float] = None
    min_score: Optional[float] = None
    min_similarity: Optional[float] = None


@dataclass
class Ranking:
    """
    Attributes:
        rows: [P] int64 the rows of the requested page, best first.
        similarities: [P] float32 their similarities.
        total: hits passing the filters and ``min_similarity`` (after grouping).
        total_exact: False when an approximate search stopped before seeing every filtered row
            (``min_similarity`` or grouping with an ``ivf``/``hnsw`` index): ``total`` is then a
            lower bound.
    """

    rows: np.ndarray
    similarities: np.ndarray
    total: int
    total_exact: bool = True


def filter_mask(
    src: np.ndarray, time_s: np.ndarray, score: np.ndarray, filters: Filters
) -> Optional[np.ndarray]:
    """
    [N] bool: the rows passing the row filters of ``filters`` (all but ``min_similarity``);
    None when no row filter is given (every row passes).

    Args:
        src: [N] source index of each row; time_s: [N] times (NaN: still image); score: [N].
    """
    mask = None

    def both(m):
        return m if mask is None else mask & m

    if filters.sources is not None:
        mask = both(np.isin(src, np.asarray(list(filters.sources), dtype=src.dtype)))
    if filters.time_min is not None or filters.time_max is not None:
        with np.errstate(invalid="ignore"):
            m = ~np.isnan(time_s)
            if filters.time_min is not None:
                m &= time_s >= filters.time_min
            if filters.time_max is not None:
                m &= time_s <= filters.time_max
        mask = both(m)
    if filters.min_score is not None:
        mask = both(score >= np.float32(filters.min_score))
    return mask


def sort_hits(rows: np.ndarray, sims: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``rows`` [M] and ``sims`` [M] sorted by similarity descending, then row ascending."""
    order = np.lexsort((rows, -sims.astype(np.float64)))
    return rows[order], sims[order]


def _top(rows: np.ndarray, sims: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``n`` best of ``rows``/``sims``, sorted (:func:`sort_hits`; exact with ties)."""
    if n < len(rows):
        kth = np.partition(sims, len(sims) - n)[len(sims) - n]  # the n-th largest
        keep = sims >= kth  # every tie of the n-th: the row order decides among them
        rows, sims = rows[keep], sims[keep]
    rows, sims = sort_hits(rows, sims)
    return rows[:n], sims[:n]


def group_source_window(
    rows: np.ndarray, src: np.ndarray, time_s: np.ndarray, window_s: float
) -> np.ndarray:
    """
    [M] bool: the hits kept by grouping ``source_window``.

    Args:
        rows: [M] rows, best first (:func:`sort_hits`).
        src: [N] source index of every row; time_s: [N] time of every row (NaN: still image).
        window_s: a hit is dropped when a kept hit of the same source lies within this many
            seconds (``|dt| <= window_s``); still images are always kept.
    """
    keep = np.ones(len(rows), bool)
    kept_times = {}  # source -> sorted times of its kept hits
    for i, (s, t) in enumerate(zip(src[rows].tolist(), time_s[rows].tolist())):
        if math.isnan(t):
            continue
        times = kept_times.setdefault(s, [])
        j = bisect.bisect_left(times, t - window_s)
        if j < len(times) and times[j] <= t + window_s:
            keep[i] = False
        else:
            times.insert(j, t)
    return keep


def _exact(emb, q, mask) -> Tuple[np.ndarray, np.ndarray]:
    """(rows [M], similarities [M]) of the rows of ``mask`` (all if None), unsorted."""
    if isinstance(emb, ServedEmbeddings):
        return emb.similarities(q, mask)
    if mask is None:
        return np.arange(len(emb), dtype=np.int64), emb @ q
    rows = np.flatnonzero(mask).astype(np.int64)
    return rows, emb[rows] @ q


def _faiss_search(index, q: np.ndarray, k: int, mask: Optional[np.ndarray], num_rows: int):
    """(rows [k'], similarities [k']) of a faiss search restricted to ``mask`` and to the first
    ``num_rows`` ids (vectors added since the caller's snapshot are ignored), k' <= k."""
    import faiss

    params = None
    bits = None
    if mask is not None:
        bits = np.packbits(mask.astype(np.uint8), bitorder="little")
        sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        if isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=index.hnsw.efSearch)
        elif isinstance(index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=index.nprobe)
        else:
            params = faiss.SearchParameters(sel=sel)
    sims, ids = index.search(np.ascontiguousarray(q[None], np.float32), int(k), params=params)
    del bits  # the bitmap lives until the search is over
    valid = (ids[0] >= 0) & (ids[0] < num_rows)
    return ids[0][valid].astype(np.int64), sims[0][valid]


def rank(
    emb: np.ndarray,
    src: np.ndarray,
    time_s: np.ndarray,
    score: np.ndarray,
    query: np.ndarray,
    filters: Filters = Filters(),
    *,
    top_k: int = 20,
    offset: int = 0,
    group: str = "none",
    window_s: float = 10.0,
    vectors=None,
    vectors_lock=None,
) -> Ranking:
    """
    One page of the ranking of the stored rows for a query embedding.

    Args:
        emb: [N, D] float32 stored embeddings (L2-normalised), or the service's
            :class:`.matrix.ServedEmbeddings` (compact codes, batching).
        src: [N] source index; time_s: [N] times (NaN: still image); score: [N] scores.
        query: [D] float32 query embedding (L2-normalised).
        filters: what rows may be hits.
        top_k, offset: the page: hits ``offset .. offset + top_k - 1`` of the ranking.
        group: "none" or "source_window" (see the module docstring).
        window_s: the window of ``source_window``, seconds.
        vectors: a faiss index over ``emb`` (ids = rows) for approximate search; None: exact.
        vectors_lock: held while searching ``vectors`` (the service adds to it meanwhile).
    """
    if group not in ("none", "source_window"):
        raise ValueError(f"group must be 'none' or 'source_window', not {group!r}")
    q = np.asarray(query, np.float32).reshape(-1)
    mask = filter_mask(src, time_s, score, filters)
    n_candidates = len(emb) if mask is None else int(mask.sum())
    need = offset + top_k
    if vectors is not None and n_candidates > EXACT_BELOW:
        ranking = _rank_approximate(
            vectors, vectors_lock, q, mask, n_candidates, src, time_s, filters, need, group,
            window_s, len(emb),
        )  # fmt: skip
        if ranking is not None:
            ranking.rows = ranking.rows[offset:need]
            ranking.similarities = ranking.similarities[offset:need]
            return ranking
    if (
        vectors is None
        and isinstance(emb, ServedEmbeddings)
        and emb.ranks_compact(n_candidates, need)
    ):
        ranking = _rank_compact(
            emb, q, mask, n_candidates, src, time_s, filters, need, group, window_s
        )
        if ranking is not None:
            ranking.rows = ranking.rows[offset:need]
            ranking.similarities = ranking.similarities[offset:need]
            return ranking
    rows, sims = _exact(emb, q, mask)
    if filters.min_similarity is not None:
        keep = sims >= np.float32(filters.min_similarity)
        rows, sims = rows[keep], sims[keep]
    if group == "none":
        total = len(rows)
        rows, sims = _top(rows, sims, need)
    else:
        rows, sims = sort_hits(rows, sims)
        keep = group_source_window(rows, src, time_s, window_s)
        rows, sims = rows[keep], sims[keep]
        total = len(rows)
    return Ranking(rows[offset:need], sims[offset:need], total)


def _rank_approximate(
    vectors, lock, q, mask, n_candidates, src, time_s, filters, need, group, window_s, num_rows
) -> Optional[Ranking]:
    """The first ``need`` hits with faiss (fetching more until they are found); None when the
    approximate search returns fewer rows than asked for (the caller ranks exactly)."""
    k = need if group == "none" else 4 * need
    while True:
        k = min(k, n_candidates)
        if lock is not None:
            with lock:
                rows, sims = _faiss_search(vectors, q, k, mask, num_rows)
        else:
            rows, sims = _faiss_search(vectors, q, k, mask, num_rows)
        if len(rows) < k:
            return None
        rows, sims = sort_hits(rows, sims)
        seen_all = k >= n_candidates
        below = False
        if filters.min_similarity is not None:
            keep = sims >= np.float32(filters.min_similarity)
            below = not keep.all()  # the ranking went below the threshold: nothing more to see
            rows, sims = rows[keep], sims[keep]
        if group == "source_window":
            keep = group_source_window(rows, src, time_s, window_s)
            rows, sims = rows[keep], sims[keep]
        if len(rows) >= need or seen_all or below:
            break
        k *= 4
    if group == "none" and filters.min_similarity is None:
        return Ranking(rows, sims, n_candidates)
    return Ranking(rows, sims, len(rows), total_exact=seen_all or below)


def _rank_compact(
    served: ServedEmbeddings, q, mask, n_candidates, src, time_s, filters, need, group, window_s
) -> Optional[Ranking]:
    """The first ``need`` hits from the compact codes, re-ranked exactly (module docstring);
    None when the candidates needed grow past half the filtered rows (the caller ranks them all
    in float32)."""
    bound = served.error_bound(q)
    min_sim = filters.min_similarity
    k = max(served.rerank, need if group == "none" else 4 * need)
    while True:
        k = min(k, n_candidates)
        rows, compact = served.candidates(q, k, mask)
        seen_all = len(rows) >= n_candidates
        # no row left out is above `ceiling`: its compact similarity is <= the k-th one's
        ceiling = -np.inf if seen_all else float(compact.min()) + bound
        rows, sims = sort_hits(rows, served.similarities_of(rows, q))
        if min_sim is not None:
            keep = sims >= np.float32(min_sim)
            rows, sims = rows[keep], sims[keep]
            seen_all = seen_all or ceiling < min_sim  # every row above min_sim is here
        proven = len(rows) if seen_all else int(np.count_nonzero(sims > ceiling))
        if group == "none":
            if seen_all:
                total = n_candidates if min_sim is None else len(rows)
                return Ranking(rows[:need], sims[:need], total)
            if min_sim is None and proven >= need:
                return Ranking(rows[:need], sims[:need], n_candidates)
        else:
            rows, sims = rows[:proven], sims[:proven]
            keep = group_source_window(rows, src, time_s, window_s)
            rows, sims = rows[keep], sims[keep]
            if seen_all or len(rows) >= need:
                return Ranking(rows, sims, len(rows), total_exact=seen_all)
        k *= 4
        if 2 * k > n_candidates:
            return None
