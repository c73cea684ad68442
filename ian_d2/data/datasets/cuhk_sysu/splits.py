"""CUHK-SYSU splits as Detectron2 records: train (identities from Train.mat), the test gallery
(pool.mat) and the queries of a protocol file.

Records follow Detectron2's standard dict format; every annotation also has ``person_id``
(train: 0..num_train_pids-1, or -1 for an unlabeled person; gallery/query: the numeric part of
the identity name, e.g. 10581 for 'p10581', or -1).
"""

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._common import (
    XYXY_ABS,
    DatasetFormatError,
    clip_and_filter,
    require_dir,
    resolve_image_sizes,
)
from .annotations import cuhk_sysu_train_pid_lookup, load_cuhk_sysu_images, load_cuhk_sysu_pool
from .paths import cuhk_sysu_paths, find_cuhk_sysu_protocols
from .protocol import load_cuhk_sysu_protocol

__all__ = ["load_cuhk_sysu_train", "load_cuhk_sysu_gallery", "load_cuhk_sysu_query"]

logger = logging.getLogger(__name__)


def _pid_from_idname(idname: str, where: str) -> int:
    m = re.search(r"(\d+)$", idname)
    if m is None:
        raise DatasetFormatError(f"{where}: identity name '{idname}' has no numeric part")
    return int(m.group(1))


def _make_records(
    names: Sequence[str],
    boxes: Dict[str, np.ndarray],
    pids: Dict[str, np.ndarray],
    image_root: str,
    split: str,
    image_sizes=None,
) -> List[dict]:
    sizes = resolve_image_sizes(image_root, names, f"CUHK-SYSU {split} split", "", image_sizes)
    records, dropped, clipped = [], 0, 0
    for name in names:
        h, w = sizes[name]
        b, keep = clip_and_filter(boxes[name], (h, w))
        clipped += int(np.count_nonzero(np.any(b != boxes[name], axis=1) & keep))
        dropped += int(np.count_nonzero(~keep))
        annos = [
            {
                "bbox": b[k].tolist(),
                "bbox_mode": XYXY_ABS,
                "category_id": 0,
                "person_id": int(pids[name][k]),
            }
            for k in np.flatnonzero(keep)
        ]
        records.append(
            {
                "file_name": os.path.join(image_root, name),
                "image_id": name,
                "height": h,
                "width": w,
                "annotations": annos,
            }
        )
    n_boxes = sum(len(r["annotations"]) for r in records)
    logger.info(
        "CUHK-SYSU %s: %d images, %d boxes; dropped %d zero-size boxes, clipped %d to the image",
        split,
        len(records),
        n_boxes,
        dropped,
        clipped,
    )
    return records


def load_cuhk_sysu_train(root: str) -> List[dict]:
    """Train split: all images not in pool.mat; identities from Train.mat by exact box match.

    Returns:
        list of Detectron2 dataset dicts; ``person_id`` is the index in Train.mat (0..5531 in the
        real dataset) or -1 for a person without a train identity.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    images = load_cuhk_sysu_images(root)
    pool = set(load_cuhk_sysu_pool(root))
    missing = sorted(pool - set(images))
    if missing:
        raise DatasetFormatError(
            f"'{paths['pool_mat']}' lists {len(missing)} image(s) absent from "
            f"'{paths['images_mat']}', e.g. {missing[:5]}"
        )
    lookup = cuhk_sysu_train_pid_lookup(root)
    names = [n for n in images if n not in pool]
    pids, matched = {}, 0
    for name in names:
        keys = [(name,) + tuple(b) for b in images[name].tolist()]
        pids[name] = np.asarray([lookup.get(k, -1) for k in keys], dtype=np.int64)
        matched += int(np.count_nonzero(pids[name] >= 0))
    if matched < len(lookup):
        known = {(n,) + tuple(b) for n in names for b in images[n].tolist()}
        lost = [k for k in lookup if k not in known]
        logger.warning(
            "CUHK-SYSU train: %d identity boxes of '%s' match no box of a train image in '%s' "
            "(e.g. %s); they are not used",
            len(lost),
            paths["train_mat"],
            paths["images_mat"],
            lost[:3],
        )
    records = _make_records(names, images, pids, paths["image_root"], "train")
    logger.info("CUHK-SYSU train: %d identity boxes matched", matched)
    return records


def load_cuhk_sysu_gallery(
    root: str, gallery_size: Optional[int] = None, image_sizes: Optional[Dict] = None
) -> List[dict]:
    """Test gallery: the images of pool.mat with all their person boxes.

    ``person_id`` of a box is the numeric identity of a protocol query when the box is that
    query's box or one of its gallery boxes in the protocol file (``gallery_size``, default 100),
    else -1. Search evaluation reads the galleries from the protocol files, not from these ids.

    ``image_sizes`` ({image name: (height, width)}) replaces reading the images (see
    :func:`resolve_image_sizes`): the records are then built from the annotation files alone.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    images = load_cuhk_sysu_images(root)
    names = load_cuhk_sysu_pool(root)
    missing = [n for n in names if n not in images]
    if missing:
        raise DatasetFormatError(
            f"'{paths['pool_mat']}' lists {len(missing)} image(s) absent from "
            f"'{paths['images_mat']}', e.g. {missing[:5]}"
        )
    ids: Dict[Tuple, int] = {}
    if find_cuhk_sysu_protocols(root):
        proto = load_cuhk_sysu_protocol(root, gallery_size)
        pids_of = []
        for q in range(proto.num_queries):
            pid = _pid_from_idname(proto.query_pids[q], f"'{proto.source}' query {q}")
            ids[(proto.query_imnames[q],) + tuple(proto.query_boxes[q].tolist())] = pid
            pids_of.append(pid)
        names_of = proto.image_names
        for q, c, box in zip(
            proto.pos_query.tolist(), proto.pos_col.tolist(), proto.pos_boxes.tolist()
        ):
            ids[(names_of[proto.gallery_codes[q, c]],) + tuple(box)] = pids_of[q]
    pids = {
        n: np.asarray([ids.get((n,) + tuple(b), -1) for b in images[n].tolist()], dtype=np.int64)
        for n in names
    }
    return _make_records(names, images, pids, paths["image_root"], "gallery", image_sizes)


def load_cuhk_sysu_query(
    root: str, gallery_size: Optional[int] = None, image_sizes: Optional[Dict] = None
) -> List[dict]:
    """Query records of a protocol file (default TestG100): one record per query.

    Each record is a Detectron2 dict of the query image with exactly one annotation, the GIVEN
    query box (never dropped or clipped), plus ``query_index`` (its row in the protocol file).
    ``image_sizes`` as in :func:`load_cuhk_sysu_gallery`.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    if not find_cuhk_sysu_protocols(root):
        raise FileNotFoundError(
            f"CUHK-SYSU queries: no TestG<N>.mat protocol file in '{paths['protocol_dir']}'"
        )
    proto = load_cuhk_sysu_protocol(root, gallery_size)
    sizes = resolve_image_sizes(
        paths["image_root"], sorted(set(proto.query_imnames)), "CUHK-SYSU queries", "", image_sizes
    )
    records = []
    for q, name in enumerate(proto.query_imnames):
        h, w = sizes[name]
        records.append(
            {
                "file_name": os.path.join(paths["image_root"], name),
                "image_id": name,
                "height": h,
                "width": w,
                "query_index": q,
                "annotations": [
                    {
                        "bbox": proto.query_boxes[q].tolist(),
                        "bbox_mode": XYXY_ABS,
                        "category_id": 0,
                        "person_id": _pid_from_idname(
                            proto.query_pids[q], f"'{proto.source}' query {q}"
                        ),
                    }
                ],
            }
        )
    return records
