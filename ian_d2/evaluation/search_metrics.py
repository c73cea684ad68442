"""Vectorised person-search scoring (mAP and top-k) for CUHK-SYSU and PRW.

The rules follow ``docs/PROTOCOLS.md`` (OIM / SeqNet evaluation, with its crashes and
order-dependent tie breaking fixed). The code is independent of Detectron2 and of torch: the
DatasetEvaluator is a thin wrapper that fills a :class:`GalleryTable` and a
:class:`SearchGalleries` and calls :func:`evaluate_search`.

Shorthand used for array shapes:

* G: number of images in the detections table (every gallery image, query images may be in it too)
* D: total number of gallery detections in the table (all images concatenated)
* E: embedding dimension
* Q: number of queries
* N: number of gallery entries per query (padded with -1 where galleries differ in size)
* P: number of positive gallery entries (entries whose image contains the query person)

Similarity. Embeddings are L2-normalised in float64 with a fixed summation order, then rounded
to integers on a 2**23 grid (:func:`quantize_embeddings`; at most 6e-8 per component, below
float32 resolution). A dot product of two such vectors is a sum of integers below 2**53, which
float64 represents exactly, so every summation order (BLAS, einsum, a Python loop) returns the
same number: identical embeddings tie exactly, wherever they sit in the gallery.

Average precision. For a query with ``count_gt`` positive entries and true positives ``t`` of
similarity ``s_t``, the step-wise AP of scikit-learn's ``average_precision_score`` (ties grouped)
times the recall factor ``count_tp / count_gt`` equals::

    AP = 1 / count_gt * sum_t  #{TP with sim >= s_t} / #{detections with sim >= s_t}

so only the true positives need a rank, and no gallery list is ever sorted.
"""

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "DUPLICATE_MODES",
    "GalleryTable",
    "SearchGalleries",
    "SearchResult",
    "quantize_embeddings",
    "similarity",
    "paired_iou",
    "small_box_iou_threshold",
    "evaluate_search",
    "add_pool_negatives",
    "build_prw_galleries",
]

logger = logging.getLogger(__name__)

DUPLICATE_MODES = ("first", "per_entry")
"""How a gallery image listed twice for one query is scored.

``"first"`` (reference behaviour, default): every positive entry counts in ``count_gt``, but an
image is evaluated once, for its FIRST entry and with that entry's box. ``"per_entry"``: every
entry is evaluated on its own (the image's detections enter the ranking once per entry).
"""

_QUANT_BITS = 23  # |x| <= 1 -> |round(x * 2**23)| <= 2**23: exact in float32 and float64
_SIM_SCALE = 2.0 ** (-2 * _QUANT_BITS)  # power of two: scaling is exact
_CHUNK_ELEMS = 1 << 23  # elements of the largest temporary per query chunk (~64 MB of float64)
_SPARSE_RATIO = 30  # use the gather path when pairs * ratio < queries * detections


def quantize_embeddings(
    embeddings: np.ndarray, what: str = "embedding", owner: Optional[Callable[[int], str]] = None
) -> np.ndarray:
    """L2-normalise embeddings and round them to the exact-similarity grid.

    Args:
        embeddings: [N, E] float array.
        what: name used in error messages (e.g. "query").
        owner: optional map from row index to the name used in error messages.

    Returns:
        [N, E] float32 array of integers in [-2**23, 2**23]; ``similarity`` of two rows is the
        cosine similarity of the originals up to ~1e-7 and is exactly reproducible.

    Raises:
        ValueError: a row is not finite or has zero norm (the message names the first row).
    """
    x = np.asarray(embeddings)
    name = owner if owner is not None else str
    if x.ndim != 2:
        raise ValueError(f"{what} embeddings must be [N, E], got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    scale = float(1 << _QUANT_BITS)
    for r0 in range(0, x.shape[0], 2048):  # cache-sized blocks of rows
        block = x[r0 : r0 + 2048].astype(np.float64)
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
        block /= np.sqrt(sq)[:, None]
        block *= scale
        out[r0 : r0 + 2048] = np.rint(block)
    return out


def similarity(queries_q: np.ndarray, gallery_q: np.ndarray) -> np.ndarray:
    """Exact cosine similarity of quantised embeddings.

    Args:
        queries_q: [A, E] output of :func:`quantize_embeddings`.
        gallery_q: [B, E] output of :func:`quantize_embeddings`.

    Returns:
        [A, B] float64 similarities, bit-identical for identical pairs.
    """
    return (queries_q.astype(np.float64) @ gallery_q.astype(np.float64).T) * _SIM_SCALE


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


def _check_boxes(boxes: np.ndarray, owner: Callable[[int], str], label: str) -> None:
    """Raise ValueError naming ``label owner(i)`` for the first non-finite or inverted box."""
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        raise ValueError(f"{label} {owner(int(np.flatnonzero(bad)[0]))} has a non-finite box")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{label} {owner(i)} has a box with x2 < x1 or y2 < y1: {boxes[i]}")


class GalleryTable:
    """Detections of all gallery images, concatenated.

    Image ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``boxes``, ``scores`` and
    ``embeddings``. An image with no detection has an empty range and is still "in the table";
    an image index >= G is "missing" and makes scoring fail.

    Attributes:
        boxes: [D, 4] float64 XYXY boxes in image coordinates.
        scores: [D] detection scores (their own dtype is kept for the threshold comparison).
        embeddings: [D, E] float embeddings (any scale; normalised at scoring).
        offsets: [G + 1] int64.
        image_names: optional tuple of G names (for messages and :meth:`index_of`).
    """

    def __init__(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        embeddings: np.ndarray,
        offsets: np.ndarray,
        image_names: Optional[Sequence[str]] = None,
        validate: bool = True,
    ):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(scores)
        if not np.issubdtype(self.scores.dtype, np.floating):
            self.scores = self.scores.astype(np.float64)
        self.embeddings = np.asarray(embeddings)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.image_names = None if image_names is None else tuple(str(n) for n in image_names)
        self._name_to_index: Optional[Dict[str, int]] = None
        if validate:
            self._validate()

    @classmethod
    def from_per_image(
        cls,
        boxes: Sequence[np.ndarray],
        scores: Sequence[np.ndarray],
        embeddings: Sequence[np.ndarray],
        image_names: Optional[Sequence[str]] = None,
        embed_dim: Optional[int] = None,
    ) -> "GalleryTable":
        """Build from per-image arrays: boxes[i] [D_i, 4], scores[i] [D_i], embeddings[i] [D_i, E].

        ``embed_dim`` is needed only when every image is empty.
        """
        if not (len(boxes) == len(scores) == len(embeddings)):
            raise ValueError("boxes, scores and embeddings must list the same number of images")
        dims = {np.shape(e)[-1] for e in embeddings if np.size(e) > 0}
        if len(dims) > 1:
            for i, e in enumerate(embeddings):
                if np.size(e) > 0 and np.shape(e)[-1] != min(dims):
                    raise ValueError(f"gallery image {i}: embedding dimension {np.shape(e)[-1]}")
        dim = dims.pop() if dims else (embed_dim or 0)
        counts = []
        for i, (b, s, e) in enumerate(zip(boxes, scores, embeddings)):
            n = len(s)
            if np.shape(b) != (n, 4) and not (n == 0 and np.size(b) == 0):
                raise ValueError(f"gallery image {i}: boxes of shape {np.shape(b)} for {n} scores")
            if np.shape(e) != (n, dim) and not (n == 0 and np.size(e) == 0):
                raise ValueError(f"gallery image {i}: embeddings of shape {np.shape(e)}")
            counts.append(n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        cat_b = np.concatenate([np.reshape(b, (-1, 4)) for b in boxes] + [np.zeros((0, 4))])
        sdt = np.result_type(*[np.asarray(s).dtype for s in scores]) if scores else np.float64
        cat_s = np.concatenate([np.asarray(s, dtype=sdt).reshape(-1) for s in scores] + [[]])
        cat_e = np.concatenate(
            [np.reshape(e, (-1, dim)) for e in embeddings] + [np.zeros((0, dim), np.float32)]
        )
        return cls(cat_b, cat_s.astype(sdt), cat_e, offsets, image_names)

    def _validate(self) -> None:
        d = self.scores.shape[0]
        if self.scores.ndim != 1 or self.boxes.shape[0] != d:
            raise ValueError(f"{self.boxes.shape[0]} boxes but scores of shape {self.scores.shape}")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != d:
            raise ValueError(f"embeddings of shape {self.embeddings.shape} for {d} detections")
        off = self.offsets
        if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != d or np.any(np.diff(off) < 0):
            raise ValueError("offsets must be non-decreasing, start at 0 and end at D")
        if self.image_names is not None and len(self.image_names) != self.num_images:
            raise ValueError(f"{len(self.image_names)} image names for {self.num_images} images")
        owner = self.detection_owner
        bad = np.isnan(self.scores)
        if bad.any():
            raise ValueError(f"gallery image {owner(int(np.flatnonzero(bad)[0]))} has a NaN score")
        _check_boxes(self.boxes, owner, "gallery image")
        if not np.issubdtype(self.embeddings.dtype, np.number):
            raise ValueError(f"embeddings must be numeric, got {self.embeddings.dtype}")
        bad = ~np.isfinite(self.embeddings).all(axis=1)
        if bad.any():
            raise ValueError(
                f"gallery image {owner(int(np.flatnonzero(bad)[0]))} has a non-finite embedding"
            )

    def detection_owner(self, det: int) -> str:
        """'index (name)' of the image owning detection ``det`` (for error messages)."""
        i = int(np.searchsorted(self.offsets, det, side="right") - 1)
        return f"{i} ({self.image_names[i]})" if self.image_names is not None else str(i)

    @property
    def num_images(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def num_detections(self) -> int:
        return int(self.scores.size)

    @property
    def embed_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def counts(self) -> np.ndarray:
        """[G] int64 number of detections per image."""
        return np.diff(self.offsets)

    def image_of_detection(self) -> np.ndarray:
        """[D] int64 image index of every detection."""
        return np.repeat(np.arange(self.num_images, dtype=np.int64), self.counts())

    def index_of(self, names: Sequence[str], what: str = "image") -> np.ndarray:
        """Map image names to table indices.

        Args:
            names: any-shaped array or sequence of names.
            what: how to call the names in the error message.

        Returns:
            int64 array of the same shape as ``names``.

        Raises:
            ValueError: a name is not in the table (the first missing one is named).
        """
        if self.image_names is None:
            raise ValueError("this GalleryTable has no image_names")
        if self._name_to_index is None:
            self._name_to_index = {n: i for i, n in enumerate(self.image_names)}
        arr = np.asarray(names, dtype=object)
        flat = arr.reshape(-1)
        out = np.empty(flat.shape, dtype=np.int64)
        for k, n in enumerate(flat):
            i = self._name_to_index.get(str(n))
            if i is None:
                raise ValueError(f"{what} {n!r} is missing from the detections table")
            out[k] = i
        return out.reshape(arr.shape)

    def filter_scores(self, det_thresh: float) -> "GalleryTable":
        """Keep detections with ``score >= det_thresh`` (compared in the scores' dtype)."""
        keep = self.scores >= np.asarray(det_thresh, dtype=self.scores.dtype)
        if keep.all():
            return self
        cs = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        return GalleryTable(
            self.boxes[keep],
            self.scores[keep],
            self.embeddings[keep],
            cs[self.offsets],
            self.image_names,
            validate=False,
        )


class SearchGalleries:
    """The gallery of every query: table image indices and the query person's GT boxes.

    Row ``q`` of ``image_index`` lists the gallery entries of query ``q`` in protocol order;
    -1 marks padding (anywhere in the row). Positive entries (the query person is in the image)
    are stored sparsely, sorted by (query, column): entry ``image_index[pos_query[p],
    pos_col[p]]`` shows the person at ``pos_boxes[p]``. Every other entry is a negative.

    Attributes:
        image_index: [Q, N] int32/int64 table indices, -1 = no entry.
        pos_query: [P] int64 query of each positive entry.
        pos_col: [P] int64 column of each positive entry.
        pos_boxes: [P, 4] float64 XYXY GT boxes.
    """

    def __init__(
        self,
        image_index: np.ndarray,
        pos_query: np.ndarray,
        pos_col: np.ndarray,
        pos_boxes: np.ndarray,
    ):
        idx = np.asarray(image_index)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"image_index must be an integer [Q, N] array, got {idx.shape}")
        self.image_index = idx
        pq = np.asarray(pos_query, dtype=np.int64).reshape(-1)
        pc = np.asarray(pos_col, dtype=np.int64).reshape(-1)
        pb = np.asarray(pos_boxes, dtype=np.float64).reshape(-1, 4)
        if not (pq.size == pc.size == pb.shape[0]):
            raise ValueError("pos_query, pos_col and pos_boxes differ in length")
        q, n = idx.shape
        if pq.size and (pq.min() < 0 or pq.max() >= q or pc.min() < 0 or pc.max() >= n):
            raise ValueError("a positive entry points outside image_index")
        order = np.lexsort((pc, pq))
        pq, pc, pb = pq[order], pc[order], pb[order]
        if pq.size and np.any((np.diff(pq) == 0) & (np.diff(pc) == 0)):
            i = int(np.flatnonzero((np.diff(pq) == 0) & (np.diff(pc) == 0))[0])
            raise ValueError(f"query {pq[i]}: gallery column {pc[i]} has two GT boxes")
        if pq.size:
            bad = idx[pq, pc] < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"query {pq[i]}: GT box on empty gallery column {pc[i]}")
        _check_boxes(pb, lambda i: f"{pq[i]} (gallery column {pc[i]})", "GT box of query")
        self.pos_query, self.pos_col, self.pos_boxes = pq, pc, pb

    @classmethod
    def from_dense(cls, image_index: np.ndarray, gt_boxes: np.ndarray) -> "SearchGalleries":
        """Build from dense arrays.

        Args:
            image_index: [Q, N] int table indices, -1 = no entry.
            gt_boxes: [Q, N, 4] float XYXY GT boxes, NaN rows where the person is absent.
        """
        idx = np.asarray(image_index)
        gt = np.asarray(gt_boxes, dtype=np.float64)
        if gt.shape != idx.shape + (4,):
            raise ValueError(f"gt_boxes shape {gt.shape} does not match image_index {idx.shape}")
        nan = np.isnan(gt)
        partial = nan.any(axis=2) & ~nan.all(axis=2)
        if partial.any():
            q, c = np.argwhere(partial)[0]
            raise ValueError(f"query {q}: GT box of gallery column {c} is partly NaN")
        pq, pc = np.nonzero(~nan.all(axis=2))
        return cls(idx, pq, pc, gt[pq, pc])

    @classmethod
    def from_lists(
        cls, image_lists: Sequence[np.ndarray], box_lists: Sequence[np.ndarray]
    ) -> "SearchGalleries":
        """Build from per-query lists: image_lists[q] [N_q] ints, box_lists[q] [N_q, 4] (NaN rows
        = absent). Rows are padded with -1 to the longest list."""
        if len(image_lists) != len(box_lists):
            raise ValueError("image_lists and box_lists differ in length")
        nmax = max([len(x) for x in image_lists] + [0])
        idx = np.full((len(image_lists), nmax), -1, dtype=np.int64)
        pq, pc, pb = [], [], []
        for q, (ims, bxs) in enumerate(zip(image_lists, box_lists)):
            ims = np.asarray(ims, dtype=np.int64).reshape(-1)
            bxs = np.asarray(bxs, dtype=np.float64).reshape(-1, 4)
            if bxs.shape[0] != ims.size:
                raise ValueError(f"query {q}: {ims.size} gallery images but {bxs.shape[0]} boxes")
            idx[q, : ims.size] = ims
            pos = np.flatnonzero(~np.isnan(bxs).all(axis=1))
            pq.append(np.full(pos.size, q))
            pc.append(pos)
            pb.append(bxs[pos])
        cat = lambda a, s: np.concatenate(a) if a else np.zeros(s)  # noqa: E731
        return cls(idx, cat(pq, (0,)), cat(pc, (0,)), cat(pb, (0, 4)))

    @classmethod
    def from_names(
        cls, gallery_names: np.ndarray, gt_boxes: np.ndarray, table: GalleryTable
    ) -> "SearchGalleries":
        """Build from a protocol (e.g. CUHK-SYSU ``TestG{N}``): names [Q, N] and boxes [Q, N, 4].

        Raises:
            ValueError: naming the query and image missing from the detections table.
        """
        names = np.asarray(gallery_names, dtype=object)
        idx = np.empty(names.shape, dtype=np.int64)
        for q in range(names.shape[0]):
            try:
                idx[q] = table.index_of(names[q], what=f"query {q}: gallery image")
            except ValueError as err:
                raise ValueError(str(err)) from None
        return cls.from_dense(idx, gt_boxes)

    @property
    def num_queries(self) -> int:
        return int(self.image_index.shape[0])

    def count_gt(self) -> np.ndarray:
        """[Q] int64 number of positive entries per query (duplicates included)."""
        return np.bincount(self.pos_query, minlength=self.num_queries).astype(np.int64)

    def entries(self, q: int) -> Tuple[np.ndarray, np.ndarray]:
        """Entries of query ``q`` in protocol order, padding dropped.

        Returns:
            (images [n] int64, gt_boxes [n, 4] float64 with NaN rows for negatives)
        """
        row = self.image_index[q].astype(np.int64)
        boxes = np.full((row.size, 4), np.nan)
        sel = self.pos_query == q
        boxes[self.pos_col[sel]] = self.pos_boxes[sel]
        keep = row >= 0
        return row[keep], boxes[keep]

    def select(self, queries: Sequence[int]) -> "SearchGalleries":
        """Galleries of a subset of queries (e.g. the occlusion subset), renumbered 0..len-1."""
        queries = np.asarray(queries, dtype=np.int64)
        remap = np.full(self.num_queries, -1, dtype=np.int64)
        remap[queries] = np.arange(queries.size)
        keep = np.isin(self.pos_query, queries)
        # A query listed twice keeps only its last copy's positives; protocols never do that.
        return SearchGalleries(
            self.image_index[queries],
            remap[self.pos_query[keep]],
            self.pos_col[keep],
            self.pos_boxes[keep],
        )


@dataclass
class SearchResult:
    """Per-query search results.

    Attributes:
        ap: [Q] float64 average precision in [0, 1] (NaN for skipped queries).
        hits: [Q, K] bool top-k hits for ``topk`` (False for skipped queries).
        topk: the K values of k.
        count_gt: [Q] int64 positive gallery entries.
        count_tp: [Q] int64 true positives found.
        skipped: [Q] bool queries with count_gt == 0 (no defined AP).
        det_thresh: detection score threshold used.
        duplicates: duplicate-entry mode used (see :data:`DUPLICATE_MODES`).
    """

    ap: np.ndarray
    hits: np.ndarray
    topk: Tuple[int, ...]
    count_gt: np.ndarray
    count_tp: np.ndarray
    skipped: np.ndarray
    det_thresh: float
    duplicates: str

    def metrics(self, queries: Optional[np.ndarray] = None) -> Dict[str, float]:
        """{"mAP", "top-1", ...} on a 0-100 scale over the non-skipped queries.

        Args:
            queries: optional index or bool mask selecting a subset of queries.
        """
        sel = np.ones(self.ap.shape[0], bool) if queries is None else np.zeros_like(self.skipped)
        if queries is not None:
            sel[queries] = True
        sel &= ~self.skipped
        n = int(sel.sum())
        out = {"mAP": 100.0 * float(self.ap[sel].mean()) if n else 0.0}
        for j, k in enumerate(self.topk):
            out[f"top-{k}"] = 100.0 * float(self.hits[sel, j].mean()) if n else 0.0
        return out

    def settings(self, queries: Optional[np.ndarray] = None) -> Dict[str, object]:
        """Protocol settings: det_thresh, duplicates, n_queries, n_skipped."""
        sel = np.ones(self.ap.shape[0], bool) if queries is None else np.zeros_like(self.skipped)
        if queries is not None:
            sel[queries] = True
        return {
            "det_thresh": float(self.det_thresh),
            "duplicates": self.duplicates,
            "n_queries": int(sel.sum()),
            "n_skipped": int((sel & self.skipped).sum()),
        }

    def summary(self, queries: Optional[np.ndarray] = None) -> Dict[str, object]:
        """:meth:`metrics` and :meth:`settings` in one dict."""
        out: Dict[str, object] = dict(self.metrics(queries))
        out.update(self.settings(queries))
        return out


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
) -> SearchResult:
    """Score person search for all queries (mAP and top-k, PROTOCOLS.md rules).

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
            galleries). Both give identical results.

    Returns:
        :class:`SearchResult`.

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

    kept = table.filter_scores(det_thresh)
    offsets = kept.offsets
    det_counts = kept.counts()
    det_img = kept.image_of_detection()
    gq = quantize_embeddings(kept.embeddings, "gallery image", kept.detection_owner)
    qq = quantize_embeddings(qe, what="query").astype(np.float64)
    num_det = kept.num_detections
    g64 = gq.astype(np.float64) if method != "sparse" else None

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

        # 1. True positive of every evaluated positive entry.
        pq = galleries.pos_query[p0:p1]
        pc = galleries.pos_col[p0:p1]
        pbox = galleries.pos_boxes[p0:p1]
        pev = evaluated[pq - q0, pc]
        pimg = idx[pq - q0, pc]
        dets, cnt = _expand_dets(pimg[pev], offsets)
        owner = np.repeat(np.flatnonzero(pev), cnt)
        sims = (gq[dets].astype(np.float64) * qq[pq[owner]]).sum(axis=1) * _SIM_SCALE
        # (exact: every partial sum is an integer below 2**53, whatever the order)
        iou = paired_iou(kept.boxes[dets], pbox[owner])
        over = iou >= small_box_iou_threshold(pbox)[owner]
        seg = _segment_max(np.where(over, sims, -np.inf), cnt)
        tp_sim[p0 + np.flatnonzero(pev)] = seg
        has_tp = np.isfinite(tp_sim[p0:p1])
        if not has_tp.any():
            continue

        # 2. For every true positive, count the evaluated detections with sim >= its sim.
        tq = pq[has_tp] - q0  # chunk-local query of each TP (sorted)
        ts = tp_sim[p0:p1][has_tp]
        pairs_per_row = np.where(evaluated, det_counts[np.where(valid, idx, 0)], 0).sum(axis=1)
        n_pairs = int(pairs_per_row[np.unique(tq)].sum())
        use_sparse = method == "sparse" or (
            method == "auto" and n_pairs * _SPARSE_RATIO < (q1 - q0) * num_det
        )
        if use_sparse:
            counts_ge = _count_ge_sparse(idx, evaluated, tq, ts, q0, qq, gq, offsets)
        else:
            if g64 is None:
                g64 = gq.astype(np.float64)
            counts_ge = _count_ge_dense(idx, evaluated, tq, ts, q0, qq, g64, det_img, num_img)
        n_ge[p0 + np.flatnonzero(has_tp)] = counts_ge

    # 3. Assemble AP and top-k from the true positives only.
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


def _count_ge_sparse(
    idx: np.ndarray,
    evaluated: np.ndarray,
    tq: np.ndarray,
    ts: np.ndarray,
    q0: int,
    qq: np.ndarray,
    gq: np.ndarray,
    offsets: np.ndarray,
) -> np.ndarray:
    """Count evaluated detections with sim >= ts[t] in the gallery of query tq[t] (gather path).

    Args:
        idx: [C, N] int64 table indices of the chunk's queries.
        evaluated: [C, N] bool entries that enter the ranking.
        tq: [T] chunk-local query of each true positive (sorted).
        ts: [T] similarity of each true positive.
        q0: global index of the chunk's first query.
        qq: [Q, E] float64 quantised queries.
        gq: [D, E] float32 quantised gallery embeddings.
        offsets: [G + 1] table offsets.

    Returns:
        [T] int64 counts.
    """
    out = np.zeros(tq.size, np.int64)
    bounds = np.searchsorted(tq, np.arange(idx.shape[0] + 1))
    for r in np.unique(tq):
        dets, _ = _expand_dets(idx[r][evaluated[r]], offsets)
        vals = (gq[dets].astype(np.float64) @ qq[q0 + r]) * _SIM_SCALE
        a, b = bounds[r], bounds[r + 1]
        out[a:b] = (vals[None, :] >= ts[a:b, None]).sum(axis=1)
    return out


def _count_ge_dense(
    idx: np.ndarray,
    evaluated: np.ndarray,
    tq: np.ndarray,
    ts: np.ndarray,
    q0: int,
    qq: np.ndarray,
    g64: np.ndarray,
    det_img: np.ndarray,
    num_images: int,
) -> np.ndarray:
    """Same as :func:`_count_ge_sparse` via a dense [C, D] similarity block and image weights."""
    c = idx.shape[0]
    rows = np.broadcast_to(np.arange(c)[:, None], idx.shape)[evaluated]
    weight = np.bincount(
        rows * np.int64(num_images) + idx[evaluated], minlength=c * num_images
    ).reshape(c, num_images)
    active = np.unique(tq)
    weight = weight[active]
    binary = weight.max(initial=0) <= 1
    sims = qq[q0 + active] @ g64.T  # [A, D] exact integers (the 2**-46 scale is not needed)
    thr_int = ts / _SIM_SCALE  # exact: power-of-two scaling
    out = np.zeros(tq.size, np.int64)
    local = np.searchsorted(active, tq)
    rank = np.arange(tq.size) - np.searchsorted(tq, tq, side="left")
    tmax = int(rank.max()) + 1
    if binary and tmax <= 8:
        sims[~weight.astype(bool)[:, det_img]] = -np.inf  # drop detections of unlisted images
        thr = np.full((active.size, tmax), np.inf)
        thr[local, rank] = thr_int
        for j in range(tmax):
            cnt = np.count_nonzero(sims >= thr[:, j : j + 1], axis=1)
            sel = rank == j
            out[sel] = cnt[local[sel]]
        return out
    for a in range(active.size):  # weighted or many TPs: one sort-free pass per row
        sel = np.flatnonzero(local == a)
        w = weight[a][det_img]
        m = w > 0
        thr_sorted = np.sort(thr_int[sel])
        bins = np.searchsorted(thr_sorted, sims[a][m], side="right")  # TPs with thr <= value
        hist = np.bincount(bins, weights=w[m], minlength=sel.size + 1)
        ge_sorted = np.cumsum(hist[::-1])[::-1][1:]  # count of values >= thr_sorted[i]
        out[sel] = np.rint(ge_sorted[np.searchsorted(thr_sorted, thr_int[sel])]).astype(np.int64)
    return out


def add_pool_negatives(
    galleries: SearchGalleries, pool_index: np.ndarray, num_images: Optional[int] = None
) -> SearchGalleries:
    """Full-pool gallery (CUHK-SYSU gallery size -1).

    Appends to every query's protocol gallery each pool image not already listed in it, once
    and as a negative (protocol entries, duplicates and boxes are kept unchanged).

    Args:
        galleries: protocol galleries (e.g. TestG50 or TestG100).
        pool_index: [M] table indices of the pool images (``pool.mat``).
        num_images: G, the table size (default: max index + 1).

    Returns:
        SearchGalleries with rows of length N + M, padded with -1.
    """
    pool = np.asarray(pool_index, dtype=np.int64).reshape(-1)
    _, first = np.unique(pool, return_index=True)
    pool = pool[np.sort(first)]
    idx = galleries.image_index.astype(np.int64)
    g = (
        int(num_images)
        if num_images is not None
        else int(max(idx.max(initial=-1), pool.max(initial=-1)) + 1)
    )
    q, n = idx.shape
    out = np.full((q, n + pool.size), -1, dtype=np.int32 if g < 2**31 else np.int64)
    out[:, :n] = idx
    listed = np.zeros(g, bool)
    for r in range(q):
        row = idx[r][idx[r] >= 0]
        listed[row] = True
        extra = pool[~listed[pool]]
        out[r, n : n + extra.size] = extra
        listed[row] = False
    return SearchGalleries(out, galleries.pos_query, galleries.pos_col, galleries.pos_boxes)


def build_prw_galleries(
    query_image: np.ndarray,
    query_camera: np.ndarray,
    query_pid: np.ndarray,
    gallery_image: np.ndarray,
    gallery_camera: np.ndarray,
    gallery_pids: Sequence[np.ndarray],
    gallery_boxes: Sequence[np.ndarray],
    multi_view: bool = False,
) -> SearchGalleries:
    """PRW galleries: every gallery frame except the query frame (SeqNet/COAT default), or only
    frames from other cameras (``multi_view=True``, the NAE4PS protocol).

    The GT of a positive frame is the FIRST box of the query's pid in that frame.

    Args:
        query_image: [Q] table index of each query's frame.
        query_camera: [Q] camera id of each query.
        query_pid: [Q] person id of each query.
        gallery_image: [F] table index of each gallery frame (protocol order).
        gallery_camera: [F] camera id of each gallery frame.
        gallery_pids: F arrays [K_f] of person ids annotated in each frame.
        gallery_boxes: F arrays [K_f, 4] of XYXY boxes in each frame.
        multi_view: drop every frame of the query's camera.

    Returns:
        SearchGalleries with [Q, F] rows where excluded frames are -1.
    """
    qi = np.asarray(query_image, dtype=np.int64).reshape(-1)
    qc = np.asarray(query_camera).reshape(-1)
    qp = np.asarray(query_pid).reshape(-1)
    gi = np.asarray(gallery_image, dtype=np.int64).reshape(-1)
    gc = np.asarray(gallery_camera).reshape(-1)
    if not (qi.size == qc.size == qp.size):
        raise ValueError("query_image, query_camera and query_pid differ in length")
    if not (gi.size == gc.size == len(gallery_pids) == len(gallery_boxes)):
        raise ValueError("gallery frames, cameras, pids and boxes differ in length")
    excluded = qi[:, None] == gi[None, :]
    if multi_view:
        excluded |= qc[:, None] == gc[None, :]
    image_index = np.where(excluded, -1, gi[None, :])
    by_pid: Dict[object, List[Tuple[int, np.ndarray]]] = {}
    for f, (pids, boxes) in enumerate(zip(gallery_pids, gallery_boxes)):
        pids = np.asarray(pids).reshape(-1)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] != pids.size:
            raise ValueError(f"gallery frame {f}: {pids.size} pids but {boxes.shape[0]} boxes")
        _, first = np.unique(pids, return_index=True)
        for k in first:
            by_pid.setdefault(pids[k].item(), []).append((f, boxes[k]))
    pq, pc, pb = [], [], []
    for q in range(qi.size):
        for f, box in by_pid.get(qp[q].item(), []):
            if not excluded[q, f]:
                pq.append(q)
                pc.append(f)
                pb.append(box)
    return SearchGalleries(
        image_index,
        np.asarray(pq, np.int64),
        np.asarray(pc, np.int64),
        np.asarray(pb, np.float64).reshape(-1, 4),
    )
