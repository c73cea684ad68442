"""Checks and conversions of the values of the COCO person-search files: integers, boxes, and
short listings of offending items for error messages."""

import math
from typing import List, Sequence

import numpy as np

from .._common import DatasetFormatError

__all__ = ["is_int", "xywh_box", "xyxy_to_xywh", "shown"]


def is_int(v) -> bool:
    """An integer (JSON int, or an integer-valued float); never a bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and v == int(v)


def xywh_box(value, where: str) -> np.ndarray:
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


def shown(items: Sequence, n: int = 5, fmt=repr) -> str:
    """The first ``n`` items, then how many more."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(fmt(x) for x in list(items)[:n]) + more
