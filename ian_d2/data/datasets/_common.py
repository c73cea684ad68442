"""Helpers shared by the CUHK-SYSU and PRW loaders: .mat access, box conversion, image checks,
and the on-disk cache of parsed annotation files.

Every error raised here names the file (and the variable or image) and says what was expected, so
that a user pointing the code at a half-downloaded dataset knows what to fix. The annotation
readers import neither torch nor Detectron2 (the rescore CLI uses them without a model); scipy and
PIL are imported when a file is really parsed.
"""

import hashlib
import logging
import os
import pickle
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

__all__ = [
    "XYXY_ABS",
    "cache_dir",
    "cached_parse",
    "DatasetFormatError",
    "ENV_HINT",
    "require_dir",
    "require_file",
    "load_mat_var",
    "mat_string",
    "mat_cell_strings",
    "xywh_to_xyxy",
    "read_image_sizes",
    "resolve_image_sizes",
    "check_boxes",
    "clip_and_filter",
]

logger = logging.getLogger(__name__)

ENV_HINT = (
    "Set $DETECTRON2_DATASETS to the folder that holds the datasets (default: ./datasets); "
    "see datasets/README.md for the expected tree."
)


XYXY_ABS = 0
"""``detectron2.structures.BoxMode.XYXY_ABS``, the ``bbox_mode`` of every record. BoxMode is an
IntEnum, so Detectron2 accepts the integer wherever it reads ``bbox_mode``; the loaders keep the
integer so that reading annotations does not import torch."""

CACHE_ENV = "IAN_D2_CACHE"
_CACHE_VERSION = 2  # bump whenever a cached parse result changes its form
T = TypeVar("T")


def cache_dir() -> Optional[str]:
    """Folder of the parsed-annotation cache: ``$IAN_D2_CACHE``, default ``~/.cache/ian_d2``;
    None when ``IAN_D2_CACHE`` is ``off`` (or empty)."""
    value = os.environ.get(CACHE_ENV, os.path.join("~", ".cache", "ian_d2"))
    if value.strip().lower() in ("", "off", "0", "none"):
        return None
    return os.path.expanduser(value)


def cached_parse(kind: str, files: Sequence[str], parse: Callable[[], T]) -> T:
    """``parse()``, cached on disk while every file of ``files`` keeps its size and mtime.

    The cache entry is ``<cache_dir>/annotations/<kind>-<hash of the file paths>.pkl`` and holds
    the files' (path, size, mtime) stamp: a changed file makes the entry stale, and it is parsed
    again and rewritten (atomically). An unreadable entry is rebuilt with a warning; a cache
    folder that cannot be written only costs the parse. ``IAN_D2_CACHE=off`` disables it.

    Args:
        kind: what is parsed, with every argument that changes the result (e.g.
            "cuhk_sysu_protocol-TestG100").
        files: the files the result is read from (each must exist).
        parse: computes the result (picklable).
    """
    folder = cache_dir()
    if folder is None:
        return parse()
    stamp = []
    for f in files:
        st = os.stat(f)
        stamp.append((os.path.abspath(f), st.st_size, st.st_mtime_ns))
    digest = hashlib.sha1(repr([s[0] for s in stamp]).encode()).hexdigest()[:16]
    path = os.path.join(folder, "annotations", f"{kind}-{digest}.pkl")
    try:
        with open(path, "rb") as fh:
            version, saved, value = pickle.load(fh)
        if version == _CACHE_VERSION and saved == stamp:
            return value
        logger.info("Annotation cache %s is stale (files changed): parsing again", path)
    except FileNotFoundError:
        pass
    except Exception as e:  # a truncated or foreign file: rebuilt
        logger.warning("Annotation cache %s is unreadable (%s): parsing again", path, e)
    value = parse()
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            pickle.dump((_CACHE_VERSION, stamp, value), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:
        logger.warning("Could not write the annotation cache %s: %s", path, e)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return value


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what the loader expects (variable, field, box)."""


def require_dir(path: str, what: str) -> str:
    """Return ``path`` if it is a directory, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: directory '{path}' does not exist. {ENV_HINT}")
    return path


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file '{path}' does not exist. {ENV_HINT}")
    return path


def load_mat_var(path: str, names: Sequence[str], what: str) -> Tuple[str, np.ndarray]:
    """Load the first of ``names`` present in the MATLAB file ``path``.

    The file is read with ``squeeze_me=False`` so that a 1-element struct array keeps its shape
    (1, 1) and behaves like the real, larger files.

    Args:
        path: the .mat file.
        names: variable names to look for, in order of preference.
        what: a short description of the file for error messages.

    Returns:
        (the variable name found, its array)
    """
    import scipy.io

    require_file(path, what)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=False)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetFormatError(f"{what}: could not read MATLAB file '{path}': {e}") from e
    for name in names:
        if name in mat:
            return name, mat[name]
    found = sorted(k for k in mat if not k.startswith("__"))
    raise DatasetFormatError(
        f"{what}: '{path}' has no variable {' / '.join(repr(n) for n in names)} "
        f"(variables found: {found})"
    )


def mat_string(value) -> str:
    """Turn a loadmat string (``array(['s1.jpg'], dtype='<U6')`` or a plain str) into a str."""
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        arr = np.asarray(arr.reshape(-1)[0]) if arr.size else np.asarray("")
    if arr.dtype.kind in "US":
        return str(arr.reshape(-1)[0]) if arr.size else ""
    raise DatasetFormatError(f"expected a MATLAB string, got an array of dtype {arr.dtype}")


def mat_cell_strings(cell: np.ndarray) -> List[str]:
    """Flatten a MATLAB cell array of strings (any shape) into a list of str."""
    return [mat_string(c) for c in np.asarray(cell, dtype=object).reshape(-1)]


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Convert [x, y, w, h] boxes (any integer or float dtype, e.g. uint16) to float64 XYXY.

    The cast to float64 happens BEFORE ``x + w``: the raw CUHK-SYSU boxes are uint16 and
    ``x + w`` in uint16 silently wraps around past 65535.

    Args:
        boxes: array of shape (..., 4).

    Returns:
        float64 array of shape (..., 4): x1, y1, x2, y2.
    """
    b = np.asarray(boxes).astype(np.float64, copy=True)
    b[..., 2] += b[..., 0]
    b[..., 3] += b[..., 1]
    return b


def read_image_sizes(
    image_root: str, names: Iterable[str], what: str, suffix: str = ""
) -> Dict[str, Tuple[int, int]]:
    """Check that every listed image exists and read its (height, width) from the file header.

    Args:
        image_root: directory of the images.
        names: image names as listed by the annotation files.
        what: description of the listing for error messages.
        suffix: appended to each name to form the file name (PRW lists frames without ".jpg").

    Returns:
        dict name -> (height, width)

    Raises:
        FileNotFoundError: naming the missing images (never skipped silently).
    """
    from PIL import Image

    sizes: Dict[str, Tuple[int, int]] = {}
    missing: List[str] = []
    for name in names:
        path = os.path.join(image_root, name + suffix)
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        except FileNotFoundError:
            missing.append(path)
            continue
        except OSError as e:
            raise DatasetFormatError(f"{what}: image '{path}' cannot be read: {e}") from e
        sizes[name] = (h, w)
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{what}: {len(missing)} listed image(s) are missing: {shown}{more}. {ENV_HINT}"
        )
    return sizes


def resolve_image_sizes(
    image_root: str,
    names: Sequence[str],
    what: str,
    suffix: str = "",
    image_sizes: Optional[Dict[str, Tuple[int, int]]] = None,
) -> Dict[str, Tuple[int, int]]:
    """Image sizes from the files (:func:`read_image_sizes`), or from ``image_sizes`` when given.

    ``image_sizes`` ({image name as listed: (height, width)}) lets a caller without the images
    (e.g. re-scoring saved predictions) build exactly the records a loader builds with them.
    """
    if image_sizes is None:
        return read_image_sizes(image_root, names, what, suffix)
    missing = [n for n in names if n not in image_sizes]
    if missing:
        raise KeyError(
            f"{what}: no image size given for {len(missing)} image(s), e.g. {missing[:5]}"
        )
    return {n: tuple(image_sizes[n]) for n in names}


def check_boxes(boxes_xyxy: np.ndarray, image: str, source: str) -> None:
    """Raise DatasetFormatError if any box is non-finite or has negative width/height.

    Args:
        boxes_xyxy: float array [K, 4].
        image: image name, for the message.
        source: annotation file, for the message.
    """
    bad = ~np.isfinite(boxes_xyxy).all(axis=1)
    bad |= (boxes_xyxy[:, 2] < boxes_xyxy[:, 0]) | (boxes_xyxy[:, 3] < boxes_xyxy[:, 1])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DatasetFormatError(
            f"{source}: malformed box {boxes_xyxy[k].tolist()} (XYXY) in image '{image}': "
            "expected finite coordinates with non-negative width and height"
        )


def clip_and_filter(
    boxes_xyxy: np.ndarray, size_hw: Optional[Tuple[int, int]]
) -> Tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image (when its size is known) and flag zero-area boxes.

    Args:
        boxes_xyxy: float array [K, 4].
        size_hw: (height, width) or None.

    Returns:
        (clipped boxes [K, 4], keep mask [K] of boxes with positive width and height)
    """
    b = boxes_xyxy.copy()
    np.maximum(b, 0.0, out=b)
    if size_hw is not None:
        h, w = size_hw
        b[:, [0, 2]] = np.minimum(b[:, [0, 2]], float(w))
        b[:, [1, 3]] = np.minimum(b[:, [1, 3]], float(h))
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return b, keep
