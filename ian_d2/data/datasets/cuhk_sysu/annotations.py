"""CUHK-SYSU annotation files: every scene image's person boxes (Images.mat), the test images
(pool.mat) and the train identities (Train.mat), each parsed once and cached on disk."""

from typing import Dict, List, Tuple

import numpy as np

from .._common import (
    DatasetFormatError,
    cached_parse,
    check_boxes,
    load_mat_var,
    mat_box_or_nan,
    mat_cell_strings,
    mat_string,
    require_file,
    xywh_to_xyxy,
)
from .paths import cuhk_sysu_paths

__all__ = [
    "load_cuhk_sysu_images",
    "load_cuhk_sysu_pool",
    "cuhk_sysu_num_train_pids",
    "cuhk_sysu_train_pid_lookup",
]


def load_cuhk_sysu_images(root: str) -> Dict[str, np.ndarray]:
    """Read annotation/Images.mat: {image name: float64 [K, 4] XYXY boxes of all persons}.

    Boxes are kept as listed (zero-size ones included); the split loaders drop those.
    """
    path = cuhk_sysu_paths(root)["images_mat"]
    require_file(path, "CUHK-SYSU image annotations")
    return cached_parse("cuhk_sysu_images", [path], lambda: _parse_images_mat(path))


def _parse_images_mat(path: str) -> Dict[str, np.ndarray]:
    _, img = load_mat_var(path, ("Img",), "CUHK-SYSU image annotations")
    if img.dtype.names is None or not {"imname", "box"} <= set(img.dtype.names):
        raise DatasetFormatError(
            f"'{path}': variable 'Img' must be a struct array with fields 'imname' and 'box', "
            f"found fields {img.dtype.names}"
        )
    out = {}
    for i, e in enumerate(img.reshape(-1)):
        name = mat_string(e["imname"])
        boxes = np.asarray(e["box"]).reshape(-1)
        if boxes.size and (boxes.dtype.names is None or "idlocate" not in boxes.dtype.names):
            raise DatasetFormatError(
                f"'{path}': Img({i + 1}).box of '{name}' must be a struct with field 'idlocate'"
            )
        raw = []
        for k, b in enumerate(boxes):
            loc = np.asarray(b["idlocate"])
            if loc.size != 4:
                raise DatasetFormatError(
                    f"'{path}': malformed box {k} of image '{name}': expected [x y w h], got {loc}"
                )
            raw.append(loc.reshape(4))
        xyxy = xywh_to_xyxy(np.asarray(raw).reshape(-1, 4))
        check_boxes(xyxy, name, path)
        if name in out:
            raise DatasetFormatError(f"'{path}': image '{name}' is listed twice")
        out[name] = xyxy
    return out


def load_cuhk_sysu_pool(root: str) -> List[str]:
    """Read annotation/pool.mat: the names of the test (gallery) images, in file order."""
    path = cuhk_sysu_paths(root)["pool_mat"]
    require_file(path, "CUHK-SYSU test image list")

    def parse():
        _, pool = load_mat_var(path, ("pool",), "CUHK-SYSU test image list")
        return mat_cell_strings(pool)

    return cached_parse("cuhk_sysu_pool", [path], parse)


def _load_train_identities(root: str) -> np.ndarray:
    path = cuhk_sysu_paths(root)["train_mat"]
    _, train = load_mat_var(path, ("Train",), "CUHK-SYSU train identities")
    return np.asarray(train, dtype=object).reshape(-1)


def cuhk_sysu_num_train_pids(root: str) -> int:
    """Number of train identities (entries of Train.mat; 5,532 in the real dataset)."""
    return len(_load_train_identities(root))


def cuhk_sysu_train_pid_lookup(root: str) -> Dict[Tuple, int]:
    """{(image name, x1, y1, x2, y2): train identity index} from Train.mat."""
    path = cuhk_sysu_paths(root)["train_mat"]
    lookup = {}
    for pid, cell in enumerate(_load_train_identities(root)):
        s = np.asarray(cell).reshape(-1)
        if s.size != 1 or s.dtype.names is None or "scene" not in s.dtype.names:
            raise DatasetFormatError(
                f"'{path}': Train{{{pid + 1}}} must be a 1x1 struct with field 'scene'"
            )
        for k, sc in enumerate(np.asarray(s[0]["scene"]).reshape(-1)):
            name = mat_string(sc["imname"])
            box = mat_box_or_nan(sc["idlocate"], f"'{path}' Train{{{pid + 1}}} scene {k}")
            lookup[(name,) + tuple(box.tolist())] = pid
    return lookup
