"""Search protocols built from dataset records and protocol files (shared by the evaluator and
the rescore CLI, so that both give the same numbers).

The ground truth always comes from the records of the registered splits (or the same records
rebuilt from the annotation files with known image sizes) and the CUHK-SYSU protocol files,
never from model inputs. Rules: ``docs/protocols.md``.

Shorthand: G gallery images (rows of the detections table), Q queries of the query split,
Q_p queries of one protocol.

Protocols and result keys:

* CUHK-SYSU: ``search`` = gallery 100 (or, when TestG100.mat is absent, the smallest size
  present; no ``search`` result when that size is not selected), ``search_g{N}`` = every
  other TestG{N}.mat, ``search_full`` = full pool (TestG50's galleries, or the smallest size
  present, plus every other pool image except the query's own image, once, as a negative;
  as OIM's ``psdb.py``),
  ``search_occlusion`` / ``search_resolution`` = the query subsets on the ``search`` galleries.
* PRW: ``search`` = every gallery frame except the query frame (SeqNet / COAT),
  ``search_multiview`` = frames of the other cameras only (NAE4PS).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..data.datasets.cuhk_sysu import (
    default_gallery_size,
    find_cuhk_sysu_protocols,
    find_cuhk_sysu_subsets,
    load_cuhk_sysu_protocol,
    load_cuhk_sysu_subset_indices,
)
from .predictions import PersonSearchPredictions
from .structures import GalleryTable, SearchGalleries

__all__ = [
    "FULL_POOL_BASE_SIZE",
    "SearchProtocol",
    "split_test_records",
    "build_gallery_table",
    "query_rows",
    "detection_ground_truth",
    "cuhk_sysu_protocols",
    "prw_protocols",
    "add_pool_negatives",
    "build_prw_galleries",
]

logger = logging.getLogger(__name__)

FULL_POOL_BASE_SIZE = 50  # OIM's psdb.py: the full-pool gallery extends TestG50


@dataclass
class SearchProtocol:
    """One search protocol, ready for :func:`~.search_metrics.evaluate_search`.

    Attributes:
        key: result key, e.g. "search", "search_g50", "search_full", "search_multiview".
        description: human-readable protocol name for logs.
        galleries: per-query gallery entries ([Q_p] queries) on the detections table.
        query_rows: [Q_p] int64 rows of the predictions' query arrays, in protocol order.
        settings: protocol parameters for logs and reports (gallery size, source file, ...).
    """

    key: str
    description: str
    galleries: SearchGalleries
    query_rows: np.ndarray
    settings: Dict[str, object] = field(default_factory=dict)


def split_test_records(records: Sequence[dict]) -> Tuple[List[dict], List[dict]]:
    """Split ``{prefix}_test`` records into (gallery records, query records ``query_index``)."""
    gallery = [r for r in records if "query_index" not in r]
    queries = [r for r in records if "query_index" in r]
    return gallery, queries


def build_gallery_table(
    preds: PersonSearchPredictions, gallery_records: Sequence[dict]
) -> GalleryTable:
    """Detections table with one row per gallery record, in record order.

    Args:
        preds: the predictions (validated).
        gallery_records: gallery records of the dataset (the ground truth).

    Returns:
        GalleryTable of G = len(gallery_records) images named by ``image_id``.

    Raises:
        ValueError: a gallery image without prediction, or predicted with another image size
            than its record (both messages name the images).
    """
    index = preds.gallery_index()
    missing = [r["image_id"] for r in gallery_records if r["image_id"] not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} gallery image(s) of the dataset have no prediction, e.g. "
            f"{missing[:5]}: the model must run on every image of the test split"
        )
    rows = np.asarray([index[r["image_id"]] for r in gallery_records], np.int64)
    sizes = preds.gallery_image_sizes[rows]
    for r, (h, w) in zip(gallery_records, sizes.tolist()):
        if (int(r["height"]), int(r["width"])) != (h, w):
            raise ValueError(
                f"gallery image {r['image_id']!r}: predicted at size {(h, w)} but the dataset "
                f"says {(r['height'], r['width'])} (predictions of another dataset?)"
            )
    extra = len(index) - len(set(rows.tolist()))
    if extra:
        logger.warning("%d predicted gallery image(s) are not in the dataset: ignored", extra)
    off = preds.gallery_offsets
    counts = off[rows + 1] - off[rows]
    starts = off[rows]
    total = int(counts.sum())
    dets = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
    return GalleryTable(
        preds.gallery_boxes[dets],
        preds.gallery_scores[dets],
        preds.gallery_embeddings[dets],
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        image_names=[r["image_id"] for r in gallery_records],
    )


def query_rows(preds: PersonSearchPredictions, query_records: Sequence[dict]) -> np.ndarray:
    """Row of the predictions' query arrays for every query record.

    Returns:
        [Q] int64.

    Raises:
        ValueError: a query of the dataset without prediction (naming its query index and
            image), or predicted on another image.
    """
    pos = {int(q): k for k, q in enumerate(preds.query_indices.tolist())}
    out = np.empty(len(query_records), np.int64)
    missing = []
    for i, r in enumerate(query_records):
        k = pos.get(int(r["query_index"]))
        if k is None:
            missing.append(f"query {r['query_index']} ({r['image_id']!r})")
            continue
        if preds.query_image_ids[k] != r["image_id"]:
            raise ValueError(
                f"query {r['query_index']}: predicted on image {preds.query_image_ids[k]!r}, "
                f"but the dataset's query is on {r['image_id']!r} (predictions of another "
                "dataset or protocol?)"
            )
        out[i] = k
    if missing:
        raise ValueError(
            f"{len(missing)} quer{'y' if len(missing) == 1 else 'ies'} of the dataset have no "
            f"prediction: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    extra = len(pos) - len(set(out.tolist()))
    if extra:
        logger.warning("%d predicted queries are not in the dataset: ignored", extra)
    return out


def detection_ground_truth(
    gallery_records: Sequence[dict],
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """GT boxes ([K_i, 4] float64 XYXY) and labeled masks ([K_i] bool, person_id >= 0)."""
    boxes, labeled = [], []
    for r in gallery_records:
        annos = r.get("annotations", [])
        boxes.append(np.asarray([a["bbox"] for a in annos], np.float64).reshape(-1, 4))
        labeled.append(np.asarray([a.get("person_id", -1) >= 0 for a in annos], bool))
    return boxes, labeled


# ---------------------------------------------------------------------------------------------
# Gallery builders shared by the protocols
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# The protocols of each dataset family
# ---------------------------------------------------------------------------------------------
def _cuhk_query_map(
    query_records: Sequence[dict], rows: np.ndarray
) -> Dict[Tuple[str, Tuple[float, ...]], int]:
    """{(image_id, query box): predictions row} of the query records."""
    out: Dict[Tuple[str, Tuple[float, ...]], int] = {}
    for r, row in zip(query_records, rows.tolist()):
        box = tuple(float(v) for v in r["annotations"][0]["bbox"])
        out.setdefault((r["image_id"], box), int(row))
    return out


def _protocol_rows(proto, qmap) -> np.ndarray:
    out = np.empty(proto.num_queries, np.int64)
    for q, (name, box) in enumerate(zip(proto.query_imnames, proto.query_boxes)):
        row = qmap.get((name, tuple(float(v) for v in box.tolist())))
        if row is None:
            raise ValueError(
                f"'{proto.source}' query {q} ({name!r}, box {box.tolist()}) is not a query of "
                "the dataset's query split"
            )
        out[q] = row
    return out


def cuhk_sysu_protocols(
    root: str,
    table: GalleryTable,
    query_records: Sequence[dict],
    rows: np.ndarray,
    *,
    gallery_sizes: Sequence[int] = (),
    full_pool: bool = True,
    subsets: bool = True,
) -> List[SearchProtocol]:
    """CUHK-SYSU protocols: the TestG{N} galleries, the full pool and the query subsets.

    Args:
        root: CUHK-SYSU root (for the protocol and subset files).
        table: detections table of the gallery (pool) records, in record order.
        query_records: the query records (ground truth of the query split).
        rows: [Q] predictions row of every query record (:func:`query_rows`).
        gallery_sizes: sizes to evaluate (-1 = the full pool); empty = every TestG{N}.mat
            present.
        full_pool: add the full-pool protocol (also added when -1 is in ``gallery_sizes``).
        subsets: add the occlusion / resolution subsets (on the ``search`` galleries) when the
            default gallery size is evaluated.

    Returns:
        list of SearchProtocol; "search" (first) is the default gallery size (100, or the smallest
        present), evaluated when selected; the subsets use its galleries.
    """
    available = find_cuhk_sysu_protocols(root)
    if not available:
        raise FileNotFoundError(
            f"CUHK-SYSU: no TestG<N>.mat protocol file under '{root}/annotation/test/train_test'"
        )
    requested = [int(s) for s in gallery_sizes]
    sizes = [s for s in requested if s != -1] if requested else list(available)
    want_full = full_pool or -1 in requested
    unknown = [s for s in sizes if s not in available]
    if unknown:
        raise FileNotFoundError(
            f"CUHK-SYSU: no protocol file for gallery size(s) {unknown} under '{root}' "
            f"(present: {sorted(available)}; -1 = full pool)"
        )
    default = default_gallery_size(root)
    main_size = default if default in sizes else None  # "search" always means the default
    if main_size is None and sizes:
        logger.info(
            "CUHK-SYSU: the default gallery size %s is not evaluated, so there is no 'search' "
            "result (only 'search_g<N>')",
            default,
        )
    qmap = _cuhk_query_map(query_records, rows)
    out: List[SearchProtocol] = []
    cache: Dict[int, Tuple[object, SearchGalleries, np.ndarray]] = {}

    def load(size: int):
        if size not in cache:
            proto = load_cuhk_sysu_protocol(root, size)
            lut = table.index_of(proto.image_names, what=f"'{proto.source}': gallery image")
            gal = SearchGalleries(
                lut.astype(np.int32)[proto.gallery_codes],
                proto.pos_query,
                proto.pos_col,
                proto.pos_boxes,
            )
            cache[size] = (proto, gal, _protocol_rows(proto, qmap))
        return cache[size]

    for size in sorted(sizes, key=lambda s: (s != main_size, s)):
        proto, gal, prow = load(size)
        out.append(
            SearchProtocol(
                key="search" if size == main_size else f"search_g{size}",
                description=f"CUHK-SYSU gallery {size} ({os.path.basename(proto.source)})",
                galleries=gal,
                query_rows=prow,
                settings={"gallery_size": size, "protocol_file": proto.source},
            )
        )
    if want_full:
        base = FULL_POOL_BASE_SIZE if FULL_POOL_BASE_SIZE in available else min(available)
        proto, gal, prow = load(base)
        full = add_pool_negatives(gal, np.arange(table.num_images), table.num_images)
        # Like the reference code, the query's own image is not added as a negative (it holds
        # the query person); protocol entries are kept as listed.
        n = gal.image_index.shape[1]
        qimg = np.asarray(
            [table.index_of([name], "query image")[0] for name in proto.query_imnames], np.int64
        )
        idx = full.image_index.copy()
        extra = idx[:, n:]
        extra[extra == qimg[:, None]] = -1
        full = SearchGalleries(idx, full.pos_query, full.pos_col, full.pos_boxes)
        out.append(
            SearchProtocol(
                key="search_full",
                description=(
                    f"CUHK-SYSU full pool ({table.num_images} images; TestG{base} galleries "
                    "plus every other pool image except the query image)"
                ),
                galleries=full,
                query_rows=prow,
                settings={"gallery_size": -1, "base_gallery_size": base},
            )
        )
    if subsets and main_size is not None:
        proto, gal, prow = load(main_size)
        for name, path in find_cuhk_sysu_subsets(root).items():
            idx = load_cuhk_sysu_subset_indices(root, name, reference=proto)
            out.append(
                SearchProtocol(
                    key=f"search_{name}",
                    description=f"CUHK-SYSU {name} subset ({os.path.basename(path)}), "
                    f"gallery {main_size}",
                    galleries=gal.select(idx),
                    query_rows=prow[idx],
                    settings={"gallery_size": main_size, "subset": name, "subset_file": path},
                )
            )
    return out


def prw_protocols(
    table: GalleryTable,
    gallery_records: Sequence[dict],
    query_records: Sequence[dict],
    rows: np.ndarray,
    *,
    all_camera: bool = True,
    multi_view: bool = True,
) -> List[SearchProtocol]:
    """PRW protocols: all cameras (key "search") and multi-view (key "search_multiview").

    Args:
        table: detections table of the gallery records, in record order.
        gallery_records: test frames with ``camera_id`` and annotations (``person_id``).
        query_records: query records with ``camera_id`` and the query box's ``person_id``.
        rows: [Q] predictions row of every query record.
        all_camera: include the all-camera protocol.
        multi_view: include the multi-view protocol.
    """
    gimg = table.index_of([r["image_id"] for r in gallery_records], "gallery frame")
    gcam = np.asarray([r["camera_id"] for r in gallery_records])
    gpids = [np.asarray([a["person_id"] for a in r["annotations"]]) for r in gallery_records]
    gboxes = [
        np.asarray([a["bbox"] for a in r["annotations"]], np.float64).reshape(-1, 4)
        for r in gallery_records
    ]
    qimg = table.index_of([r["image_id"] for r in query_records], "query frame")
    qcam = np.asarray([r["camera_id"] for r in query_records])
    qpid = np.asarray([r["annotations"][0]["person_id"] for r in query_records])
    out = []
    for key, mv, desc in (
        ("search", False, "PRW all cameras (gallery = every test frame but the query frame)"),
        ("search_multiview", True, "PRW multi-view (gallery = test frames of other cameras)"),
    ):
        if (mv and not multi_view) or (not mv and not all_camera):
            continue
        gal = build_prw_galleries(qimg, qcam, qpid, gimg, gcam, gpids, gboxes, multi_view=mv)
        n_entries = int((gal.image_index >= 0).sum())
        out.append(
            SearchProtocol(
                key=key,
                description=desc,
                galleries=gal,
                query_rows=np.asarray(rows, np.int64),
                settings={"multi_view": mv, "gallery_entries": n_entries},
            )
        )
    return out
