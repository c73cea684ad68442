"""Containers of person-search scoring: the gallery detections (:class:`GalleryTable`), the
gallery of every query (:class:`SearchGalleries`) and the per-query results
(:class:`SearchResult`). Plain numpy, no torch: the rescore CLI and the benchmarks use them
without a model.

Shorthand used for array shapes:

* G: number of images in the detections table (every gallery image; query images may be in it)
* D: total number of gallery detections in the table (all images concatenated)
* E: embedding dimension
* Q: number of queries
* N: number of gallery entries per query (padded with -1 where galleries differ in size)
* P: number of positive gallery entries (entries whose image contains the query person)
* K: number of top-k values
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["GalleryTable", "SearchGalleries", "SearchResult", "check_boxes"]


def check_boxes(boxes: np.ndarray, owner: Callable[[int], str], label: str) -> None:
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
        check_boxes(self.boxes, owner, "gallery image")
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
        check_boxes(pb, lambda i: f"{pq[i]} (gallery column {pc[i]})", "GT box of query")
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
        duplicates: duplicate-entry mode used (see :data:`.search_metrics.DUPLICATE_MODES`).
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
