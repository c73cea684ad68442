"""Saved person-search predictions: one ``.npz`` file per evaluated dataset.

The evaluator writes ``person_search_predictions.npz`` to its output directory
(``OUTPUT_DIR/inference/<dataset>/``); ``python -m ian_d2.evaluation.rescore`` re-scores it with
other protocols or thresholds from the annotation files alone (no image, no model).

Format (version 1): a NumPy ``.npz`` archive (``numpy.savez``, no pickled objects; read with
``np.load(path, allow_pickle=False)``). G: gallery images, D: gallery detections (all images
concatenated), Q: queries, E: embedding dimension.

=========================  ===============  ==================================================
key                        dtype, shape     content
=========================  ===============  ==================================================
format_version             int64 []         1
dataset_family             str []           "cuhk_sysu" or "prw"
dataset_name               str []           the registered name, e.g. "cuhk_sysu_test"
embed_dim                  int64 []         E
gallery_image_ids          str [G]          record ``image_id`` (e.g. "s12.jpg")
gallery_image_sizes        int64 [G, 2]     (height, width) of the original images
gallery_offsets            int64 [G + 1]    image i owns detections offsets[i]:offsets[i+1]
gallery_boxes              float32 [D, 4]   XYXY boxes in original image coordinates
gallery_scores             float32 [D]      detection scores (no threshold applied)
gallery_embeddings         float32 [D, E]   L2-normalised embeddings
query_indices              int64 [Q]        ``query_index`` (protocol row / query_info line)
query_image_ids            str [Q]          image of each query
query_image_sizes          int64 [Q, 2]     (height, width)
query_boxes                float32 [Q, 4]   the box the query embedding was computed from
query_embeddings           float32 [Q, E]   L2-normalised query embeddings
score_floor (optional)     float64 []       the model output no detection with a lower score
                                            (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``); absent
                                            when unknown
embed_boxes (optional)     str []           the box each gallery embedding was pooled on
                                            (``MODEL.ROI_HEADS.EMBED_BOXES``: "proposals" or
                                            "final"); absent when unknown
=========================  ===============  ==================================================

Queries are sorted by ``query_index``; gallery images keep the inference order. Every array is
written in full: the file applies no threshold of its own, but the model's own score threshold
(``score_floor``) bounds what a re-scoring can use: thresholds below it act as ``score_floor``.
"""

import io
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "FORMAT_VERSION",
    "PREDICTIONS_FILE",
    "PersonSearchPredictions",
    "save_predictions",
    "load_predictions",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
PREDICTIONS_FILE = "person_search_predictions.npz"
BOX_TOLERANCE = 1.0  # pixels a gallery box may exceed the image by (float rounding of resizing)

_KEYS = (
    "format_version",
    "dataset_family",
    "dataset_name",
    "embed_dim",
    "gallery_image_ids",
    "gallery_image_sizes",
    "gallery_offsets",
    "gallery_boxes",
    "gallery_scores",
    "gallery_embeddings",
    "query_indices",
    "query_image_ids",
    "query_image_sizes",
    "query_boxes",
    "query_embeddings",
)


@dataclass
class PersonSearchPredictions:
    """Gallery detections and query embeddings of one dataset (the ``.npz`` content).

    Attributes: as the keys of the module docstring's table (same dtypes and shapes), with
    ``gallery_image_ids`` and ``query_image_ids`` as lists of str.
    """

    dataset_family: str
    dataset_name: str
    embed_dim: int
    gallery_image_ids: List[str]
    gallery_image_sizes: np.ndarray
    gallery_offsets: np.ndarray
    gallery_boxes: np.ndarray
    gallery_scores: np.ndarray
    gallery_embeddings: np.ndarray
    query_indices: np.ndarray
    query_image_ids: List[str]
    query_image_sizes: np.ndarray
    query_boxes: np.ndarray
    query_embeddings: np.ndarray
    score_floor: Optional[float] = None
    embed_boxes: Optional[str] = None

    # ------------------------------------------------------------------------------------- #
    @classmethod
    def from_entries(
        cls,
        gallery: Sequence[dict],
        queries: Sequence[dict],
        dataset_family: str,
        dataset_name: str,
        embed_dim: Optional[int] = None,
        score_floor: Optional[float] = None,
        embed_boxes: Optional[str] = None,
    ) -> "PersonSearchPredictions":
        """Assemble from the per-input entries that the evaluator's ``process`` stores.

        Args:
            gallery: dicts with ``image_id``, ``height``, ``width``, ``boxes`` [R, 4],
                ``scores`` [R], ``embeds`` [R, E]. An image listed twice keeps its first entry.
            queries: dicts with ``query_index``, ``image_id``, ``height``, ``width``, ``box`` [4],
                ``embed`` [E]. Sorted by ``query_index`` here.
            dataset_family: "cuhk_sysu" or "prw".
            dataset_name: registered dataset name.
            embed_dim: expected E (None: taken from the first entry with an embedding).
            score_floor: the model's own detection score threshold (None: unknown).
            embed_boxes: the box the gallery embeddings were pooled on (None: unknown).

        Raises:
            ValueError: an embedding of the wrong dimension (naming the image or query), or a
                query index listed twice.
        """
        if embed_dim is None:
            dims = [np.shape(g["embeds"])[-1] for g in gallery if np.size(g["embeds"])]
            dims += [np.size(q["embed"]) for q in queries]
            embed_dim = int(dims[0]) if dims else 0
        e = int(embed_dim)
        seen, kept = set(), []
        for g in gallery:
            if g["image_id"] in seen:
                continue
            seen.add(g["image_id"])
            kept.append(g)
        if len(kept) != len(gallery):
            logger.warning(
                "%d gallery image(s) were predicted more than once; the first prediction is kept",
                len(gallery) - len(kept),
            )
        boxes, scores, embeds, counts = [], [], [], []
        for g in kept:
            n = int(np.size(g["scores"]))
            b = np.asarray(g["boxes"], np.float32)
            s = np.asarray(g["scores"], np.float32).reshape(-1)
            em = np.asarray(g["embeds"], np.float32)
            if n and (em.ndim != 2 or em.shape != (n, e)):
                raise ValueError(
                    f"gallery image {g['image_id']!r}: embeddings of shape {em.shape}, expected "
                    f"[{n}, {e}] (embedding dimension {e})"
                )
            if b.size != 4 * n:
                raise ValueError(
                    f"gallery image {g['image_id']!r}: boxes of shape {b.shape} for {n} scores"
                )
            boxes.append(b.reshape(n, 4))
            scores.append(s)
            embeds.append(em.reshape(n, e))
            counts.append(n)
        qs = sorted(queries, key=lambda q: int(q["query_index"]))
        qidx = np.asarray([int(q["query_index"]) for q in qs], np.int64)
        dup = np.flatnonzero(np.diff(qidx) == 0)
        if dup.size:
            raise ValueError(f"query {int(qidx[dup[0]])} was predicted more than once")
        qemb = np.zeros((len(qs), e), np.float32)
        for k, q in enumerate(qs):
            v = np.asarray(q["embed"], np.float32).reshape(-1)
            if v.size != e:
                raise ValueError(
                    f"query {int(q['query_index'])} ({q['image_id']!r}): embedding of dimension "
                    f"{v.size}, expected {e}"
                )
            qemb[k] = v
        return cls(
            dataset_family=str(dataset_family),
            dataset_name=str(dataset_name),
            embed_dim=e,
            gallery_image_ids=[str(g["image_id"]) for g in kept],
            gallery_image_sizes=np.asarray(
                [(int(g["height"]), int(g["width"])) for g in kept], np.int64
            ).reshape(-1, 2),
            gallery_offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(
                np.int64
            ),
            gallery_boxes=np.concatenate(boxes + [np.zeros((0, 4), np.float32)]),
            gallery_scores=np.concatenate(scores + [np.zeros(0, np.float32)]),
            gallery_embeddings=np.concatenate(embeds + [np.zeros((0, e), np.float32)]),
            query_indices=qidx,
            query_image_ids=[str(q["image_id"]) for q in qs],
            query_image_sizes=np.asarray(
                [(int(q["height"]), int(q["width"])) for q in qs], np.int64
            ).reshape(-1, 2),
            query_boxes=np.asarray([np.reshape(q["box"], 4) for q in qs], np.float32).reshape(
                -1, 4
            ),
            query_embeddings=qemb,
            score_floor=None if score_floor is None else float(score_floor),
            embed_boxes=None if embed_boxes is None else str(embed_boxes),
        )

    # ------------------------------------------------------------------------------------- #
    @property
    def num_gallery_images(self) -> int:
        return len(self.gallery_image_ids)

    @property
    def num_queries(self) -> int:
        return int(self.query_indices.size)

    def gallery_index(self) -> Dict[str, int]:
        """{image_id: row of the gallery arrays}."""
        return {n: i for i, n in enumerate(self.gallery_image_ids)}

    def image_sizes(self) -> Dict[str, Tuple[int, int]]:
        """{image_id: (height, width)} of every gallery and query image.

        Raises:
            ValueError: an image listed with two different sizes.
        """
        out: Dict[str, Tuple[int, int]] = {}
        pairs = list(zip(self.gallery_image_ids, self.gallery_image_sizes.tolist()))
        pairs += list(zip(self.query_image_ids, self.query_image_sizes.tolist()))
        for name, hw in pairs:
            hw = (int(hw[0]), int(hw[1]))
            if out.setdefault(name, hw) != hw:
                raise ValueError(f"image {name!r} is listed with sizes {out[name]} and {hw}")
        return out

    def detections(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes [R, 4], scores [R], embeddings [R, E]) of gallery image row ``i``."""
        a, b = int(self.gallery_offsets[i]), int(self.gallery_offsets[i + 1])
        return self.gallery_boxes[a:b], self.gallery_scores[a:b], self.gallery_embeddings[a:b]

    # ------------------------------------------------------------------------------------- #
    def validate(self, embed_dim: Optional[int] = None) -> None:
        """Check shapes and values; every message names the culprit image or query.

        Args:
            embed_dim: expected embedding dimension (None: ``self.embed_dim``).

        Raises:
            ValueError: inconsistent shapes, wrong embedding dimension, NaN / infinite scores,
                embeddings or boxes, zero embeddings, inverted boxes, or gallery boxes outside
                their image by more than ``BOX_TOLERANCE`` pixels.
        """
        e = self.embed_dim if embed_dim is None else int(embed_dim)
        g, q = self.num_gallery_images, self.num_queries
        off = np.asarray(self.gallery_offsets)
        d = int(self.gallery_scores.shape[0]) if self.gallery_scores.ndim == 1 else -1
        if self.gallery_image_sizes.shape != (g, 2):
            raise ValueError(f"gallery_image_sizes of shape {self.gallery_image_sizes.shape}")
        if off.shape != (g + 1,) or off[0] != 0 or off[-1] != d or np.any(np.diff(off) < 0):
            raise ValueError(f"gallery_offsets {off.shape} do not describe {d} detections")
        if self.gallery_boxes.shape != (d, 4):
            raise ValueError(
                f"gallery_boxes of shape {self.gallery_boxes.shape}, expected [{d}, 4]"
            )
        owner = np.repeat(np.arange(g), np.diff(off))

        def name(det: int) -> str:
            return repr(self.gallery_image_ids[int(owner[det])])

        if self.gallery_embeddings.ndim != 2 or self.gallery_embeddings.shape[0] != d:
            raise ValueError(f"gallery_embeddings of shape {self.gallery_embeddings.shape}")
        if d and self.gallery_embeddings.shape[1] != e:
            raise ValueError(
                f"gallery image {name(0)}: embeddings of dimension "
                f"{self.gallery_embeddings.shape[1]}, expected {e}"
            )
        bad = ~np.isfinite(self.gallery_scores)
        if bad.any():
            raise ValueError(f"gallery image {name(np.flatnonzero(bad)[0])}: NaN or infinite score")
        bad = ~np.isfinite(self.gallery_embeddings).all(axis=1)
        if bad.any():
            raise ValueError(
                f"gallery image {name(np.flatnonzero(bad)[0])}: NaN or infinite embedding"
            )
        bad = ~np.any(self.gallery_embeddings != 0, axis=1)
        if bad.any():
            raise ValueError(f"gallery image {name(np.flatnonzero(bad)[0])}: zero embedding")
        b = self.gallery_boxes.astype(np.float64)
        bad = ~np.isfinite(b).all(axis=1)
        if bad.any():
            raise ValueError(f"gallery image {name(np.flatnonzero(bad)[0])}: non-finite box")
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"gallery image {name(k)}: box {b[k].tolist()} has x2 < x1 or y2 < y1")
        hw = self.gallery_image_sizes[owner].astype(np.float64)
        tol = BOX_TOLERANCE
        bad = (
            (b[:, 0] < -tol)
            | (b[:, 1] < -tol)
            | (b[:, 2] > hw[:, 1] + tol)
            | (b[:, 3] > hw[:, 0] + tol)
        )
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            h, w = self.gallery_image_sizes[owner[k]].tolist()
            raise ValueError(
                f"gallery image {name(k)}: box {b[k].tolist()} lies outside the image "
                f"(height {h}, width {w}); boxes must be in original image coordinates"
            )

        if self.query_embeddings.shape != (q, e):
            if self.query_embeddings.ndim == 2 and self.query_embeddings.shape[0] == q and q:
                raise ValueError(
                    f"query {int(self.query_indices[0])}: embedding of dimension "
                    f"{self.query_embeddings.shape[1]}, expected {e}"
                )
            raise ValueError(f"query_embeddings of shape {self.query_embeddings.shape}")
        if len(self.query_image_ids) != q or self.query_image_sizes.shape != (q, 2):
            raise ValueError("query_image_ids / query_image_sizes do not match query_indices")
        if self.query_boxes.shape != (q, 4):
            raise ValueError(f"query_boxes of shape {self.query_boxes.shape}")
        if q and np.any(np.diff(self.query_indices) <= 0):
            raise ValueError("query_indices must be strictly increasing (one entry per query)")

        def qname(k: int) -> str:
            return f"query {int(self.query_indices[k])} ({self.query_image_ids[k]!r})"

        bad = ~np.isfinite(self.query_embeddings).all(axis=1)
        if bad.any():
            raise ValueError(f"{qname(int(np.flatnonzero(bad)[0]))}: NaN or infinite embedding")
        bad = ~np.any(self.query_embeddings != 0, axis=1)
        if bad.any():
            raise ValueError(f"{qname(int(np.flatnonzero(bad)[0]))}: zero embedding")
        bad = ~np.isfinite(self.query_boxes).all(axis=1)
        if bad.any():
            raise ValueError(f"{qname(int(np.flatnonzero(bad)[0]))}: non-finite query box")


def _is_uri(path: str) -> bool:
    return "://" in path


def _open(path: str, mode: str):
    """A local file with ``open``; a URI through Detectron2's PathManager (imported then)."""
    if _is_uri(path):
        from detectron2.utils.file_io import PathManager

        return PathManager.open(path, mode)
    return open(path, mode)


def _exists(path: str) -> bool:
    if _is_uri(path):
        from detectron2.utils.file_io import PathManager

        return PathManager.exists(path)
    return os.path.exists(path)


def save_predictions(preds: PersonSearchPredictions, path: str) -> str:
    """Write ``preds`` to ``path`` (through PathManager) in the format of the module docstring.

    Returns:
        ``path``.
    """
    arrays = {
        "format_version": np.asarray(FORMAT_VERSION, np.int64),
        "dataset_family": np.asarray(preds.dataset_family, dtype=str),
        "dataset_name": np.asarray(preds.dataset_name, dtype=str),
        "embed_dim": np.asarray(preds.embed_dim, np.int64),
        "gallery_image_ids": np.asarray(preds.gallery_image_ids, dtype=str).reshape(-1),
        "gallery_image_sizes": np.asarray(preds.gallery_image_sizes, np.int64).reshape(-1, 2),
        "gallery_offsets": np.asarray(preds.gallery_offsets, np.int64),
        "gallery_boxes": np.asarray(preds.gallery_boxes, np.float32),
        "gallery_scores": np.asarray(preds.gallery_scores, np.float32),
        "gallery_embeddings": np.asarray(preds.gallery_embeddings, np.float32),
        "query_indices": np.asarray(preds.query_indices, np.int64),
        "query_image_ids": np.asarray(preds.query_image_ids, dtype=str).reshape(-1),
        "query_image_sizes": np.asarray(preds.query_image_sizes, np.int64).reshape(-1, 2),
        "query_boxes": np.asarray(preds.query_boxes, np.float32),
        "query_embeddings": np.asarray(preds.query_embeddings, np.float32),
    }
    if preds.score_floor is not None:
        arrays["score_floor"] = np.asarray(preds.score_floor, np.float64)
    if preds.embed_boxes is not None:
        arrays["embed_boxes"] = np.asarray(preds.embed_boxes, dtype=str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with _open(path, "wb") as f:
        f.write(buf.getvalue())
    logger.info(
        "Saved person-search predictions of %s (%d gallery images, %d detections, %d queries) "
        "to %s",
        preds.dataset_name,
        preds.num_gallery_images,
        int(preds.gallery_scores.size),
        preds.num_queries,
        path,
    )
    return path


def load_predictions(path: str, validate: bool = True) -> PersonSearchPredictions:
    """Read a predictions file written by :func:`save_predictions`.

    Args:
        path: file path or PathManager URI.
        validate: run :meth:`PersonSearchPredictions.validate`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ``.npz``, a missing key, or an unsupported format version.
    """
    if not _exists(path):
        raise FileNotFoundError(f"predictions file '{path}' does not exist")
    try:
        with _open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, ... from a bad file
        raise ValueError(
            f"'{path}' is not a readable person-search predictions file "
            f"({type(e).__name__}: {e})"
        ) from e
    if "format_version" not in arrays:
        raise ValueError(f"'{path}' is not a person-search predictions file (no format_version)")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(
            f"'{path}': predictions format version {version} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(f"'{path}': predictions file lacks the key(s) {missing}")
    preds = PersonSearchPredictions(
        dataset_family=str(arrays["dataset_family"]),
        dataset_name=str(arrays["dataset_name"]),
        embed_dim=int(arrays["embed_dim"]),
        gallery_image_ids=[str(s) for s in arrays["gallery_image_ids"].reshape(-1)],
        gallery_image_sizes=arrays["gallery_image_sizes"].astype(np.int64).reshape(-1, 2),
        gallery_offsets=arrays["gallery_offsets"].astype(np.int64),
        gallery_boxes=arrays["gallery_boxes"],
        gallery_scores=arrays["gallery_scores"],
        gallery_embeddings=arrays["gallery_embeddings"],
        query_indices=arrays["query_indices"].astype(np.int64),
        query_image_ids=[str(s) for s in arrays["query_image_ids"].reshape(-1)],
        query_image_sizes=arrays["query_image_sizes"].astype(np.int64).reshape(-1, 2),
        query_boxes=arrays["query_boxes"],
        query_embeddings=arrays["query_embeddings"],
        score_floor=float(arrays["score_floor"]) if "score_floor" in arrays else None,
        embed_boxes=str(arrays["embed_boxes"]) if "embed_boxes" in arrays else None,
    )
    if validate:
        try:
            preds.validate()
        except ValueError as e:
            raise ValueError(f"'{path}': {e}") from e
    return preds
