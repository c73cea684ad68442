"""Boxes of the annotation files: the record box mode, conversion to XYXY, checks, clipping."""

from typing import Optional, Tuple

import numpy as np

from .errors import DatasetFormatError

__all__ = ["XYXY_ABS", "xywh_to_xyxy", "check_boxes", "clip_and_filter"]

XYXY_ABS = 0
"""``detectron2.structures.BoxMode.XYXY_ABS``, the ``bbox_mode`` of every record. BoxMode is an
IntEnum, so Detectron2 accepts the integer wherever it reads ``bbox_mode``; the loaders keep the
integer so that reading annotations does not import torch."""


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
