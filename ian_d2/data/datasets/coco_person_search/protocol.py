"""The protocol file of a COCO person-search test split: its parsed form, the parser, the check
against the test images, and the writer (format: ``docs/COCO_PERSON_SEARCH_FORMAT.md``)."""

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._common import DatasetFormatError
from .jsonio import load_json, write_json_lines
from .values import is_int, shown, xywh_box, xyxy_to_xywh

__all__ = [
    "PROTOCOL_FORMAT",
    "PROTOCOL_VERSION",
    "MAIN_KEY",
    "ProtocolGallery",
    "ProtocolSpec",
    "PersonSearchProtocol",
    "read_person_search_protocol",
    "check_protocol",
    "write_protocol",
]

logger = logging.getLogger(__name__)

PROTOCOL_FORMAT = "ian_d2.person_search_protocol"
PROTOCOL_VERSION = 1
MAIN_KEY = "search"
"""The result key of the main protocol (the queries' own galleries)."""


@dataclass
class ProtocolGallery:
    """The gallery of one query in one protocol.

    N: entries of an explicit list.

    Attributes:
        rule: "list" (the entries below) or "all" (every test image but the query's own).
        other_cameras_only: ("all") keep only images of another ``camera_id`` than the query's.
        images: [N] image names ("list").
        boxes: [N, 4] float64 XYXY of the query person; NaN rows = not given (see ``lookup``).
        lookup: [N] bool, entries given by name only: the box is the first annotated box with
            the query's person_id in that image; negative when there is none.
    """

    rule: str
    other_cameras_only: bool = False
    images: Tuple[str, ...] = ()
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    lookup: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


@dataclass
class ProtocolSpec:
    """One protocol (one result key). Q_p: its queries.

    Attributes:
        key: result key ("search" for the main protocol).
        description: for logs and reports.
        query_indices: [Q_p] int64 rows of :attr:`PersonSearchProtocol.queries`.
        galleries: [Q_p] ProtocolGallery.
        add_all_other_images: append every other test image (not the query's own) as a negative.
    """

    key: str
    description: str
    query_indices: np.ndarray
    galleries: List[ProtocolGallery]
    add_all_other_images: bool = False


@dataclass
class PersonSearchProtocol:
    """A parsed protocol file. Q: number of queries.

    Attributes:
        source: the file.
        query_images: [Q] image names.
        query_boxes: [Q, 4] float64 XYXY (the given query boxes).
        query_pids: [Q] int64.
        protocols: the main protocol ("search") first, then the extra ones in file order.
        derived_from: for a derived protocol, {"json_file", "sha256", "rule"}; else None.
    """

    source: str
    query_images: List[str]
    query_boxes: np.ndarray
    query_pids: np.ndarray
    protocols: List[ProtocolSpec]
    derived_from: Optional[dict] = None

    @property
    def num_queries(self) -> int:
        return len(self.query_images)

    def protocol(self, key: str) -> ProtocolSpec:
        for p in self.protocols:
            if p.key == key:
                return p
        raise KeyError(
            f"'{self.source}' has no protocol {key!r} ({[p.key for p in self.protocols]})"
        )


def _parse_gallery(spec, other_cams, where: str) -> ProtocolGallery:
    if not isinstance(other_cams, bool):
        raise DatasetFormatError(f"{where}: 'other_cameras_only' must be true or false")
    if spec == "all":
        return ProtocolGallery("all", other_cameras_only=other_cams)
    if not isinstance(spec, list):
        raise DatasetFormatError(f'{where}: a gallery is "all" or a list of images, got {spec!r}')
    if other_cams:
        raise DatasetFormatError(
            f'{where}: \'other_cameras_only\' applies to "gallery": "all"; a listed gallery '
            "holds the images it lists"
        )
    n = len(spec)
    images, boxes, lookup = [], np.full((n, 4), np.nan), np.zeros(n, bool)
    for j, e in enumerate(spec):
        w = f"{where} gallery entry {j}"
        if isinstance(e, str):
            images.append(e)
            lookup[j] = True
        elif isinstance(e, dict) and isinstance(e.get("image"), str):
            images.append(e["image"])
            if "box" not in e:
                lookup[j] = True
            elif e["box"] is not None:
                boxes[j] = xywh_box(e["box"], w + " box")
                if not (boxes[j, 2] > boxes[j, 0] and boxes[j, 3] > boxes[j, 1]):
                    raise DatasetFormatError(f"{w}: the box {e['box']!r} has no area")
        else:
            raise DatasetFormatError(
                f'{w}: expected an image name or {{"image": name, "box": [x, y, w, h] or '
                f"null}}, got {e!r}"
            )
    return ProtocolGallery("list", False, tuple(images), boxes, lookup)


def read_person_search_protocol(path: str) -> PersonSearchProtocol:
    """Read a protocol file (format: ``docs/COCO_PERSON_SEARCH_FORMAT.md``). Checks the file
    alone; the test loader checks it against the dataset (:func:`check_protocol`).

    Raises:
        FileNotFoundError, DatasetFormatError: naming the file, the query or protocol and the
            value, and what was expected.
    """
    obj = load_json(path, "person-search protocol")
    if not isinstance(obj, dict) or not isinstance(obj.get("queries"), list):
        raise DatasetFormatError(
            f"'{path}': expected a JSON object with a list 'queries' (a person-search protocol)"
        )
    if obj.get("format", PROTOCOL_FORMAT) != PROTOCOL_FORMAT:
        raise DatasetFormatError(
            f"'{path}': format {obj['format']!r}, expected {PROTOCOL_FORMAT!r}"
        )
    if obj.get("version", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise DatasetFormatError(
            f"'{path}': protocol version {obj['version']!r}; this code reads version "
            f"{PROTOCOL_VERSION}"
        )
    queries = obj["queries"]
    if not queries:
        raise DatasetFormatError(f"'{path}': the protocol lists no query")
    q_images, q_boxes, q_pids, main = [], np.empty((len(queries), 4)), [], []
    for q, e in enumerate(queries):
        where = f"'{path}' query {q}"
        if not isinstance(e, dict):
            raise DatasetFormatError(f"{where}: expected an object, got {e!r}")
        missing = [k for k in ("image", "box", "person_id", "gallery") if k not in e]
        if missing:
            raise DatasetFormatError(
                f"{where}: missing {missing}; a query has 'image', 'box' [x, y, w, h], "
                "'person_id' and 'gallery'"
            )
        if not isinstance(e["image"], str):
            raise DatasetFormatError(
                f"{where}: 'image' must be the image's file_name in the dataset JSON (a "
                f"string), got {e['image']!r}"
            )
        q_images.append(e["image"])
        q_boxes[q] = xywh_box(e["box"], where + " box")
        if not (q_boxes[q, 2] > q_boxes[q, 0] and q_boxes[q, 3] > q_boxes[q, 1]):
            raise DatasetFormatError(f"{where}: the query box {e['box']!r} has no area")
        if not (is_int(e["person_id"]) and int(e["person_id"]) >= 0):
            raise DatasetFormatError(
                f"{where}: person_id {e['person_id']!r}; a query is a labeled identity "
                "(an integer >= 0)"
            )
        q_pids.append(int(e["person_id"]))
        main.append(_parse_gallery(e["gallery"], e.get("other_cameras_only", False), where))
    n_q = len(queries)
    main_desc = obj.get("description", f"'{os.path.basename(path)}' main protocol")
    protos = [ProtocolSpec(MAIN_KEY, str(main_desc), np.arange(n_q), main)]
    extra = obj.get("protocols", [])
    if not isinstance(extra, list):
        raise DatasetFormatError(f"'{path}': 'protocols' must be a list, got {extra!r}")
    for k, p in enumerate(extra):
        where = f"'{path}' protocols[{k}]"
        if not isinstance(p, dict) or not isinstance(p.get("key"), str):
            raise DatasetFormatError(f"{where}: expected an object with a string 'key'")
        key = p["key"]
        where = f"'{path}' protocol {key!r}"
        if not key.startswith("search_") or key == "search_" or key in [x.key for x in protos]:
            raise DatasetFormatError(
                f"{where}: a protocol key is 'search_<name>' and unique (taken: "
                f"{[x.key for x in protos]})"
            )
        idx = p.get("queries", None)
        if idx is None:
            idx = list(range(n_q))
        if not isinstance(idx, list) or not all(is_int(i) and 0 <= i < n_q for i in idx):
            raise DatasetFormatError(
                f"{where}: 'queries' must be a list of query indices in [0, {n_q - 1}], "
                f"got {idx!r}"
            )
        idx = np.asarray([int(i) for i in idx], np.int64)
        if np.unique(idx).size != idx.size:
            raise DatasetFormatError(f"{where}: a query is listed twice in 'queries'")
        given = [s for s in ("gallery", "galleries", "gallery_from") if s in p]
        if len(given) != 1:
            raise DatasetFormatError(
                f"{where}: give exactly one of 'gallery', 'galleries' or 'gallery_from' "
                f"(found {given})"
            )
        other = p.get("other_cameras_only", False)
        if "gallery" in p:
            gals = [_parse_gallery(p["gallery"], other, where) for _ in idx]
        elif "galleries" in p:
            if not isinstance(p["galleries"], list) or len(p["galleries"]) != idx.size:
                raise DatasetFormatError(
                    f"{where}: 'galleries' must be a list of {idx.size} galleries (one per query)"
                )
            gals = [
                _parse_gallery(g, other, f"{where} query {int(q)}")
                for q, g in zip(idx, p["galleries"])
            ]
        else:
            ref = p["gallery_from"]
            src = [x for x in protos if x.key == ref]
            if not src:
                raise DatasetFormatError(
                    f"{where}: gallery_from {ref!r} is not the main or an earlier protocol "
                    f"({[x.key for x in protos]})"
                )
            pos = {int(q): j for j, q in enumerate(src[0].query_indices)}
            absent = [int(q) for q in idx if int(q) not in pos]
            if absent:
                raise DatasetFormatError(
                    f"{where}: queries {absent[:5]} have no gallery in {ref!r}"
                )
            if "other_cameras_only" in p:
                raise DatasetFormatError(
                    f"{where}: 'other_cameras_only' does not apply with 'gallery_from'"
                )
            gals = [src[0].galleries[pos[int(q)]] for q in idx]
        add_all = p.get("add_all_other_images", False)
        if not isinstance(add_all, bool):
            raise DatasetFormatError(f"{where}: 'add_all_other_images' must be true or false")
        desc = p.get("description", f"'{os.path.basename(path)}' {key}")
        protos.append(ProtocolSpec(key, str(desc), idx, gals, add_all))
    derived = obj.get("derived_from")
    return PersonSearchProtocol(
        source=path,
        query_images=q_images,
        query_boxes=q_boxes,
        query_pids=np.asarray(q_pids, np.int64),
        protocols=protos,
        derived_from=derived if isinstance(derived, dict) else None,
    )


def check_protocol(protocol: PersonSearchProtocol, gallery_records: Sequence[dict]) -> None:
    """Check a protocol against the test split it is used with.

    Raises:
        DatasetFormatError: naming the protocol file, the query and the value: a query or
            gallery image that is not a test image, a query box outside its image, an
            "other cameras only" gallery on images without ``camera_id``.
    """
    index = {r["image_id"]: r for r in gallery_records}
    src = protocol.source
    partly = []
    for q, (name, box) in enumerate(zip(protocol.query_images, protocol.query_boxes)):
        r = index.get(name)
        if r is None:
            raise DatasetFormatError(
                f"'{src}' query {q}: image {name!r} is not an image of the test split "
                f"(e.g. {shown(list(index)[:3], 3)})"
            )
        h, w = r["height"], r["width"]
        if box[0] >= w or box[1] >= h or box[2] <= 0 or box[3] <= 0:
            raise DatasetFormatError(
                f"'{src}' query {q}: box {xyxy_to_xywh(box)} [x, y, w, h] lies outside its "
                f"image {name!r} (width {w}, height {h}); a query box must be inside its image"
            )
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            partly.append(q)
    if partly:
        logger.warning(
            "'%s': %d query box(es) extend past their image (kept as given), e.g. queries %s",
            src,
            len(partly),
            partly[:5],
        )
    for spec in protocol.protocols:
        for q, g in zip(spec.query_indices.tolist(), spec.galleries):
            where = f"'{src}' protocol {spec.key!r} query {q}"
            if g.rule == "list":
                absent = [n for n in g.images if n not in index]
                if absent:
                    raise DatasetFormatError(
                        f"{where}: gallery image(s) {shown(absent)} are not images of the test "
                        "split"
                    )
            elif g.other_cameras_only:
                if index[protocol.query_images[q]].get("camera_id") is None:
                    raise DatasetFormatError(
                        f"{where}: 'other_cameras_only' needs a camera_id on the query image "
                        f"{protocol.query_images[q]!r}"
                    )
                nocam = [n for n, r in index.items() if r.get("camera_id") is None]
                if nocam:
                    raise DatasetFormatError(
                        f"{where}: 'other_cameras_only' needs a camera_id on every test image; "
                        f"{len(nocam)} have none: {shown(nocam)}"
                    )


def write_protocol(obj: dict, path: str) -> None:
    """Write a protocol dict to ``path`` atomically (one query per line)."""
    write_json_lines(obj, path, ("queries", "protocols"))
