"""Test oracle: deliberately plain implementations of the search and detection rules.

One Python loop per query, per gallery entry and per detection, with the ranking done by explicit
sorting, as in the public OIM/SeqNet evaluation code (minus its crashes and order-dependent tie
breaking). It takes plain arrays and imports nothing from ``ian_d2``: no helper, container or
similarity definition is shared with the code it checks. Far too slow for real use.

Similarity: each embedding is L2-normalised on its own in float64 and a similarity is one
``np.dot`` of two unit vectors (the same call for every pair, so identical embeddings tie).
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["reference_average_precision", "reference_search", "reference_detection"]


def _iou(a, b) -> float:
    """IoU of two XYXY boxes on continuous coordinates."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _unit(v) -> np.ndarray:
    v = np.array(v, dtype=np.float64)
    return v / np.sqrt(np.dot(v, v))


def reference_average_precision(y_true: Sequence[bool], y_score: Sequence[float]) -> float:
    """scikit-learn's ``average_precision_score`` written out: sum over distinct score
    thresholds (descending) of (R_n - R_{n-1}) * P_n. Returns 0.0 when there is no positive."""
    items = sorted(zip(y_score, y_true), key=lambda t: -t[0])
    n_pos = sum(1 for _, t in items if t)
    if n_pos == 0:
        return 0.0
    ap, tp, seen, prev_recall = 0.0, 0, 0, 0.0
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j][0] == items[i][0]:
            tp += 1 if items[j][1] else 0
            seen += 1
            j += 1
        recall = tp / n_pos
        ap += (recall - prev_recall) * (tp / seen)
        prev_recall = recall
        i = j
    return ap


def reference_search(
    query_embeddings,
    det_boxes,
    det_scores,
    det_embeddings,
    det_offsets,
    gallery_images,
    positives,
    det_thresh: float = 0.5,
    duplicates: str = "first",
    topk: Sequence[int] = (1, 5, 10),
) -> Dict[str, np.ndarray]:
    """Plain per-query loop of the search rules (``docs/protocols.md``).

    Args:
        query_embeddings: [Q, E].
        det_boxes, det_scores, det_embeddings: [D, 4], [D], [D, E] detections of all images.
        det_offsets: [G + 1]: image i owns detections det_offsets[i]:det_offsets[i + 1].
        gallery_images: [Q, N] image of every gallery entry, -1 = no entry.
        positives: {(query, column): GT box} of the entries that show the query person.
        det_thresh: detections with score >= det_thresh (in the scores' dtype) are ranked.
        duplicates: "first" (an image listed twice is evaluated once, with its first entry's
            box; every positive entry counts in count_gt) or "per_entry".

    Returns:
        dict with "ap" [Q] (NaN where count_gt == 0), "hits" [Q, K] bool, "count_gt" [Q],
        "count_tp" [Q].
    """
    scores = np.asarray(det_scores)
    thresh = np.asarray(det_thresh, dtype=scores.dtype)
    units: Dict[int, np.ndarray] = {}
    num_q = len(query_embeddings)
    aps = np.full(num_q, np.nan)
    hits = np.zeros((num_q, len(topk)), bool)
    count_gt = np.zeros(num_q, np.int64)
    count_tp = np.zeros(num_q, np.int64)
    for q in range(num_q):
        query = _unit(query_embeddings[q])
        y_true: List[bool] = []
        y_score: List[float] = []
        seen = set()
        for col, img in enumerate(np.asarray(gallery_images[q]).tolist()):
            if img < 0:
                continue
            gt = positives.get((q, col))
            if gt is not None:
                count_gt[q] += 1
            if duplicates == "first":
                if img in seen:
                    continue
                seen.add(img)
            sims, boxes = [], []
            for d in range(int(det_offsets[img]), int(det_offsets[img + 1])):
                if scores[d] >= thresh:
                    if d not in units:
                        units[d] = _unit(det_embeddings[d])
                    sims.append(float(np.dot(units[d], query)))
                    boxes.append([float(v) for v in det_boxes[d]])
            labels = [False] * len(sims)
            if gt is not None:
                gt = [float(v) for v in gt]
                w, h = gt[2] - gt[0], gt[3] - gt[1]
                iou_thresh = min(0.5, (w * h) / ((w + 10.0) * (h + 10.0)))
                # the most similar detection over the threshold is the single true positive
                for j in sorted(range(len(sims)), key=lambda k: -sims[k]):
                    if _iou(boxes[j], gt) >= iou_thresh:
                        labels[j] = True
                        count_tp[q] += 1
                        break
            y_true.extend(labels)
            y_score.extend(sims)
        if count_gt[q] == 0:
            continue
        if count_tp[q] == 0:
            aps[q] = 0.0
        else:
            aps[q] = reference_average_precision(y_true, y_score) * count_tp[q] / count_gt[q]
        # pessimistic ranking: among equal similarities, negatives first
        ranked = sorted(zip(y_score, y_true), key=lambda t: (-t[0], t[1]))
        for j, k in enumerate(topk):
            hits[q, j] = any(t for _, t in ranked[:k])
    return {"ap": aps, "hits": hits, "count_gt": count_gt, "count_tp": count_tp}


def reference_detection(
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_labeled: Optional[Sequence[np.ndarray]] = None,
    labeled_only: bool = False,
    iou_thresh: float = 0.5,
    score_thresh: float = 0.01,
) -> Dict[str, float]:
    """Plain loops of the mutual-best detection rules (SeqNet's ``eval_detection``, fixed for
    images without GT or without detections).

    ``labeled_only`` is SeqNet's ``labeled_only=True``: the unlabeled GT boxes are deleted
    first, and an image left without GT is skipped with its detections.

    Returns:
        dict with "ap", "recall", "labeled_recall" (NaN without mask or with labeled_only),
        "n_tp", "n_gt".
    """
    y_true: List[bool] = []
    y_score: List[float] = []
    n_tp = n_gt = n_lab = n_lab_tp = 0
    for i in range(len(gt_boxes)):
        scores = np.asarray(det_scores[i])
        gts = np.asarray(gt_boxes[i], np.float64).reshape(-1, 4).tolist()
        lab = [True] * len(gts) if gt_labeled is None else list(np.asarray(gt_labeled[i], bool))
        if labeled_only:
            gts = [g for g, keep in zip(gts, lab) if keep]
            if not gts:
                continue
            lab = [True] * len(gts)
        keep = [
            j for j in range(len(scores)) if scores[j] >= np.asarray(score_thresh, scores.dtype)
        ]
        dets = [np.asarray(det_boxes[i], np.float64)[j].tolist() for j in keep]
        ious = [[_iou(g, d) for d in dets] for g in gts]
        tp_det = [False] * len(dets)
        for gi in range(len(gts)):
            for dj in range(len(dets)):
                if ious[gi][dj] < iou_thresh:
                    continue
                col = [ious[k][dj] for k in range(len(gts))]
                row = ious[gi]
                if col.index(max(col)) == gi and row.index(max(row)) == dj:
                    tp_det[dj] = True
                    n_tp += 1
                    if lab[gi]:
                        n_lab_tp += 1
        n_gt += len(gts)
        n_lab += sum(lab)
        y_true.extend(tp_det)
        y_score.extend(float(scores[j]) for j in keep)
    recall = n_tp / n_gt if n_gt else 0.0
    ap = reference_average_precision(y_true, y_score) * recall if n_tp else 0.0
    with_mask = gt_labeled is not None and not labeled_only
    return {
        "ap": ap,
        "recall": recall,
        "labeled_recall": (n_lab_tp / n_lab if n_lab else 0.0) if with_mask else np.nan,
        "n_tp": n_tp,
        "n_gt": n_gt,
    }
