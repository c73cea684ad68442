"""Search protocols of COCO-format person-search datasets (their protocol JSON), for the evaluator
and the rescore CLI.

The protocol file (format: :mod:`ian_d2.data.datasets.coco_person_search`) gives the queries
and, per protocol and query, the gallery: an explicit list of images (built like CUHK-SYSU's
``TestG{N}`` galleries) or "all" (every test image but the query's own, optionally other cameras
only: built like PRW's galleries by :func:`build_prw_galleries`). The ground truth comes from the
protocol file and the gallery records, never from model inputs.

Shorthand: G gallery images (rows of the detections table), Q queries of the protocol file,
Q_p queries of one protocol, N gallery entries per query.
"""

import logging
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..data.datasets.coco_person_search import (
    PersonSearchProtocol,
    ProtocolGallery,
    ProtocolSpec,
    read_person_search_protocol,
)

from .protocols import SearchProtocol, add_pool_negatives, build_prw_galleries
from .structures import GalleryTable, SearchGalleries

__all__ = ["coco_protocols"]

logger = logging.getLogger(__name__)


def _merge(parts, num_queries: int) -> SearchGalleries:
    """One SearchGalleries of ``num_queries`` rows from parts ``(rows [k], SearchGalleries of k
    queries)``; rows are padded with -1 to the widest part."""
    if len(parts) == 1 and np.array_equal(parts[0][0], np.arange(num_queries)):
        return parts[0][1]
    width = max([g.image_index.shape[1] for _, g in parts] + [0])
    idx = np.full((num_queries, width), -1, np.int64)
    pq, pc, pb = [], [], []
    for rows, g in parts:
        idx[rows, : g.image_index.shape[1]] = g.image_index
        pq.append(rows[g.pos_query])
        pc.append(g.pos_col)
        pb.append(g.pos_boxes)
    cat = lambda a, s: np.concatenate(a) if a else np.zeros(s)  # noqa: E731
    return SearchGalleries(idx, cat(pq, (0,)), cat(pc, (0,)), cat(pb, (0, 4)))


class _Gallery:
    """The gallery records in table terms: table index, camera, person ids and boxes per image."""

    def __init__(self, table: GalleryTable, gallery_records: Sequence[dict]):
        self.names = [r["image_id"] for r in gallery_records]
        self.image = table.index_of(self.names, "gallery image")
        self.camera = [r.get("camera_id") for r in gallery_records]
        self.pids = [
            np.asarray([a["person_id"] for a in r["annotations"]]) for r in gallery_records
        ]
        self.boxes = [
            np.asarray([a["bbox"] for a in r["annotations"]], np.float64).reshape(-1, 4)
            for r in gallery_records
        ]
        self.by_name = {n: k for k, n in enumerate(self.names)}

    def first_box(self, name: str, pid: int) -> np.ndarray:
        """The first box of ``pid`` in image ``name`` ([4]), NaN when it is not there."""
        k = self.by_name[name]
        hit = np.flatnonzero(self.pids[k] == pid)
        return self.boxes[k][hit[0]] if hit.size else np.full(4, np.nan)


def _build(
    spec: ProtocolSpec,
    proto: PersonSearchProtocol,
    table: GalleryTable,
    gal: _Gallery,
    query_image: np.ndarray,
) -> SearchGalleries:
    """SearchGalleries [Q_p] of one protocol."""
    qidx = spec.query_indices
    groups: Dict[object, List[int]] = {}
    for k, g in enumerate(spec.galleries):
        groups.setdefault("list" if g.rule == "list" else ("all", g.other_cameras_only), []).append(
            k
        )
    parts = []
    for kind, members in groups.items():
        rows = np.asarray(members, np.int64)
        q = qidx[rows]
        if kind == "list":
            width = max(len(spec.galleries[k].images) for k in members)
            idx = np.full((rows.size, width), -1, np.int64)
            boxes = np.full((rows.size, width, 4), np.nan)
            for r, k in enumerate(members):
                g: ProtocolGallery = spec.galleries[k]
                n = len(g.images)
                if not n:
                    continue
                idx[r, :n] = table.index_of(
                    list(g.images), f"protocol {spec.key!r} query {int(qidx[k])}: gallery image"
                )
                boxes[r, :n] = g.boxes
                pid = int(proto.query_pids[qidx[k]])
                for j in np.flatnonzero(g.lookup):
                    boxes[r, j] = gal.first_box(g.images[j], pid)
            parts.append((rows, SearchGalleries.from_dense(idx, boxes)))
        else:
            other = kind[1]
            cams = np.asarray(gal.camera, dtype=object) if other else np.zeros(len(gal.names))
            qcam = (
                np.asarray([gal.camera[gal.by_name[proto.query_images[i]]] for i in q], object)
                if other
                else np.zeros(q.size)
            )
            parts.append(
                (
                    rows,
                    build_prw_galleries(
                        query_image[q],
                        qcam,
                        proto.query_pids[q],
                        gal.image,
                        cams,
                        gal.pids,
                        gal.boxes,
                        multi_view=other,
                    ),
                )
            )
    galleries = _merge(parts, qidx.size)
    if spec.add_all_other_images:
        # as the CUHK-SYSU full pool: every test image not listed, once, as a negative; the
        # query's own image is not added (protocol entries are kept as listed)
        n = galleries.image_index.shape[1]
        full = add_pool_negatives(galleries, gal.image, table.num_images)
        idx = full.image_index.copy()
        extra = idx[:, n:]
        extra[extra == query_image[qidx][:, None]] = -1
        galleries = SearchGalleries(idx, full.pos_query, full.pos_col, full.pos_boxes)
    return galleries


def coco_protocols(
    protocol: Union[str, PersonSearchProtocol],
    table: GalleryTable,
    gallery_records: Sequence[dict],
    query_records: Sequence[dict],
    rows: np.ndarray,
    *,
    keys: Optional[Sequence[str]] = None,
) -> List[SearchProtocol]:
    """The protocols of a COCO person-search protocol file, ready for ``evaluate_search``.

    Args:
        protocol: the protocol file (path) or its parsed form
            (:func:`~ian_d2.data.datasets.coco_person_search.read_person_search_protocol`).
        table: detections table of the gallery records (``build_gallery_table``).
        gallery_records: the test images (GT boxes, ``person_id``, ``camera_id``).
        query_records: the query records (``query_index`` = row in the protocol file).
        rows: [len(query_records)] int64 predictions row of every query record (``query_rows``).
        keys: protocols to build (default: all; "search" = the main one).

    Returns:
        list of SearchProtocol, the main protocol ("search") first, then the file's order.

    Raises:
        ValueError: the query records do not match the protocol's queries (another protocol
            file), a requested key is not in the file, a gallery image is not in the table.
    """
    proto = read_person_search_protocol(protocol) if isinstance(protocol, str) else protocol
    src = proto.source
    qrow = np.full(proto.num_queries, -1, np.int64)
    for r, row in zip(query_records, np.asarray(rows, np.int64).tolist()):
        q = int(r["query_index"])
        if not 0 <= q < proto.num_queries or r["image_id"] != proto.query_images[q]:
            expected = proto.query_images[q] if 0 <= q < proto.num_queries else "no such query"
            raise ValueError(
                f"query record {q} (image {r['image_id']!r}) is not query {q} of '{src}' "
                f"({expected!r}): the test split was loaded with another protocol file"
            )
        qrow[q] = row
    if (qrow < 0).any():
        missing = np.flatnonzero(qrow < 0)
        raise ValueError(
            f"{missing.size} queries of '{src}' have no query record, e.g. {missing[:5].tolist()}"
        )
    available = [p.key for p in proto.protocols]
    if keys is not None:
        unknown = [k for k in keys if k not in available]
        if unknown:
            raise ValueError(f"'{src}' has no protocol {unknown} (it has {available})")
    gal = _Gallery(table, gallery_records)
    query_image = table.index_of(proto.query_images, "query image")
    out = []
    for spec in proto.protocols:
        if keys is not None and spec.key not in keys:
            continue
        galleries = _build(spec, proto, table, gal, query_image)
        empty = np.flatnonzero(galleries.count_gt() == 0)
        if empty.size:
            shown = ", ".join(
                f"{int(spec.query_indices[i])} ({proto.query_images[spec.query_indices[i]]!r}, "
                f"person_id {int(proto.query_pids[spec.query_indices[i]])})"
                for i in empty[:5]
            )
            logger.warning(
                "'%s' protocol %r: %d of %d queries have their identity in none of their gallery "
                "images: no AP is defined, they are skipped (n_skipped): %s%s",
                src,
                spec.key,
                empty.size,
                spec.query_indices.size,
                shown,
                " ..." if empty.size > 5 else "",
            )
        rules = sorted(
            {g.rule + ("_other_cameras" if g.other_cameras_only else "") for g in spec.galleries}
        )
        out.append(
            SearchProtocol(
                key=spec.key,
                description=spec.description,
                galleries=galleries,
                query_rows=qrow[spec.query_indices],
                settings={
                    "protocol_file": src,
                    "gallery": "+".join(rules),
                    "add_all_other_images": spec.add_all_other_images,
                    "gallery_entries": int((galleries.image_index >= 0).sum()),
                    "queries_without_match": int(empty.size),
                },
            )
        )
    return out
