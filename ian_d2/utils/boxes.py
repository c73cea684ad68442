"""Box geometry on numpy arrays (no torch): the one IoU of the package.

Detection evaluation (:mod:`ian_d2.evaluation.detection_metrics`) and the export parity checks
(:mod:`ian_d2.export.parity`) both match boxes by this IoU.
"""

import numpy as np

__all__ = ["box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU on continuous coordinates (no +1); 0 where the union is empty.

    Args:
        a: [K, 4] XYXY boxes.
        b: [M, 4] XYXY boxes.

    Returns:
        [K, M] float64.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    iw = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
    ih = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (
        b[..., 3] - b[..., 1]
    )
    union = union - inter
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out
