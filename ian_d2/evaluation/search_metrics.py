"""The person-search scoring kernel: mAP and top-k of every query, vectorised.

Inputs are the containers of :mod:`.structures`; the rules are those of the published evaluation
code (OIM / SeqNet), with its crashes and order-dependent tie breaking fixed: see
``docs/protocols.md``. Plain numpy, no torch. Shapes as in :mod:`.structures`.

Similarity. Embeddings are L2-normalised in float64 (sum of squares in a fixed sequential order
per row, so that identical rows give identical unit vectors in any batch) and compared with a
float64 dot product: the plain float64 cosine similarity, without rounding its inputs. A matrix
product may give two identical rows results that differ in the last bit, depending on where
they sit. So every similarity that takes part in one query's ranking comes from ONE evaluation
per distinct embedding (identical gallery rows are mapped to one representative): identical
embeddings tie bit for bit, and no other pair of candidates is reordered.

Average precision. For a query with ``count_gt`` positive entries and true positives ``t`` of
similarity ``s_t``, the step-wise AP of scikit-learn's ``average_precision_score`` (ties grouped)
times the recall factor ``count_tp / count_gt`` equals::

    AP = 1 / count_gt * sum_t  #{TP with sim >= s_t} / #{detections with sim >= s_t}

so only the true positives need a rank, and no gallery list is ever sorted.
"""

import logging
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .structures import GalleryTable, SearchGalleries, SearchResult

__all__ = [
    "DUPLICATE_MODES",
    "normalize_embeddings",
    "similarity",
    "paired_iou",
    "small_box_iou_threshold",
    "evaluate_search",
    "PreparedGallery",
]

logger = logging.getLogger(__name__)

DUPLICATE_MODES = ("first", "per_entry")
"""How a gallery image listed twice for one query is scored.

``"first"`` (reference behaviour, default): every positive entry counts in ``count_gt``, but an
image is evaluated once, for its FIRST entry and with that entry's box. ``"per_entry"``: every
entry is evaluated on its own (the image's detections enter the ranking once per entry).
"""

_CHUNK_ELEMS = 1 << 23  # elements of the largest temporary per query chunk (~64 MB of float64)
_SPARSE_RATIO = 30  # use the gather path when pairs * ratio < queries * detections
_NORM_BLOCK = 16384  # rows normalised together (a block of float64 copies: 32 MB at E = 256)


def normalize_embeddings(
    embeddings: np.ndarray, what: str = "embedding", owner: Optional[Callable[[int], str]] = None
) -> np.ndarray:
    """L2-normalise embeddings in float64, row by row in a fixed order.

    Args:
        embeddings: [N, E] float array.
        what: name used in error messages (e.g. "query").
        owner: optional map from row index to the name used in error messages.

    Returns:
        [N, E] float64 unit rows; identical input rows give bit-identical outputs, whatever the
        other rows.

    Raises:
        ValueError: a row is not finite or has zero norm (the message names the first row).
    """
    x = np.asarray(embeddings)
    name = owner if owner is not None else str
    if x.ndim != 2:
        raise ValueError(f"{what} embeddings must be [N, E], got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float64)
    for r0 in range(0, x.shape[0], _NORM_BLOCK):  # blocks of rows
        block = x[r0 : r0 + _NORM_BLOCK].astype(np.float64)
        # Sum of squares in a fixed sequential order per row (not BLAS, not alignment-dependent
        # pairwise sums): identical rows give identical norms, whatever the batch.
        sq = np.zeros(block.shape[0], dtype=np.float64)
        for col in np.ascontiguousarray(block.T):
            sq += col * col
        bad = ~np.isfinite(sq)
        if bad.any():
            raise ValueError(
                f"{what} {name(r0 + int(np.flatnonzero(bad)[0]))} has a non-finite embedding"
            )
        bad = ~(sq > 0)
        if bad.any():
            raise ValueError(
                f"{what} {name(r0 + int(np.flatnonzero(bad)[0]))} has a zero embedding"
            )
        out[r0 : r0 + _NORM_BLOCK] = block / np.sqrt(sq)[:, None]
    return out


def _distinct_rows(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Group bit-identical rows: (representative row of each group [U], group of each row [N]).

    Rows are grouped by a 64-bit hash of their bits, and every row is then compared bit for bit
    with its group's representative (a hash collision falls back to sorting the raw rows).
    """
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    raw = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    mult = np.random.default_rng(0x1AD2).integers(1, 2**63, raw.shape[1], dtype=np.uint64) | 1
    with np.errstate(over="ignore"):
        h = (raw * mult).sum(axis=1, dtype=np.uint64)
    _, first, group = np.unique(h, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    if first.size < n and not np.array_equal(raw, raw[first[group]]):
        void = raw.view(np.dtype((np.void, 8 * raw.shape[1]))).reshape(-1)
        _, first, group = np.unique(void, return_index=True, return_inverse=True)
        group = group.reshape(-1)
    return first.astype(np.int64), group.astype(np.int64)


def similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity as the scoring uses it.

    Args:
        queries: [A, E] embeddings (any scale).
        gallery: [B, E] embeddings (any scale).

    Returns:
        [A, B] float64; bit-identical for identical gallery rows.
    """
    qn = normalize_embeddings(queries, "query")
    gn = normalize_embeddings(gallery, "gallery")
    rep, group = _distinct_rows(gn)
    return (qn @ gn[rep].T)[:, group]


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box pairs on continuous coordinates (no +1); 0 where the union is empty.

    Args:
        a: [P, 4] float64 XYXY boxes.
        b: [P, 4] float64 XYXY boxes.

    Returns:
        [P] float64 IoU of ``a[i]`` and ``b[i]``.
    """
    iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0)
    ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = union - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def small_box_iou_threshold(gt_boxes: np.ndarray) -> np.ndarray:
    """Per-GT IoU threshold ``min(0.5, w*h / ((w+10)*(h+10)))`` (OIM's small-box rule).

    Args:
        gt_boxes: [P, 4] float64 XYXY boxes.

    Returns:
        [P] float64 thresholds.
    """
    w = gt_boxes[:, 2] - gt_boxes[:, 0]
    h = gt_boxes[:, 3] - gt_boxes[:, 1]
    return np.minimum(0.5, (w * h) / ((w + 10.0) * (h + 10.0)))


class _Similarities:
    """The gallery side of the similarities: unit rows and their distinct-row groups.

    Attributes:
        rows: [D, E] float64 unit embeddings of the kept detections.
        rep: [U] row of the representative of each group of bit-identical rows.
        group: [D] group of each row.
        distinct: True when no two rows are identical (then ``rep``/``group`` are not needed).
    """

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self.rep, self.group = _distinct_rows(rows)
        self.distinct = self.rep.size == rows.shape[0]

    def of_dets(self, query: np.ndarray, dets: np.ndarray, repeats: bool = True) -> np.ndarray:
        """[S] similarities of one query ([E] unit) to detections ``dets`` ([S]).

        Each distinct embedding is evaluated once, so equal rows give equal values.
        ``repeats=False`` says that ``dets`` lists no detection twice.
        """
        if self.distinct and not repeats:
            return self.rows[dets] @ query
        key = dets if self.distinct else self.group[dets]
        uniq, inv = np.unique(key, return_inverse=True)
        rows = self.rows[uniq] if self.distinct else self.rows[self.rep[uniq]]
        return (rows @ query)[inv.reshape(-1)]

    def dense(self, queries: np.ndarray) -> np.ndarray:
        """[A, D] similarities of queries ([A, E] unit) to every detection."""
        if self.distinct:
            return queries @ self.rows.T
        return (queries @ self.rows[self.rep].T)[:, self.group]


class PreparedGallery:
    """The gallery side of :func:`evaluate_search` for one detection threshold, computed once
    and shared by every protocol scored on the same table (normalised embeddings and their
    distinct-row groups of the kept detections).

    Attributes:
        table: the original :class:`~.structures.GalleryTable`.
        det_thresh: the detection score threshold applied.
        kept: the table of the detections with ``score >= det_thresh``.
        similarities: their unit embeddings and distinct-row groups.
    """

    def __init__(self, table: GalleryTable, det_thresh: float):
        self.table = table
        self.det_thresh = float(det_thresh)
        self.kept = table.filter_scores(det_thresh)
        self.similarities = _Similarities(
            normalize_embeddings(self.kept.embeddings, "gallery image", self.kept.detection_owner)
        )


def _expand_dets(images: np.ndarray, offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Detections of a list of images: flat det indices [S] and per-image counts [len(images)]."""
    starts = offsets[images]
    counts = offsets[images + 1] - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), counts
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(total, dtype=np.int64), counts


def _segment_max(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Max of consecutive segments of ``values`` ([sum(counts)]); -inf for empty segments."""
    out = np.full(counts.size, -np.inf)
    nz = counts > 0
    if values.size:
        starts = (np.cumsum(counts) - counts)[nz]
        out[nz] = np.maximum.reduceat(values, starts)
    return out


def _first_occurrence(idx: np.ndarray, valid: np.ndarray, num_images: int) -> np.ndarray:
    """[C, N] bool: valid entries that are the first of their image in their row."""
    c = idx.shape[0]
    rows = np.broadcast_to(np.arange(c)[:, None], idx.shape)
    key = rows[valid] * np.int64(num_images) + idx[valid]
    mult = np.bincount(key, minlength=c * num_images)
    first = valid.copy()
    dup_rows = np.unique(rows[valid][mult[key] > 1])
    for r in dup_rows:
        cols = np.flatnonzero(valid[r])
        _, fi = np.unique(idx[r, cols], return_index=True)
        first[r, cols] = False
        first[r, cols[fi]] = True
    return first


def evaluate_search(
    query_embeddings: np.ndarray,
    table: GalleryTable,
    galleries: SearchGalleries,
    *,
    det_thresh: float = 0.5,
    duplicates: str = "first",
    topk: Sequence[int] = (1, 5, 10),
    on_empty: str = "skip",
    method: str = "auto",
    prepared: Optional["PreparedGallery"] = None,
) -> SearchResult:
    """Score person search for all queries (mAP and top-k, ``docs/protocols.md`` rules).

    Args:
        query_embeddings: [Q, E] embeddings of the given query boxes (any scale).
        table: gallery detections; only those with ``score >= det_thresh`` are used.
        galleries: per-query gallery entries and GT boxes (``galleries.num_queries == Q``).
        det_thresh: detection score threshold, compared in the scores' own dtype.
        duplicates: "first" (reference behaviour) or "per_entry", see :data:`DUPLICATE_MODES`.
        topk: values of k for top-k accuracy.
        on_empty: "skip" queries with count_gt == 0 (counted in ``n_skipped``) or "raise".
        method: "auto", "sparse" (gather the listed images' detections per query; fast for small
            galleries) or "dense" (all query x table similarities in chunks; fast for large
            galleries). Both give the same results (up to the last bit of similarities that
            are not exactly tied, which only a near-tie below 1e-15 could reveal).
        prepared: ``PreparedGallery(table, det_thresh)`` computed once for several protocols
            on the same table and threshold (else computed here).

    Returns:
        :class:`~.structures.SearchResult`.

    Raises:
        ValueError: bad shapes, NaN embeddings/scores, inverted boxes, a gallery image missing
            from the table, or (on_empty="raise") a query without positive entry.
    """
    if duplicates not in DUPLICATE_MODES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
    if on_empty not in ("skip", "raise"):
        raise ValueError(f"on_empty must be 'skip' or 'raise', got {on_empty!r}")
    if method not in ("auto", "sparse", "dense"):
        raise ValueError(f"method must be 'auto', 'sparse' or 'dense', got {method!r}")
    topk = tuple(int(k) for k in topk)
    if any(k < 1 for k in topk):
        raise ValueError(f"top-k values must be >= 1, got {topk}")
    qe = np.asarray(query_embeddings)
    num_q = galleries.num_queries
    if qe.ndim != 2 or qe.shape[0] != num_q:
        raise ValueError(f"query embeddings of shape {qe.shape} for {num_q} queries")
    if qe.shape[1] != table.embed_dim:
        raise ValueError(
            f"query embeddings have dimension {qe.shape[1]}, gallery ones {table.embed_dim}"
        )
    num_img = table.num_images
    idx_all = galleries.image_index
    if idx_all.size:
        bad = idx_all >= num_img
        if bad.any() or idx_all.min() < -1:
            q, c = np.argwhere(bad | (idx_all < -1))[0]
            raise ValueError(
                f"query {q}: gallery image {idx_all[q, c]} (column {c}) is missing from the "
                f"detections table ({num_img} images)"
            )

    count_gt = galleries.count_gt()
    skipped = count_gt == 0
    if skipped.any():
        if on_empty == "raise":
            raise ValueError(f"query {int(np.flatnonzero(skipped)[0])} has no positive entry")
        logger.info("Skipping %d queries without any positive gallery entry", int(skipped.sum()))

    if prepared is None:
        prepared = PreparedGallery(table, det_thresh)
    elif prepared.table is not table or prepared.det_thresh != float(det_thresh):
        raise ValueError("`prepared` was computed for another table or detection threshold")
    kept, gallery = prepared.kept, prepared.similarities
    offsets = kept.offsets
    det_counts = kept.counts()
    det_img = kept.image_of_detection()
    qn = normalize_embeddings(qe, what="query")
    num_det = kept.num_detections

    # Per-positive-entry outputs.
    n_pos = galleries.pos_query.size
    tp_sim = np.full(n_pos, -np.inf)  # similarity of the entry's true positive, -inf if none
    n_ge = np.zeros(n_pos, np.int64)  # detections of the query ranked at or above it

    chunk = max(1, min(num_q, _CHUNK_ELEMS // max(num_det, num_img, idx_all.shape[1], 1)))
    pos_starts = np.searchsorted(galleries.pos_query, np.arange(0, num_q + chunk, chunk))
    for ci, q0 in enumerate(range(0, num_q, chunk)):
        q1 = min(num_q, q0 + chunk)
        p0, p1 = int(pos_starts[ci]), int(pos_starts[ci + 1])
        if p0 == p1:
            continue  # no positive entry in this chunk: nothing to rank
        idx = idx_all[q0:q1].astype(np.int64)
        valid = idx >= 0
        evaluated = _first_occurrence(idx, valid, num_img) if duplicates == "first" else valid

        # 1. Candidates for the true positive of every evaluated positive entry: the detections
        # of its image over the entry's IoU threshold.
        pq = galleries.pos_query[p0:p1]
        pc = galleries.pos_col[p0:p1]
        pbox = galleries.pos_boxes[p0:p1]
        pev = np.flatnonzero(evaluated[pq - q0, pc])
        dets, cnt = _expand_dets(idx[pq[pev] - q0, pc[pev]], offsets)
        owner = np.repeat(pev, cnt)  # positive entry (chunk-local) of each candidate
        iou = paired_iou(kept.boxes[dets], pbox[owner])
        over = iou >= small_box_iou_threshold(pbox)[owner]
        if not over.any():
            continue
        cand_q = pq[owner] - q0  # chunk-local query of each candidate (sorted)
        active = np.unique(cand_q[over])  # queries with at least one candidate

        # 2. Similarities of the active queries, from ONE evaluation per (query, distinct
        # embedding): the TP's own value is among the values it is counted against.
        pairs_per_row = np.where(evaluated, det_counts[np.where(valid, idx, 0)], 0).sum(axis=1)
        n_pairs = int(pairs_per_row[active].sum())
        use_sparse = method == "sparse" or (
            method == "auto" and n_pairs * _SPARSE_RATIO < active.size * num_det
        )
        cand_sim = np.full(dets.size, -np.inf)
        if use_sparse:
            ranked = {}
            bounds = np.searchsorted(cand_q, np.arange(q1 - q0 + 1))
            buf = np.empty(num_det)
            for r in active.tolist():
                row_dets, _ = _expand_dets(idx[r][evaluated[r]], offsets)
                vals = gallery.of_dets(qn[q0 + r], row_dets, repeats=duplicates != "first")
                buf[row_dets] = vals
                a, b = bounds[r], bounds[r + 1]
                cand_sim[a:b] = buf[dets[a:b]]
                ranked[r] = vals
        else:
            sims = gallery.dense(qn[q0 + active])  # [A, D]
            row = np.minimum(np.searchsorted(active, cand_q), active.size - 1)
            ok = active[row] == cand_q
            cand_sim[ok] = sims[row[ok], dets[ok]]
        seg = _segment_max(np.where(over, cand_sim, -np.inf), cnt)
        tp_sim[p0 + pev] = seg
        has_tp = np.isfinite(tp_sim[p0:p1])

        # 3. For every true positive, count the evaluated detections with sim >= its sim.
        tq = pq[has_tp] - q0  # chunk-local query of each TP (sorted)
        ts = tp_sim[p0:p1][has_tp]
        if use_sparse:
            counts_ge = np.zeros(tq.size, np.int64)
            tb = np.searchsorted(tq, np.arange(q1 - q0 + 1))
            for r in np.unique(tq).tolist():
                a, b = tb[r], tb[r + 1]
                counts_ge[a:b] = (ranked[r][None, :] >= ts[a:b, None]).sum(axis=1)
        else:
            counts_ge = _count_ge_dense(idx, evaluated, tq, ts, active, sims, det_img, num_img)
        n_ge[p0 + np.flatnonzero(has_tp)] = counts_ge

    # 4. Assemble AP and top-k from the true positives only.
    has_tp = np.isfinite(tp_sim)
    tq, ts, tn = galleries.pos_query[has_tp], tp_sim[has_tp], n_ge[has_tp]
    count_tp = np.bincount(tq, minlength=num_q).astype(np.int64)
    order = np.lexsort((-ts, tq))  # by query, then similarity descending
    tq, ts, tn = tq[order], ts[order], tn[order]
    # TPs of the same query ranked at or above each TP (ties included): end of its tie group.
    new_grp = np.r_[True, (tq[1:] != tq[:-1]) | (ts[1:] != ts[:-1])] if tq.size else tq > 0
    grp_last = np.r_[np.flatnonzero(new_grp)[1:] - 1, tq.size - 1] if tq.size else tq
    grp_end = grp_last[np.cumsum(new_grp) - 1]
    q_start = np.searchsorted(tq, tq, side="left")
    tp_ge = grp_end - q_start + 1
    prec = tp_ge / np.maximum(tn, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(tq, weights=prec, minlength=num_q) / count_gt
    ap[skipped] = np.nan
    hits = np.zeros((num_q, len(topk)), bool)
    if tq.size:
        best = np.flatnonzero(np.r_[True, tq[1:] != tq[:-1]])  # max-similarity TP per query
        neg_above = tn[best] - tp_ge[best]  # negatives with sim >= best TP (ties count against)
        for j, k in enumerate(topk):
            hits[tq[best], j] = neg_above < k
    if np.any(count_tp > count_gt):
        raise AssertionError("internal error: more true positives than positive entries")
    return SearchResult(
        ap=ap,
        hits=hits,
        topk=topk,
        count_gt=count_gt,
        count_tp=count_tp,
        skipped=skipped,
        det_thresh=float(det_thresh),
        duplicates=duplicates,
    )


def _count_ge_dense(
    idx: np.ndarray,
    evaluated: np.ndarray,
    tq: np.ndarray,
    ts: np.ndarray,
    active: np.ndarray,
    sims: np.ndarray,
    det_img: np.ndarray,
    num_images: int,
) -> np.ndarray:
    """Count evaluated detections with sim >= ts[t] in the gallery of query tq[t] (dense path).

    Args:
        idx: [C, N] int64 table indices of the chunk's queries.
        evaluated: [C, N] bool entries that enter the ranking (an image listed k times for
            "per_entry" counts k times).
        tq: [T] chunk-local query of each true positive (sorted; a subset of ``active``).
        ts: [T] similarity of each true positive.
        active: [A] sorted chunk-local queries of the rows of ``sims``.
        sims: [A, D] similarities of the active queries to every kept detection (modified).
        det_img: [D] image of every detection.
        num_images: G.

    Returns:
        [T] int64 counts.
    """
    c = idx.shape[0]
    rows = np.broadcast_to(np.arange(c)[:, None], idx.shape)[evaluated]
    weight = np.bincount(
        rows * np.int64(num_images) + idx[evaluated], minlength=c * num_images
    ).reshape(c, num_images)[active]
    binary = weight.max(initial=0) <= 1
    out = np.zeros(tq.size, np.int64)
    local = np.searchsorted(active, tq)
    rank = np.arange(tq.size) - np.searchsorted(tq, tq, side="left")
    tmax = int(rank.max()) + 1
    if binary and tmax <= 8:
        sims[~weight.astype(bool)[:, det_img]] = -np.inf  # drop detections of unlisted images
        thr = np.full((active.size, tmax), np.inf)
        thr[local, rank] = ts
        for j in range(tmax):
            cnt = np.count_nonzero(sims >= thr[:, j : j + 1], axis=1)
            sel = rank == j
            out[sel] = cnt[local[sel]]
        return out
    for a in np.unique(local).tolist():  # weighted or many TPs: one sort-free pass per row
        sel = np.flatnonzero(local == a)
        w = weight[a][det_img]
        m = w > 0
        thr_sorted = np.sort(ts[sel])
        bins = np.searchsorted(thr_sorted, sims[a][m], side="right")  # TPs with thr <= value
        hist = np.bincount(bins, weights=w[m], minlength=sel.size + 1)
        ge_sorted = np.cumsum(hist[::-1])[::-1][1:]  # count of values >= thr_sorted[i]
        out[sel] = np.rint(ge_sorted[np.searchsorted(thr_sorted, ts[sel])]).astype(np.int64)
    return out
