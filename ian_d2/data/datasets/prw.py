"""PRW (Person Re-identification in the Wild), read from its ORIGINAL files.

Expected tree (see datasets/README.md and docs/protocols.md)::

    ROOT/frames/c1s1_000151.jpg ...              frames of 6 cameras
    ROOT/annotations/c1s1_000151.jpg.mat         N x 5 [id, x, y, w, h]; variable 'box_new',
                                                 else 'anno_file', else 'anno_previous'
    ROOT/frame_train.mat, ROOT/frame_test.mat    img_index_train / img_index_test (no '.jpg')
    ROOT/ID_train.mat, ROOT/ID_test.mat          ID_train / ID_test2
    ROOT/query_info.txt                          "pid x y w h frame_name" per line

Records follow Detectron2's dict format plus ``camera_id`` per image and ``person_id`` per box.
Train ids are remapped to contiguous 0..N-1 (the mapping is returned by
:func:`prw_train_pid_map` and stored in the train split's metadata as ``pid_map``); the test
split keeps the original ids. Id -2 (unlabeled person) becomes -1. Negative coordinates are
clipped to 0; zero-size boxes are dropped and counted.
"""

import logging
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from ._common import (
    XYXY_ABS,
    DatasetFormatError,
    cached_parse,
    check_boxes,
    clip_and_filter,
    load_mat_var,
    mat_cell_strings,
    resolve_image_sizes,
    require_dir,
    require_file,
    xywh_to_xyxy,
)

__all__ = [
    "prw_paths",
    "prw_camera_id",
    "load_prw_frame_list",
    "load_prw_frame_boxes",
    "prw_train_pid_map",
    "load_prw_train",
    "load_prw_gallery",
    "load_prw_query",
    "parse_prw_query_info",
]

logger = logging.getLogger(__name__)

ANNOTATION_VARS = ("box_new", "anno_file", "anno_previous")
UNLABELED_PRW_ID = -2
_CAMERA_RE = re.compile(r"^c(\d+)s(\d+)_")
_SPLITS = {
    "train": ("frame_train.mat", "img_index_train"),
    "test": ("frame_test.mat", "img_index_test"),
}


def prw_paths(root: str) -> Dict[str, str]:
    """The standard file locations under a PRW root."""
    return {
        "image_root": os.path.join(root, "frames"),
        "annotation_dir": os.path.join(root, "annotations"),
        "query_info": os.path.join(root, "query_info.txt"),
        "id_train": os.path.join(root, "ID_train.mat"),
    }


def prw_camera_id(frame: str) -> int:
    """Camera id of a PRW frame name ('c3s2_012345[.jpg]' -> 3)."""
    m = _CAMERA_RE.match(os.path.basename(frame))
    if m is None:
        raise DatasetFormatError(
            f"PRW frame name '{frame}' does not start with 'c<camera>s<sequence>_'"
        )
    return int(m.group(1))


def load_prw_frame_list(root: str, split: str) -> List[str]:
    """Frame names (without '.jpg') of the 'train' or 'test' split."""
    if split not in _SPLITS:
        raise ValueError(f"PRW split must be one of {sorted(_SPLITS)}, got '{split}'")
    fname, var = _SPLITS[split]
    _, cell = load_mat_var(os.path.join(root, fname), (var,), f"PRW {split} frame list")
    names = [n[:-4] if n.endswith(".jpg") else n for n in mat_cell_strings(cell)]
    if not names:
        raise DatasetFormatError(f"PRW {split} frame list '{os.path.join(root, fname)}' is empty")
    return names


def load_prw_frame_boxes(root: str, frame: str) -> Tuple[np.ndarray, np.ndarray]:
    """Read annotations/<frame>.jpg.mat.

    Returns:
        (ids int64 [K] with -2 for unlabeled persons, boxes float64 [K, 4] XYXY, unclipped)
    """
    path = os.path.join(prw_paths(root)["annotation_dir"], frame + ".jpg.mat")
    _, arr = load_mat_var(path, ANNOTATION_VARS, f"PRW annotation of frame '{frame}'")
    arr = np.asarray(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 5 or arr.dtype.kind not in "fiu":
        raise DatasetFormatError(
            f"'{path}': expected an N x 5 numeric array [id, x, y, w, h], "
            f"got shape {arr.shape} of dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64)
    raw_ids = arr[:, 0]
    if not np.all(np.isfinite(raw_ids)) or np.any(raw_ids != np.round(raw_ids)):
        raise DatasetFormatError(f"'{path}': person ids must be integers, got {raw_ids.tolist()}")
    ids = raw_ids.astype(np.int64)
    bad = (ids != UNLABELED_PRW_ID) & (ids < 0)
    if bad.any():
        raise DatasetFormatError(
            f"'{path}': person id {int(ids[bad][0])} is invalid (expected -2 or a positive id)"
        )
    boxes = xywh_to_xyxy(arr[:, 1:5])
    check_boxes(boxes, frame + ".jpg", path)
    return ids, boxes


def _read_split(root: str, split: str):
    """(frames, {frame: ids}, {frame: boxes}) for a split (cached, see ``cached_parse``)."""
    require_dir(root, "PRW root")
    list_file = os.path.join(root, _SPLITS[split][0])
    require_file(list_file, f"PRW {split} frame list")
    frames = cached_parse(
        f"prw_{split}_frames", [list_file], lambda: load_prw_frame_list(root, split)
    )
    ann = prw_paths(root)["annotation_dir"]
    files = [os.path.join(ann, f + ".jpg.mat") for f in frames]
    for f, path in zip(frames, files):
        if not os.path.isfile(path):
            load_prw_frame_boxes(root, f)  # raises, naming the missing file

    def parse():
        ids, boxes = {}, {}
        for f in frames:
            ids[f], boxes[f] = load_prw_frame_boxes(root, f)
        return ids, boxes

    ids, boxes = cached_parse(f"prw_{split}_boxes", [list_file] + files, parse)
    return frames, ids, boxes


def prw_train_pid_map(
    root: str, frame_ids: Optional[Dict[str, np.ndarray]] = None
) -> Dict[int, int]:
    """Contiguous remapping {original PRW id: 0..N-1} of the labeled ids of the train frames.

    The real train ids are not contiguous (1-478, 480-483, 932): a ``pid - 1`` lookup would
    misplace some. The map is built from the ids that occur in the train annotations and
    checked against ID_train.mat when that file is present.
    """
    if frame_ids is None:
        _, frame_ids, _ = _read_split(root, "train")
    ids = np.unique(np.concatenate([v for v in frame_ids.values()] + [np.zeros(0, np.int64)]))
    ids = ids[ids != UNLABELED_PRW_ID]
    pid_map = {int(p): i for i, p in enumerate(ids.tolist())}
    id_file = prw_paths(root)["id_train"]
    if os.path.isfile(id_file):
        _, listed = load_mat_var(id_file, ("ID_train",), "PRW train identity list")
        listed = set(np.asarray(listed).astype(np.int64).reshape(-1).tolist())
        if listed != set(pid_map):
            logger.warning(
                "PRW: the train annotations have %d labeled ids, '%s' lists %d; "
                "ids only in the annotations: %s; only in the list: %s. The annotations are used.",
                len(pid_map),
                id_file,
                len(listed),
                sorted(set(pid_map) - listed)[:10],
                sorted(listed - set(pid_map))[:10],
            )
    return pid_map


def _frame_sizes(root, frames, what, image_sizes):
    """{frame: (h, w)} read from the frames, or taken from ``image_sizes`` keyed by image_id."""
    if image_sizes is not None:
        image_sizes = {k[:-4] if k.endswith(".jpg") else k: v for k, v in image_sizes.items()}
    return resolve_image_sizes(prw_paths(root)["image_root"], frames, what, ".jpg", image_sizes)


def _records(root, split, frames, ids, boxes, remap, image_sizes=None) -> List[dict]:
    paths = prw_paths(root)
    sizes = _frame_sizes(root, frames, f"PRW {split} split", image_sizes)
    records, dropped = [], 0
    for f in frames:
        h, w = sizes[f]
        b, keep = clip_and_filter(boxes[f], (h, w))
        dropped += int(np.count_nonzero(~keep))
        annos = []
        for k in np.flatnonzero(keep):
            pid = int(ids[f][k])
            if pid == UNLABELED_PRW_ID:
                pid = -1
            elif remap is not None:
                pid = remap[pid]
            annos.append(
                {
                    "bbox": b[k].tolist(),
                    "bbox_mode": XYXY_ABS,
                    "category_id": 0,
                    "person_id": pid,
                }
            )
        records.append(
            {
                "file_name": os.path.join(paths["image_root"], f + ".jpg"),
                "image_id": f + ".jpg",
                "height": h,
                "width": w,
                "camera_id": prw_camera_id(f),
                "annotations": annos,
            }
        )
    logger.info(
        "PRW %s: %d frames, %d boxes; dropped %d zero-size boxes",
        split,
        len(records),
        sum(len(r["annotations"]) for r in records),
        dropped,
    )
    return records


def load_prw_train(root: str) -> Tuple[List[dict], Dict[int, int]]:
    """Train split with ids remapped to 0..N-1.

    Returns:
        (records, pid_map {original id: contiguous id})
    """
    frames, ids, boxes = _read_split(root, "train")
    pid_map = prw_train_pid_map(root, ids)
    return _records(root, "train", frames, ids, boxes, pid_map), pid_map


def load_prw_gallery(root: str, image_sizes: Optional[Dict] = None) -> List[dict]:
    """Test frames (the gallery) with their original person ids (-1 = unlabeled).

    ``image_sizes`` ({image_id such as 'c1s1_000151.jpg': (height, width)}) replaces reading the
    frames, so that the records can be built from the annotation files alone.
    """
    frames, ids, boxes = _read_split(root, "test")
    return _records(root, "test", frames, ids, boxes, None, image_sizes)


def parse_prw_query_info(path: str) -> List[Tuple[int, np.ndarray, str]]:
    """Parse query_info.txt: "pid x y w h frame_name" per line.

    Robust to CRLF endings, blank lines, float and negative coordinates (split on whitespace,
    never sliced by position). Negative coordinates are clipped to 0 (the box is cut at the
    image edge).

    Returns:
        list of (pid, float64 [4] XYXY box, frame name without '.jpg')
    """
    require_file(path, "PRW query list")
    out = []
    with open(path, "r", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 6:
                raise DatasetFormatError(
                    f"'{path}' line {lineno}: expected 6 fields 'pid x y w h frame_name', "
                    f"got {len(tokens)}: {line.strip()!r}"
                )
            try:
                pid_f = float(tokens[0])
                xywh = np.asarray([float(t) for t in tokens[1:5]])
            except ValueError as e:
                raise DatasetFormatError(f"'{path}' line {lineno}: {e}: {line.strip()!r}") from e
            if pid_f != int(pid_f) or pid_f <= 0:
                raise DatasetFormatError(
                    f"'{path}' line {lineno}: the query id must be a positive integer, "
                    f"got {tokens[0]!r}"
                )
            frame = tokens[5][:-4] if tokens[5].endswith(".jpg") else tokens[5]
            box = xywh_to_xyxy(xywh)
            check_boxes(box[None], frame + ".jpg", f"'{path}' line {lineno}")
            box = np.maximum(box, 0.0)
            if not (box[2] > box[0] and box[3] > box[1]):
                raise DatasetFormatError(
                    f"'{path}' line {lineno}: query box {xywh.tolist()} [x y w h] has no area "
                    "inside the image"
                )
            out.append((int(pid_f), box, frame))
    if not out:
        raise DatasetFormatError(f"PRW query list '{path}' has no query")
    return out


def load_prw_query(root: str, image_sizes: Optional[Dict] = None) -> List[dict]:
    """One record per line of query_info.txt: the query frame with its GIVEN box.

    Extra keys: ``query_index`` (line order), ``camera_id``. ``image_sizes`` as in
    :func:`load_prw_gallery`.
    """
    require_dir(root, "PRW root")
    paths = prw_paths(root)
    queries = parse_prw_query_info(paths["query_info"])
    test_frames = set(load_prw_frame_list(root, "test"))
    not_test = sorted({f for _, _, f in queries if f not in test_frames})
    if not_test:
        raise DatasetFormatError(
            f"'{paths['query_info']}': {len(not_test)} query frame(s) are not test frames "
            f"(frame_test.mat), e.g. {not_test[:5]}"
        )
    sizes = _frame_sizes(root, sorted({f for _, _, f in queries}), "PRW queries", image_sizes)
    records = []
    for q, (pid, box, frame) in enumerate(queries):
        h, w = sizes[frame]
        box = box.copy()
        box[[0, 2]] = np.minimum(box[[0, 2]], float(w))
        box[[1, 3]] = np.minimum(box[[1, 3]], float(h))
        records.append(
            {
                "file_name": os.path.join(paths["image_root"], frame + ".jpg"),
                "image_id": frame + ".jpg",
                "height": h,
                "width": w,
                "camera_id": prw_camera_id(frame),
                "query_index": q,
                "annotations": [
                    {
                        "bbox": box.tolist(),
                        "bbox_mode": XYXY_ABS,
                        "category_id": 0,
                        "person_id": pid,
                    }
                ],
            }
        )
    return records
