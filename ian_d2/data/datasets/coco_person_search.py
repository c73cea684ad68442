"""Person-search datasets in COCO format ("your own data"), with their own query protocol.

**Dataset file**: a COCO instances JSON whose person annotations carry an integer ``person_id``
(the identity; -1 for an unlabeled person)::

    {"images": [{"id": 1, "file_name": "cam1/000001.jpg", "height": 1080, "width": 1920,
                 "camera_id": 1}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],
                      "person_id": 12}, ...],
     "categories": [{"id": 1, "name": "person"}]}

Only the category named "person" is kept (annotations of other categories are dropped and
counted in a log line; an identity on such a box is an error). ``height`` / ``width`` are read
from the image header when absent; ``camera_id`` (int or str, optional) is needed only by
"other cameras only" galleries. Crowd boxes (``iscrowd`` 1) are dropped and counted. Boxes are
converted once to float ``XYXY_ABS``, clipped to the image, and zero-size boxes are dropped and
counted (as for the built-in datasets). Records: Detectron2 dicts with ``image_id`` = the
``file_name`` as written in the JSON, ``file_name`` = ``image_root``/that, ``height``,
``width``, ``camera_id`` (when given) and ``person_id`` per box.

**Train split**: identities are remapped to 0..N-1 (sorted original ids); the mapping
{original id: contiguous id} is the split's metadata ``pid_map`` and N is ``num_train_pids``.
**Test split**: ids are kept; every image is a gallery image; the queries come from the
protocol file. The registered split is the gallery records followed by one record per query
(``query_index`` = its row in the protocol file, one annotation = the GIVEN query box), like
the built-in ``{prefix}_test``.

**Protocol file** (JSON; boxes ``[x, y, w, h]`` in pixels like COCO; images by their
``file_name`` in the dataset JSON)::

    {"format": "ian_d2.person_search_protocol", "version": 1,
     "queries": [
       {"image": "cam1/000001.jpg", "box": [10, 20, 50, 120], "person_id": 12,
        "gallery": ["cam2/000031.jpg", {"image": "cam2/000040.jpg", "box": [5, 8, 40, 100]},
                    {"image": "cam3/000002.jpg", "box": null}]},
       {"image": "cam1/000005.jpg", "box": [...], "person_id": 3, "gallery": "all",
        "other_cameras_only": true}],
     "protocols": [                                            (optional: more results)
       {"key": "search_multiview", "gallery": "all", "other_cameras_only": true},
       {"key": "search_g10", "queries": [0, 1], "galleries": [[...], [...]]},
       {"key": "search_hard", "queries": [1], "gallery_from": "search"},
       {"key": "search_full", "gallery_from": "search_g10", "queries": [0, 1],
        "add_all_other_images": true}]}

* ``queries``: the queries; each has ``image``, ``box`` (inside its image), ``person_id``
  (>= 0) and its ``gallery`` for the main protocol (result key ``search``).
* A ``gallery`` is ``"all"`` (every test image except the query's own; with
  ``"other_cameras_only": true`` only the images whose ``camera_id`` differs from the query
  image's) or a list of entries: an image name (the query person's box there is its first
  annotated box with the query's ``person_id``; none = a negative entry), or
  ``{"image": name, "box": [x, y, w, h]}`` (the person is there, in that box) or
  ``{"image": name, "box": null}`` (a negative entry, whatever the annotations say). An image
  may be listed twice (see ``TEST.PERSON_SEARCH.DUPLICATES``).
* ``protocols`` (optional): further protocols, each reported under its ``key``
  (``search_<name>``). ``queries``: indices into ``queries`` (default: all, in order); then
  exactly one of ``gallery`` (one gallery for every query), ``galleries`` (one per query) or
  ``gallery_from`` (the key of the main or an earlier protocol: each query keeps its gallery
  there); ``other_cameras_only`` applies to ``"all"`` galleries;
  ``add_all_other_images: true`` appends every test image not in the gallery, except the
  query's own, once, as a negative (OIM's full-pool protocol of CUHK-SYSU).
* A query whose identity appears in none of its gallery images has no defined AP: it is
  skipped explicitly, counted (``n_skipped`` in the results' settings) and reported in the log.

**Without a protocol file** one is derived: every labeled identity seen in at least two test
images gets one query (its first box in the first image that shows it, in the JSON's order;
queries sorted by ``person_id``), gallery ``"all"``. It is saved as
``<json name>.derived_protocol.json`` beside the JSON (or, when that folder is not writable,
under ``$IAN_D2_CACHE`` / ``~/.cache/ian_d2/protocols``), rewritten only when the JSON changes
(its sha256 is recorded), so the numbers can be reproduced; pass it as ``protocol_file`` to pin
it.

**Registration** (:func:`register_person_search_coco`) is lazy: files are read when the split is
first loaded. For ``train_net.py`` unchanged, list the datasets in a JSON file named by
``$IAN_D2_COCO_DATASETS`` (several: separated by ``os.pathsep``) or placed at
``$DETECTRON2_DATASETS/coco_person_search.json``; ``import ian_d2`` registers them (in every
process)::

    {"my_train": {"json_file": "my/train.json", "image_root": "my/images", "split": "train"},
     "my_test": {"json_file": "my/test.json", "image_root": "my/images",
                 "protocol_file": "my/test_protocol.json"}}

(relative paths are relative to that file's folder).
"""

import hashlib
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...utils.io import atomic_write
from ._common import (
    DatasetFormatError,
    cache_dir,
    clip_and_filter,
    read_image_sizes,
    require_file,
)

__all__ = [
    "COCO_FAMILY",
    "PROTOCOL_FORMAT",
    "PROTOCOL_VERSION",
    "DATASET_LIST_ENV",
    "DEFAULT_DATASET_LIST",
    "CocoPersonSearch",
    "ProtocolGallery",
    "ProtocolSpec",
    "PersonSearchProtocol",
    "read_coco_person_search",
    "coco_records",
    "load_person_search_coco_train",
    "load_person_search_coco_test",
    "coco_train_pid_map",
    "read_person_search_protocol",
    "check_protocol",
    "derive_protocol",
    "derived_protocol_path",
    "ensure_derived_protocol",
    "write_protocol",
    "write_json_lines",
    "xyxy_to_xywh",
    "register_person_search_coco",
    "register_coco_dataset_list",
    "register_coco_dataset_lists",
]

logger = logging.getLogger(__name__)

COCO_FAMILY = "coco"
PROTOCOL_FORMAT = "ian_d2.person_search_protocol"
PROTOCOL_VERSION = 1
DATASET_LIST_ENV = "IAN_D2_COCO_DATASETS"
DEFAULT_DATASET_LIST = "coco_person_search.json"
DERIVED_SUFFIX = ".derived_protocol.json"
MAIN_KEY = "search"
# detectron2.structures.BoxMode.XYXY_ABS (an IntEnum): the integer, so that reading the files
# does not import torch (Detectron2 is imported by the registration functions only)
XYXY_ABS = 0


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    """An integer (JSON int, or an integer-valued float); never a bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v == int(v)


def _xywh_box(value, where: str) -> np.ndarray:
    """[x, y, w, h] (4 finite numbers, w and h >= 0) -> float64 [4] XYXY."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise DatasetFormatError(
            f"{where}: expected a box [x, y, w, h] of 4 numbers, got {value!r}"
        )
    x, y, w, h = (float(v) for v in value)
    if w < 0 or h < 0:
        raise DatasetFormatError(
            f"{where}: box {list(value)} [x, y, w, h] has a negative width or height"
        )
    return np.asarray([x, y, x + w, y + h], np.float64)


def xyxy_to_xywh(box: Sequence[float]) -> List[float]:
    """XYXY -> [x, y, w, h] such that reading it back (``x + w``, in float64) gives exactly
    ``x2`` and ``y2`` (``w = x2 - x1`` alone can be off by one unit in the last place)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    out = [x1, y1]
    for a, b in ((x1, x2), (y1, y2)):
        d = b - a
        for _ in range(4):
            s = a + d
            if s == b:
                break
            d = float(np.nextafter(d, np.inf if s < b else -np.inf))
        out.append(d if a + d == b else b - a)
    return out


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_json(path: str, what: str):
    require_file(path, what)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{what}: '{path}' is not valid JSON: {e}") from e


def _shown(items: Sequence, n: int = 5, fmt=repr) -> str:
    """The first ``n`` items, then how many more."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(fmt(x) for x in list(items)[:n]) + more


# ---------------------------------------------------------------------------------------------
# The dataset JSON
# ---------------------------------------------------------------------------------------------
@dataclass
class CocoPersonSearch:
    """A parsed COCO person-search JSON: the images in file order and their person boxes.

    I: number of images, K_i: person boxes of image i (before clipping to the image).

    Attributes:
        json_file: the file it was read from.
        file_names: [I] image names as written (the records' ``image_id``).
        sizes: [I] (height, width), or None where the JSON gives none.
        cameras: [I] ``camera_id`` or None.
        boxes: I float64 arrays [K_i, 4] XYXY.
        pids: I int64 arrays [K_i] (-1 = unlabeled).
        dropped_categories: {category name: annotations dropped}.
        dropped_crowd: number of ``iscrowd`` person boxes dropped.
    """

    json_file: str
    file_names: List[str]
    sizes: List[Optional[Tuple[int, int]]]
    cameras: List[object]
    boxes: List[np.ndarray]
    pids: List[np.ndarray]
    dropped_categories: Dict[str, int] = field(default_factory=dict)
    dropped_crowd: int = 0

    @property
    def has_cameras(self) -> bool:
        return all(c is not None for c in self.cameras)


def read_coco_person_search(json_file: str) -> CocoPersonSearch:
    """Read and check a COCO person-search JSON (no image is opened).

    Raises:
        FileNotFoundError: the JSON does not exist.
        DatasetFormatError: naming the file and the value: not a COCO instances file, no
            "person" category, an image listed twice (same id or same file_name), an annotation
            of an unknown image, a malformed box, a person box without ``person_id`` (or a file
            without any), a ``person_id`` that is not an integer >= -1, an identity on a
            non-person or crowd box.
    """
    data = _load_json(json_file, "COCO person-search dataset")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(
            f"'{json_file}': expected a COCO instances JSON, an object with the lists 'images', "
            f"'annotations' and 'categories'; found {found}"
        )
    cat_names = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DatasetFormatError(
                f"'{json_file}': every category needs an 'id' and a 'name', got {c!r}"
            )
        cat_names[c["id"]] = str(c["name"])
    person_cats = {i for i, n in cat_names.items() if n == "person"}
    if not person_cats:
        raise DatasetFormatError(
            f"'{json_file}': no category named 'person' in 'categories' (found "
            f"{sorted(set(cat_names.values()))}); person search uses the 'person' boxes"
        )
    by_id: Dict[object, int] = {}
    by_name: Dict[str, object] = {}
    file_names, sizes, cameras = [], [], []
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetFormatError(
                f"'{json_file}': images[{k}] needs an 'id' and a string 'file_name', got {im!r}"
            )
        iid, name = im["id"], im["file_name"]
        if iid in by_id:
            raise DatasetFormatError(
                f"'{json_file}': image id {iid!r} is listed twice (file names "
                f"{file_names[by_id[iid]]!r} and {name!r}); every image must appear once"
            )
        if name in by_name:
            raise DatasetFormatError(
                f"'{json_file}': image {name!r} is listed twice (ids {by_name[name]!r} and "
                f"{iid!r}); every image must appear once"
            )
        by_id[iid], by_name[name] = k, iid
        h, w = im.get("height"), im.get("width")
        if h is None and w is None:
            sizes.append(None)
        elif _is_int(h) and _is_int(w) and h > 0 and w > 0:
            sizes.append((int(h), int(w)))
        else:
            raise DatasetFormatError(
                f"'{json_file}': image {name!r} has height={h!r}, width={w!r}; expected two "
                "positive integers (or neither, to read them from the image)"
            )
        cameras.append(im.get("camera_id"))
        file_names.append(name)

    boxes: List[List[np.ndarray]] = [[] for _ in file_names]
    pids: List[List[int]] = [[] for _ in file_names]
    dropped: Counter = Counter()
    crowd, with_pid, without_pid = 0, 0, []
    for k, a in enumerate(data["annotations"]):
        aid = a.get("id", k) if isinstance(a, dict) else k
        if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
            raise DatasetFormatError(
                f"'{json_file}': annotations[{k}] needs 'image_id' and 'category_id', got {a!r}"
            )
        if a["image_id"] not in by_id:
            raise DatasetFormatError(
                f"'{json_file}': annotation {aid!r} refers to image id {a['image_id']!r}, which "
                "is not in 'images'"
            )
        i = by_id[a["image_id"]]
        where = f"'{json_file}': annotation {aid!r} (image {file_names[i]!r})"
        pid = a.get("person_id", None)
        if pid is not None and not (_is_int(pid) and int(pid) >= -1):
            raise DatasetFormatError(
                f"{where}: person_id {pid!r} is not valid; expected an integer identity >= 0, "
                "or -1 for an unlabeled person"
            )
        if a["category_id"] not in person_cats:
            if pid is not None and int(pid) >= 0:
                cat = cat_names.get(a["category_id"], a["category_id"])
                raise DatasetFormatError(
                    f"{where}: person_id {int(pid)} on a box of category {cat!r} "
                    f"(category_id {a['category_id']!r}); identities go on 'person' boxes only"
                )
            dropped[cat_names.get(a["category_id"], str(a["category_id"]))] += 1
            continue
        box = _xywh_box(a.get("bbox"), where + " bbox")
        if a.get("iscrowd", 0):
            if pid is not None and int(pid) >= 0:
                raise DatasetFormatError(
                    f"{where}: person_id {int(pid)} on a crowd box (iscrowd 1); identities go "
                    "on boxes of one person"
                )
            crowd += 1
            continue
        if pid is None:
            without_pid.append(f"{aid!r} (image {file_names[i]!r})")
            continue
        with_pid += 1
        boxes[i].append(box)
        pids[i].append(int(pid))
    if without_pid:
        if not with_pid:
            raise DatasetFormatError(
                f"'{json_file}': no person annotation has a 'person_id' (a plain COCO file?). "
                "Person search needs, on every 'person' annotation, an integer 'person_id': "
                "the identity, or -1 for an unlabeled person"
            )
        raise DatasetFormatError(
            f"'{json_file}': {len(without_pid)} person annotation(s) have no 'person_id' "
            f"(expected an integer identity, or -1 for an unlabeled person): "
            f"annotation {_shown(without_pid, fmt=str)}"
        )
    if dropped:
        logger.info(
            "'%s': dropped %d annotation(s) of categories other than 'person': %s",
            json_file,
            sum(dropped.values()),
            dict(dropped),
        )
    if crowd:
        logger.info("'%s': dropped %d crowd person box(es) (iscrowd 1)", json_file, crowd)
    return CocoPersonSearch(
        json_file=json_file,
        file_names=file_names,
        sizes=sizes,
        cameras=cameras,
        boxes=[np.asarray(b, np.float64).reshape(-1, 4) for b in boxes],
        pids=[np.asarray(p, np.int64) for p in pids],
        dropped_categories=dict(dropped),
        dropped_crowd=crowd,
    )


def coco_records(
    data: CocoPersonSearch,
    image_root: Optional[str],
    split: str,
    *,
    image_sizes: Optional[Dict[str, Tuple[int, int]]] = None,
    check_files: bool = True,
) -> List[dict]:
    """Detectron2 dicts of a parsed dataset, one per image in JSON order (ids as in the JSON).

    Args:
        data: :func:`read_coco_person_search` output.
        image_root: folder of the images (``file_name`` = image_root/name; None: the name).
        split: "train" or "test", for the log.
        image_sizes: {image name: (height, width)}; when given, no image file is touched
            (re-scoring saved predictions without the images).
        check_files: check that every image file exists (FileNotFoundError naming them).

    Returns:
        list of dicts; boxes clipped to the image, zero-size ones dropped (both counted).
    """
    root = image_root or ""
    names = data.file_names
    if image_sizes is not None:
        missing = [n for n in names if n not in image_sizes]
        if missing:
            raise KeyError(
                f"'{data.json_file}': no image size given for {len(missing)} image(s): "
                f"{_shown(missing)}"
            )
        sizes = {n: tuple(int(v) for v in image_sizes[n]) for n in names}
    else:
        if check_files:
            missing = [
                os.path.join(root, n) for n in names if not os.path.isfile(os.path.join(root, n))
            ]
            if missing:
                raise FileNotFoundError(
                    f"'{data.json_file}': {len(missing)} listed image(s) are missing under "
                    f"image_root '{image_root}': {_shown(missing)}"
                )
        unknown = [n for n, s in zip(names, data.sizes) if s is None]
        read = read_image_sizes(root, unknown, f"'{data.json_file}'") if unknown else {}
        sizes = {n: (s if s is not None else read[n]) for n, s in zip(names, data.sizes)}
    records, dropped, clipped = [], 0, 0
    for i, name in enumerate(names):
        h, w = sizes[name]
        b, keep = clip_and_filter(data.boxes[i], (h, w))
        clipped += int(np.count_nonzero(np.any(b != data.boxes[i], axis=1) & keep))
        dropped += int(np.count_nonzero(~keep))
        rec = {
            "file_name": os.path.join(root, name),
            "image_id": name,
            "height": h,
            "width": w,
            "annotations": [
                {
                    "bbox": b[k].tolist(),
                    "bbox_mode": XYXY_ABS,
                    "category_id": 0,
                    "person_id": int(data.pids[i][k]),
                }
                for k in np.flatnonzero(keep)
            ],
        }
        if data.cameras[i] is not None:
            rec["camera_id"] = data.cameras[i]
        records.append(rec)
    logger.info(
        "COCO person search %s '%s': %d images, %d person boxes; dropped %d zero-size boxes, "
        "clipped %d to the image",
        split,
        data.json_file,
        len(records),
        sum(len(r["annotations"]) for r in records),
        dropped,
        clipped,
    )
    return records


def _pid_map(records: Sequence[dict]) -> Dict[int, int]:
    ids = sorted({a["person_id"] for r in records for a in r["annotations"]} - {-1})
    return {int(p): i for i, p in enumerate(ids)}


def load_person_search_coco_train(
    json_file: str, image_root: Optional[str]
) -> Tuple[List[dict], Dict[int, int]]:
    """Train split: every image, identities remapped to contiguous 0..N-1 (sorted original ids).

    Returns:
        (records, pid_map {original person_id: contiguous id}); -1 stays -1.
    """
    records = coco_records(read_coco_person_search(json_file), image_root, "train")
    pid_map = _pid_map(records)
    for r in records:
        for a in r["annotations"]:
            if a["person_id"] >= 0:
                a["person_id"] = pid_map[a["person_id"]]
    logger.info("COCO person search train '%s': %d identities", json_file, len(pid_map))
    return records, pid_map


def coco_train_pid_map(json_file: str, image_root: Optional[str] = None) -> Dict[int, int]:
    """The train identity map of :func:`load_person_search_coco_train`, without checking that
    the images exist (they are opened only for sizes the JSON does not give)."""
    data = read_coco_person_search(json_file)
    return _pid_map(coco_records(data, image_root, "train", check_files=False))


# ---------------------------------------------------------------------------------------------
# The protocol file
# ---------------------------------------------------------------------------------------------
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
                boxes[j] = _xywh_box(e["box"], w + " box")
                if not (boxes[j, 2] > boxes[j, 0] and boxes[j, 3] > boxes[j, 1]):
                    raise DatasetFormatError(f"{w}: the box {e['box']!r} has no area")
        else:
            raise DatasetFormatError(
                f'{w}: expected an image name or {{"image": name, "box": [x, y, w, h] or '
                f"null}}, got {e!r}"
            )
    return ProtocolGallery("list", False, tuple(images), boxes, lookup)


def read_person_search_protocol(path: str) -> PersonSearchProtocol:
    """Read a protocol file (format: module docstring). Checks the file alone; the test loader
    checks it against the dataset (:func:`check_protocol`).

    Raises:
        FileNotFoundError, DatasetFormatError: naming the file, the query or protocol and the
            value, and what was expected.
    """
    obj = _load_json(path, "person-search protocol")
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
        q_boxes[q] = _xywh_box(e["box"], where + " box")
        if not (q_boxes[q, 2] > q_boxes[q, 0] and q_boxes[q, 3] > q_boxes[q, 1]):
            raise DatasetFormatError(f"{where}: the query box {e['box']!r} has no area")
        if not (_is_int(e["person_id"]) and int(e["person_id"]) >= 0):
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
        if not isinstance(idx, list) or not all(_is_int(i) and 0 <= i < n_q for i in idx):
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
                f"(e.g. {_shown(list(index)[:3], 3)})"
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
                        f"{where}: gallery image(s) {_shown(absent)} are not images of the test "
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
                        f"{len(nocam)} have none: {_shown(nocam)}"
                    )


def _query_records(protocol: PersonSearchProtocol, gallery_records: Sequence[dict]) -> List[dict]:
    index = {r["image_id"]: r for r in gallery_records}
    out = []
    for q, (name, box, pid) in enumerate(
        zip(protocol.query_images, protocol.query_boxes, protocol.query_pids.tolist())
    ):
        g = index[name]
        rec = {
            "file_name": g["file_name"],
            "image_id": name,
            "height": g["height"],
            "width": g["width"],
            "query_index": q,
            "annotations": [
                {
                    "bbox": box.tolist(),
                    "bbox_mode": XYXY_ABS,
                    "category_id": 0,
                    "person_id": int(pid),
                }
            ],
        }
        if "camera_id" in g:
            rec["camera_id"] = g["camera_id"]
        out.append(rec)
    return out


def derive_protocol(gallery_records: Sequence[dict], json_file: str, sha256: str) -> dict:
    """The default protocol of a test split, as a JSON-ready dict.

    Every labeled identity seen in at least two images gets one query: its first box in the
    first image (record order) that shows it; queries sorted by person_id; gallery "all".
    """
    first: Dict[int, Tuple[str, List[float]]] = {}
    seen: Dict[int, set] = {}
    for r in gallery_records:
        for a in r["annotations"]:
            pid = int(a["person_id"])
            if pid < 0:
                continue
            seen.setdefault(pid, set()).add(r["image_id"])
            first.setdefault(pid, (r["image_id"], a["bbox"]))
    queries = [
        {
            "image": first[pid][0],
            "box": xyxy_to_xywh(first[pid][1]),
            "person_id": pid,
            "gallery": "all",
        }
        for pid in sorted(seen)
        if len(seen[pid]) >= 2
    ]
    return {
        "format": PROTOCOL_FORMAT,
        "version": PROTOCOL_VERSION,
        "derived_from": {
            "json_file": os.path.abspath(json_file),
            "sha256": sha256,
            "rule": "one query per labeled identity seen in >= 2 images (its first box in the "
            "first image showing it); gallery = every other test image",
        },
        "queries": queries,
    }


def write_json_lines(obj: dict, path: str, list_keys: Sequence[str]) -> None:
    """Write a JSON object atomically, each item of the lists ``list_keys`` on its own line
    (compact, yet readable and diff-able)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lines = []
    for k, v in obj.items():
        if k in list_keys and isinstance(v, list) and v:
            items = ",\n".join(f"    {json.dumps(x)}" for x in v)
            lines.append(f"  {json.dumps(k)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def write_protocol(obj: dict, path: str) -> None:
    """Write a protocol dict to ``path`` atomically (one query per line)."""
    write_json_lines(obj, path, ("queries", "protocols"))


def _cache_dir() -> str:
    """``$IAN_D2_CACHE/protocols`` (default ``~/.cache/ian_d2/protocols``; also when the
    annotation cache is switched off with ``IAN_D2_CACHE=off``: a derived protocol must be
    saved somewhere)."""
    folder = cache_dir() or os.path.expanduser(os.path.join("~", ".cache", "ian_d2"))
    return os.path.join(folder, "protocols")


def derived_protocol_path(json_file: str) -> str:
    """Where the derived protocol of ``json_file`` is saved: ``<name>.derived_protocol.json``
    beside it when its folder is writable, else in the cache folder (``$IAN_D2_CACHE``, default
    ``~/.cache/ian_d2``, then ``protocols/``) under a name that includes a hash of its path."""
    path = os.path.abspath(json_file)
    folder, base = os.path.split(path)
    stem = base[:-5] if base.endswith(".json") else base
    if os.access(folder, os.W_OK):
        return os.path.join(folder, stem + DERIVED_SUFFIX)
    tag = hashlib.sha1(path.encode()).hexdigest()[:10]
    return os.path.join(_cache_dir(), f"{stem}-{tag}{DERIVED_SUFFIX}")


def ensure_derived_protocol(
    json_file: str, gallery_records: Sequence[dict], path: Optional[str] = None
) -> str:
    """Derive the protocol of a test JSON and save it, unless ``path`` already holds the one
    derived from the same JSON content (sha256). Returns the path."""
    path = path or derived_protocol_path(json_file)
    digest = _sha256(json_file)
    if os.path.isfile(path):
        try:
            with open(path, "r", encoding="utf-8") as f:
                old = json.load(f).get("derived_from", {})
        except (OSError, ValueError, AttributeError):
            old = {}
        if isinstance(old, dict) and old.get("sha256") == digest:
            logger.info(
                "COCO person search: protocol derived earlier from '%s': %s", json_file, path
            )
            return path
        logger.warning(
            "COCO person search: '%s' changed since its protocol was derived; deriving it again "
            "into '%s'",
            json_file,
            path,
        )
    obj = derive_protocol(gallery_records, json_file, digest)
    if not obj["queries"]:
        raise DatasetFormatError(
            f"'{json_file}': no labeled identity (person_id >= 0) appears in two test images, so "
            "no query can be derived; give a protocol file"
        )
    try:
        write_protocol(obj, path)
    except OSError as e:
        raise OSError(
            f"cannot save the protocol derived from '{json_file}' to '{path}' ({e}); set "
            "$IAN_D2_CACHE to a writable folder or give a protocol file"
        ) from e
    logger.info(
        "COCO person search: derived a protocol from '%s' (%d queries: every labeled identity in "
        ">= 2 images; gallery = all other images), saved to '%s'",
        json_file,
        len(obj["queries"]),
        path,
    )
    return path


def load_person_search_coco_test(
    json_file: str,
    image_root: Optional[str],
    protocol_file: Optional[str] = None,
    *,
    image_sizes: Optional[Dict[str, Tuple[int, int]]] = None,
    derived_path: Optional[str] = None,
) -> Tuple[List[dict], List[dict], str]:
    """Test split: gallery records (every image) and query records (the protocol's queries).

    Args:
        json_file: the COCO person-search JSON of the test images.
        image_root: their folder (None with ``image_sizes``: ``file_name`` = the name).
        protocol_file: the protocol JSON; None = the derived one (derived and saved if needed,
            see :func:`ensure_derived_protocol`).
        image_sizes: {image name: (height, width)}: no image is touched (re-scoring).
        derived_path: where the derived protocol is saved (default
            :func:`derived_protocol_path`); unused with a ``protocol_file``.

    Returns:
        (gallery records, query records with ``query_index``, the protocol file used)
    """
    data = read_coco_person_search(json_file)
    gallery = coco_records(data, image_root, "test", image_sizes=image_sizes)
    if protocol_file is None:
        protocol_file = ensure_derived_protocol(json_file, gallery, derived_path)
    protocol = read_person_search_protocol(protocol_file)
    check_protocol(protocol, gallery)
    queries = _query_records(protocol, gallery)
    logger.info(
        "COCO person search test '%s': %d queries, protocols %s (from '%s')",
        json_file,
        len(queries),
        [p.key for p in protocol.protocols],
        protocol_file,
    )
    return gallery, queries, protocol_file


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
def _load_train_and_record_map(name: str, json_file: str, image_root: Optional[str]):
    from detectron2.data import MetadataCatalog

    records, pid_map = load_person_search_coco_train(json_file, image_root)
    MetadataCatalog.get(name).set(num_train_pids=len(pid_map), pid_map=pid_map)
    return records


def _load_test(json_file, image_root, protocol_file, derived: bool) -> List[dict]:
    gallery, queries, _ = load_person_search_coco_test(
        json_file,
        image_root,
        None if derived else protocol_file,
        derived_path=protocol_file if derived else None,
    )
    return gallery + queries


def register_person_search_coco(
    name: str,
    json_file: str,
    image_root: Optional[str],
    protocol_file: Optional[str] = None,
    *,
    split: Optional[str] = None,
) -> str:
    """Register a COCO person-search split under ``name`` (files are read on first use).

    Train vs test: ``split`` ("train" or "test"); when None, "test" if a ``protocol_file`` is
    given, else "train" if ``name`` ends with "train", else "test".

    Metadata: ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
    ``dataset_family="coco"``, ``split``, ``json_file``, ``image_root``, ``dataset_root`` (the
    JSON's folder) and ``train_dataset`` or ``test_dataset`` (= name). A test split also has
    ``protocol_file`` (the given file, or where the derived one is saved) and
    ``protocol_derived``; a train split gets ``num_train_pids`` and ``pid_map`` once read (see
    :func:`ian_d2.data.get_num_train_pids`).

    Args:
        name: the dataset name (``DATASETS.TRAIN`` / ``DATASETS.TEST``).
        json_file: the COCO JSON with ``person_id`` per person box.
        image_root: the folder that ``file_name`` is relative to.
        protocol_file: test splits: the protocol JSON; None = derived (module docstring).
        split: "train" or "test" (default: see above).

    Returns:
        name.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if split is None:
        if protocol_file is not None:
            split = "test"
        else:
            split = "train" if name.endswith("train") else "test"
        logger.debug("COCO person search '%s': split %s (inferred)", name, split)
    if split not in ("train", "test"):
        raise ValueError(
            f"register_person_search_coco('{name}'): split must be 'train' or "
            f"'test', got {split!r}"
        )
    if split == "train" and protocol_file is not None:
        raise ValueError(
            f"register_person_search_coco('{name}'): a protocol file belongs to a test split, "
            f"not to split='train' (got protocol_file='{protocol_file}')"
        )
    json_file = os.fspath(json_file)
    meta = dict(
        thing_classes=["person"],
        evaluator_type="person_search",
        dataset_family=COCO_FAMILY,
        dataset_root=os.path.dirname(os.path.abspath(json_file)),
        json_file=json_file,
        image_root=image_root,
        split=split,
    )
    if split == "train":
        DatasetCatalog.register(
            name, lambda n=name, j=json_file, r=image_root: _load_train_and_record_map(n, j, r)
        )
        meta["train_dataset"] = name
    else:
        derived = protocol_file is None
        path = derived_protocol_path(json_file) if derived else os.fspath(protocol_file)
        DatasetCatalog.register(
            name,
            lambda j=json_file, r=image_root, p=path, d=derived: _load_test(j, r, p, d),
        )
        meta.update(test_dataset=name, protocol_file=path, protocol_derived=derived)
    MetadataCatalog.get(name).set(**meta)
    return name


def register_coco_dataset_list(path: str) -> List[str]:
    """Register the datasets of a list file ``{name: {"json_file", "image_root",
    "protocol_file"?, "split"?}}``; relative paths are relative to the file's folder. A name
    registered before with the same JSON is left as it is.

    Returns:
        the names listed.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    obj = _load_json(path, "COCO person-search dataset list")
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"'{path}': expected an object {{name: {{json_file, ...}}}}")
    base = os.path.dirname(os.path.abspath(path))
    allowed = {"json_file", "image_root", "protocol_file", "split"}

    def resolve(p):
        return p if p is None or os.path.isabs(p) else os.path.join(base, os.path.expanduser(p))

    for name, e in obj.items():
        if not isinstance(e, dict) or not isinstance(e.get("json_file"), str):
            raise DatasetFormatError(f"'{path}': dataset {name!r} needs a 'json_file' (a path)")
        unknown = sorted(set(e) - allowed)
        if unknown:
            raise DatasetFormatError(
                f"'{path}': dataset {name!r} has unknown key(s) {unknown}; expected "
                f"{sorted(allowed)}"
            )
        json_file = resolve(e["json_file"])
        if name in DatasetCatalog.list():
            old = MetadataCatalog.get(name).get("json_file", None)
            if old == json_file:
                continue
            raise ValueError(
                f"'{path}': dataset name {name!r} is already registered (json_file={old!r})"
            )
        register_person_search_coco(
            name,
            json_file,
            resolve(e.get("image_root")),
            resolve(e.get("protocol_file")),
            split=e.get("split"),
        )
    logger.info("Registered COCO person-search datasets %s from '%s'", list(obj), path)
    return list(obj)


def register_coco_dataset_lists(datasets_root: Optional[str] = None) -> List[str]:
    """Register the list files of ``$IAN_D2_COCO_DATASETS`` (``os.pathsep``-separated) and
    ``<datasets_root>/coco_person_search.json`` when it exists. Returns the names."""
    paths = [p for p in os.getenv(DATASET_LIST_ENV, "").split(os.pathsep) if p]
    if datasets_root is not None:
        default = os.path.join(datasets_root, DEFAULT_DATASET_LIST)
        if os.path.isfile(default) and default not in paths:
            paths.insert(0, default)
    names = []
    for p in paths:
        names += register_coco_dataset_list(os.path.expanduser(p))
    return names
