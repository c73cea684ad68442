"""Detection AP and recall on gallery images with mutual-best matching (``docs/protocols.md``).

A (detection, GT) pair is a true positive when IoU >= ``iou_thresh``, the GT is the detection's
highest-IoU GT AND the detection is that GT's highest-IoU detection (first index on exact IoU
ties). Scores play no part in the matching, only in the ranking. AP is the step-wise average
precision of all kept detections ranked by score (scikit-learn's definition, ties grouped)
times the recall, as in the OIM/SeqNet reference code, which crashes on images without GT or
without detections; here those are handled.

Shorthand for shapes: K GT boxes, M detections of one image.
"""

import logging
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..utils.boxes import box_iou

__all__ = [
    "average_precision",
    "box_iou",
    "mutual_best_matches",
    "DetectionResult",
    "evaluate_detections",
]

logger = logging.getLogger(__name__)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Step-wise average precision, as scikit-learn's ``average_precision_score``.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order;
    tied scores enter the ranking together, so the result does not depend on input order.

    Args:
        y_true: [N] bool labels.
        y_score: [N] float scores.

    Returns:
        AP in [0, 1]; 0.0 when there is no positive (scikit-learn warns and returns 0 or NaN).
    """
    y_true = np.asarray(y_true, dtype=bool).reshape(-1)
    y_score = np.asarray(y_score).reshape(-1)
    if y_true.size != y_score.size:
        raise ValueError(f"{y_true.size} labels but {y_score.size} scores")
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return 0.0
    if np.isnan(y_score).any():
        raise ValueError("NaN score in average_precision")
    order = np.argsort(-y_score, kind="stable")
    s, t = y_score[order], y_true[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # end of each tie group
    tps = np.cumsum(t)[last]
    precision = tps / (last + 1.0)
    recall_step = np.diff(np.r_[0, tps]) / n_pos
    return float(np.sum(recall_step * precision))


def mutual_best_matches(ious: np.ndarray, iou_thresh: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Mutual-best matching of one image.

    Args:
        ious: [K, M] IoU of GT k with detection m.
        iou_thresh: minimum IoU of a match (``>=``).

    Returns:
        (gt_matched [K] bool, det_tp [M] bool).
    """
    k, m = ious.shape
    gt_matched = np.zeros(k, bool)
    det_tp = np.zeros(m, bool)
    if k == 0 or m == 0:
        return gt_matched, det_tp
    best_gt = np.argmax(ious, axis=0)  # [M]
    best_det = np.argmax(ious, axis=1)  # [K]
    dets = np.arange(m)
    ok = (best_det[best_gt] == dets) & (ious[best_gt, dets] >= iou_thresh)
    det_tp[ok] = True
    gt_matched[best_gt[ok]] = True
    return gt_matched, det_tp


@dataclass
class DetectionResult:
    """Detection metrics over a set of images.

    Attributes:
        ap: AP x recall, in [0, 1].
        recall: matched GT / all GT.
        labeled_recall: matched labeled GT / labeled GT (None without a labeled mask).
        n_images, n_detections (kept), n_gt, n_tp, n_labeled, n_labeled_tp: counts.
        score_thresh: detections kept with ``score >= score_thresh``.
        iou_thresh: IoU needed for a match.
        labeled_only: unlabeled GT was removed before matching (and images without a labeled
            person skipped), as SeqNet's ``labeled_only=True``.
        n_skipped_images: images skipped for having no labeled person (``labeled_only``).
    """

    ap: float
    recall: float
    labeled_recall: Optional[float]
    n_images: int
    n_detections: int
    n_gt: int
    n_tp: int
    n_labeled: int
    n_labeled_tp: int
    score_thresh: float
    iou_thresh: float
    labeled_only: bool = False
    n_skipped_images: int = 0

    def metrics(self) -> Dict[str, float]:
        """{"AP", "recall"[, "labeled_recall"]} on a 0-100 scale (floats only)."""
        out = {"AP": 100.0 * self.ap, "recall": 100.0 * self.recall}
        if self.labeled_recall is not None:
            out["labeled_recall"] = 100.0 * self.labeled_recall
        return out

    def settings(self) -> Dict[str, float]:
        """Thresholds and counts used."""
        out = {
            "score_thresh": float(self.score_thresh),
            "iou_thresh": float(self.iou_thresh),
            "n_images": self.n_images,
            "n_detections": self.n_detections,
            "n_gt": self.n_gt,
        }
        if self.labeled_only:
            out["n_skipped_images"] = self.n_skipped_images
        return out


def _check_values(
    boxes: np.ndarray, scores: np.ndarray, det_img: np.ndarray, gts: np.ndarray, gt_img: np.ndarray
) -> None:
    """Raise ValueError naming the first image with a NaN score or a non-finite / inverted box."""
    bad = np.isnan(scores)
    if bad.any():
        raise ValueError(f"image {det_img[np.flatnonzero(bad)[0]]}: NaN detection score")
    for what, b, img in (("detection", boxes, det_img), ("GT", gts, gt_img)):
        bad = ~np.isfinite(b).all(axis=1)
        inverted = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        first = {}
        if bad.any():
            first[int(img[np.flatnonzero(bad)[0]])] = f"non-finite {what} box"
        if inverted.any():
            i = int(img[np.flatnonzero(inverted)[0]])
            first.setdefault(i, f"{what} box with x2 < x1 or y2 < y1")
        if first:
            i = min(first)
            raise ValueError(f"image {i}: {first[i]}")


def _first_argmax(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Position of the first maximum of every non-empty segment ``values[s:s + c]``."""
    seg_max = np.maximum.reduceat(values, starts)
    pos = np.where(values == np.repeat(seg_max, counts), np.arange(values.size), values.size)
    return np.minimum.reduceat(pos, starts)


def _mutual_best_matches_all(
    det_boxes: np.ndarray,
    det_img: np.ndarray,
    gt_boxes: np.ndarray,
    gt_img: np.ndarray,
    iou_thresh: float,
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`mutual_best_matches` of every image at once.

    Args:
        det_boxes: [D, 4] detections of all images, grouped by image (``det_img`` sorted).
        det_img: [D] image of every detection.
        gt_boxes: [G, 4] GT boxes of all images, grouped by image (``gt_img`` sorted).
        gt_img: [G] image of every GT box.
        iou_thresh: minimum IoU of a match.

    Returns:
        (gt_matched [G] bool, det_tp [D] bool); ties go to the first GT / detection of the
        image, as ``np.argmax`` in the per-image function.
    """
    n_det, n_gt = det_img.size, gt_img.size
    gt_matched, det_tp = np.zeros(n_gt, bool), np.zeros(n_det, bool)
    if n_det == 0 or n_gt == 0:
        return gt_matched, det_tp
    n_img = int(max(det_img.max(), gt_img.max())) + 1
    g_count = np.bincount(gt_img, minlength=n_img)
    g_start = np.cumsum(g_count) - g_count
    # every (detection, GT of its image) pair, by detection then GT
    rep = g_count[det_img]
    n_pairs = int(rep.sum())
    if n_pairs == 0:
        return gt_matched, det_tp
    pair_det = np.repeat(np.arange(n_det), rep)
    offset = np.arange(n_pairs) - np.repeat(np.cumsum(rep) - rep, rep)
    pair_gt = np.repeat(g_start[det_img], rep) + offset
    a, b = det_boxes[pair_det], gt_boxes[pair_gt]
    iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0)
    ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = union - inter
    iou = np.zeros(n_pairs, np.float64)
    np.divide(inter, union, out=iou, where=union > 0)
    # best GT of every detection (that has GT in its image)
    has = rep > 0
    starts = (np.cumsum(rep) - rep)[has]
    best_pair_of_det = np.full(n_det, -1, np.int64)
    best_pair_of_det[has] = _first_argmax(iou, starts, rep[has])
    # best detection of every GT: the same pairs ordered by GT, then detection
    order = np.lexsort((pair_det, pair_gt))
    d_count = np.bincount(pair_gt, minlength=n_gt)
    has_g = d_count > 0
    g_starts = (np.cumsum(d_count) - d_count)[has_g]
    best_det_of_gt = np.full(n_gt, -1, np.int64)
    best_det_of_gt[has_g] = pair_det[order[_first_argmax(iou[order], g_starts, d_count[has_g])]]
    dets = np.flatnonzero(has)
    bp = best_pair_of_det[dets]
    ok = (best_det_of_gt[pair_gt[bp]] == dets) & (iou[bp] >= iou_thresh)
    det_tp[dets[ok]] = True
    gt_matched[pair_gt[bp[ok]]] = True
    return gt_matched, det_tp


def evaluate_detections(
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    *,
    gt_labeled: Optional[Sequence[np.ndarray]] = None,
    labeled_only: bool = False,
    score_thresh: float = 0.01,
    iou_thresh: float = 0.5,
) -> DetectionResult:
    """Detection AP and recall with mutual-best matching.

    Args:
        det_boxes: per image, [M_i, 4] XYXY detections.
        det_scores: per image, [M_i] scores (compared with ``score_thresh`` in their own dtype).
        gt_boxes: per image, [K_i, 4] XYXY GT boxes (every annotated person).
        gt_labeled: optional per image [K_i] bool mask of labeled persons (e.g. pid >= 0). By
            default all GT are still matched and ``labeled_recall`` counts recall over the
            labeled ones only.
        labeled_only: the reference's "labeled only" evaluation (SeqNet's
            ``eval_detection(labeled_only=True)``; needs ``gt_labeled``): unlabeled GT boxes are
            removed BEFORE matching, so a detection on an unlabeled person is a false positive,
            and images without a labeled person are skipped with their detections. ``ap`` and
            ``recall`` are then over the labeled persons; ``labeled_recall`` is None.
        score_thresh: detection score threshold (reference code: 0.01; OIM: 0.5).
        iou_thresh: IoU of a match.

    Returns:
        :class:`DetectionResult`.

    Raises:
        ValueError: inconsistent lengths or shapes, NaN scores or boxes, inverted boxes (the
            message names the image).
    """
    n_img = len(gt_boxes)
    if len(det_boxes) != n_img or len(det_scores) != n_img:
        raise ValueError(
            f"{len(det_boxes)} detection lists, {len(det_scores)} score lists, {n_img} GT lists"
        )
    if gt_labeled is not None and len(gt_labeled) != n_img:
        raise ValueError(f"{len(gt_labeled)} labeled masks for {n_img} images")
    if labeled_only and gt_labeled is None:
        raise ValueError("labeled_only detection evaluation needs the gt_labeled masks")
    # 1. Per image: arrays and shapes only; the values are checked on the concatenation.
    det_b, det_s, gt_b, gt_lab, keep = [], [], [], [], []
    for i in range(n_img):
        boxes = np.asarray(det_boxes[i], np.float64).reshape(-1, 4)
        scores = np.asarray(det_scores[i]).reshape(-1)
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float64)
        gts = np.asarray(gt_boxes[i], np.float64).reshape(-1, 4)
        if boxes.shape[0] != scores.size:
            raise ValueError(f"image {i}: {boxes.shape[0]} boxes but {scores.size} scores")
        if gt_labeled is not None:
            lab = np.asarray(gt_labeled[i], bool).reshape(-1)
            if lab.size != gts.shape[0]:
                raise ValueError(f"image {i}: labeled mask of {lab.size} for {gts.shape[0]} GT")
            gt_lab.append(lab)
        det_b.append(boxes)
        det_s.append(scores)
        gt_b.append(gts)
    dtypes = {sc.dtype for sc in det_s}
    if len(dtypes) > 1:  # the threshold is compared in each image's own score dtype
        keep = [sc >= np.asarray(score_thresh, dtype=sc.dtype) for sc in det_s]
    det_count = np.asarray([b.shape[0] for b in det_b], np.int64)
    gt_count = np.asarray([b.shape[0] for b in gt_b], np.int64)
    det_img = np.repeat(np.arange(n_img), det_count)
    gt_img = np.repeat(np.arange(n_img), gt_count)
    boxes = np.concatenate(det_b + [np.zeros((0, 4))])
    scores = np.concatenate(det_s + [np.zeros(0, dtypes.pop() if len(dtypes) == 1 else None)])
    gts = np.concatenate(gt_b + [np.zeros((0, 4))])
    _check_values(boxes, scores, det_img, gts, gt_img)
    keep = (
        np.concatenate(keep + [np.zeros(0, bool)])
        if keep
        else scores >= np.asarray(score_thresh, dtype=scores.dtype)
    )
    lab = np.concatenate(gt_lab + [np.zeros(0, bool)]) if gt_labeled is not None else None
    n_skipped = 0
    if labeled_only:
        # no labeled person: the image and its detections are skipped; unlabeled GT is removed
        skip = np.bincount(gt_img[lab], minlength=n_img) == 0
        n_skipped = int(skip.sum())
        keep &= ~skip[det_img]
        gts, gt_img, lab = gts[lab], gt_img[lab], None
    y_score = scores[keep].astype(np.float64)
    gt_matched, y_true = _mutual_best_matches_all(
        boxes[keep], det_img[keep], gts, gt_img, iou_thresh
    )
    n_gt, n_tp = int(gt_matched.size), int(y_true.sum())
    n_lab = n_lab_tp = 0
    if lab is not None:
        n_lab, n_lab_tp = int(lab.sum()), int((lab & gt_matched).sum())
    if n_gt == 0:
        logger.warning("Detection evaluation without any GT box: recall and AP reported as 0")
    recall = n_tp / n_gt if n_gt else 0.0
    ap = average_precision(y_true, y_score) * recall if n_tp else 0.0
    labeled_recall = None
    if gt_labeled is not None and not labeled_only:
        labeled_recall = n_lab_tp / n_lab if n_lab else 0.0
    return DetectionResult(
        ap=ap,
        recall=recall,
        labeled_recall=labeled_recall,
        n_images=n_img - n_skipped,
        n_detections=int(y_score.size),
        n_gt=n_gt,
        n_tp=n_tp,
        n_labeled=n_lab,
        n_labeled_tp=n_lab_tp,
        score_thresh=float(score_thresh),
        iou_thresh=float(iou_thresh),
        labeled_only=labeled_only,
        n_skipped_images=n_skipped,
    )
