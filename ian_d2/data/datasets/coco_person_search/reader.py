"""Reading a COCO person-search JSON: the images, their person boxes and identities, checked
value by value (format: ``docs/COCO_PERSON_SEARCH_FORMAT.md``). No image is opened."""

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .._common import DatasetFormatError
from .jsonio import load_json
from .values import is_int, shown, xywh_box

__all__ = ["CocoPersonSearch", "read_coco_person_search"]

logger = logging.getLogger(__name__)


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
    data = load_json(json_file, "COCO person-search dataset")
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
        elif is_int(h) and is_int(w) and h > 0 and w > 0:
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
        if pid is not None and not (is_int(pid) and int(pid) >= -1):
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
        box = xywh_box(a.get("bbox"), where + " bbox")
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
            f"annotation {shown(without_pid, fmt=str)}"
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
