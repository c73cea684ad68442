"""Detectron2 records of a parsed COCO person-search dataset: one per image, boxes clipped to the
image and zero-size ones dropped (as for the built-in datasets)."""

import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .._common import XYXY_ABS, clip_and_filter, read_image_sizes
from .reader import CocoPersonSearch
from .values import shown

__all__ = ["coco_records"]

logger = logging.getLogger(__name__)


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
                f"{shown(missing)}"
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
                    f"image_root '{image_root}': {shown(missing)}"
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
