"""Compare an exported model's outputs with the eager model's (numpy only).

Used by the exporter's check after export, the parity tests, ``benchmarks/bench_export.py`` and
``benchmarks/gpu/parity.py`` (the GPU check). Boxes are matched by
:func:`ian_d2.utils.boxes.box_iou`.

Shape shorthand:
    N: detections of the reference (eager) model
    M: detections of the compared (exported) model
    D: embedding dimension
"""

from typing import Dict, List, Sequence

import numpy as np

from ..utils.boxes import box_iou

__all__ = ["box_iou", "compare_detections", "match_detections", "top_k_ranking", "same_ranking"]


def match_detections(ref_boxes: np.ndarray, boxes: np.ndarray) -> (np.ndarray, np.ndarray):
    """
    For each reference box, the compared box of highest IoU.

    Returns:
        (np.ndarray, np.ndarray): [N] index into ``boxes`` (-1 when there is none) and [N] IoU.
    """
    n = len(np.asarray(ref_boxes).reshape(-1, 4))
    if n == 0 or len(np.asarray(boxes).reshape(-1, 4)) == 0:
        return np.full(n, -1, np.int64), np.zeros(n)
    iou = box_iou(ref_boxes, boxes)
    j = iou.argmax(axis=1)
    return j, iou[np.arange(n), j]


def compare_detections(ref: Dict[str, np.ndarray], out: Dict[str, np.ndarray]) -> Dict:
    """
    How closely the detections ``out`` reproduce ``ref``: each reference detection is matched to
    the compared box of highest IoU.

    Args:
        ref, out: dicts with ``boxes`` [N, 4], ``scores`` [N], ``embeddings`` [N, D].

    Returns:
        dict: ``n_ref``, ``n_out``, ``min_iou`` (over the reference detections; 1.0 when there
        is none), ``max_score_diff`` and ``min_cosine`` (over the matched pairs), and
        ``n_unmatched`` (reference detections without a compared box of IoU >= 0.99).
    """
    rb, ob = np.asarray(ref["boxes"]).reshape(-1, 4), np.asarray(out["boxes"]).reshape(-1, 4)
    j, iou = match_detections(rb, ob)
    stats = {"n_ref": int(len(rb)), "n_out": int(len(ob))}
    stats["min_iou"] = float(iou.min()) if len(iou) else 1.0
    ok = iou >= 0.99
    stats["n_unmatched"] = int((~ok).sum())
    if ok.any():
        rs, os_ = np.asarray(ref["scores"]).reshape(-1), np.asarray(out["scores"]).reshape(-1)
        stats["max_score_diff"] = float(np.abs(rs[ok] - os_[j[ok]]).max())
        re_ = np.asarray(ref["embeddings"], np.float64)[ok]
        oe = np.asarray(out["embeddings"], np.float64)[j[ok]]
        cos = (re_ * oe).sum(1) / np.maximum(
            np.linalg.norm(re_, axis=1) * np.linalg.norm(oe, axis=1), 1e-12
        )
        stats["min_cosine"] = float(cos.min())
    else:
        stats["max_score_diff"] = 0.0
        stats["min_cosine"] = 1.0
    return stats


def top_k_ranking(query: np.ndarray, gallery: Sequence[Dict[str, np.ndarray]], k: int) -> List:
    """
    The ``k`` gallery detections most similar to ``query`` [D], best first, as
    ``(image index, box [4])`` pairs (ties broken by image, then detection order).
    """
    rows = []
    for i, det in enumerate(gallery):
        emb = np.asarray(det["embeddings"], np.float64).reshape(-1, len(query))
        for d, s in enumerate(emb @ np.asarray(query, np.float64)):
            rows.append((-float(s), i, d, np.asarray(det["boxes"]).reshape(-1, 4)[d]))
    rows.sort(key=lambda r: r[:3])
    return [(i, box) for _, i, _, box in rows[:k]]


def same_ranking(a: List, b: List, min_iou: float = 0.99) -> bool:
    """Whether two :func:`top_k_ranking` lists name the same detections in the same order."""
    if len(a) != len(b):
        return False
    for (ia, ba), (ib, bb) in zip(a, b):
        if ia != ib or box_iou(ba[None], bb[None])[0, 0] < min_iou:
            return False
    return True
