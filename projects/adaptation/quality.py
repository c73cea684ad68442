"""How good the adaptation's raw material is, measured against the site's ground truth (labels
used for this measurement only, never by the adaptation):

* **pseudo boxes**: the share of the index's detections (at each score threshold) that cover a
  ground-truth person (IoU >= 0.5 in the same video frame);
* **tracks**: their purity (per track, the share of its matched detections that are its
  majority identity, weighted by matched detections);
* **pseudo identities** (one round's ``pseudo_labels.npy``): pairwise precision and recall over
  the matched detections (a pair: two detections of one ground-truth person), and the recall of
  cross-camera pairs, which is what cross-camera search needs.
"""

import json
import os
from collections import Counter
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["ground_truth_ids", "pseudo_label_quality"]

THRESHOLDS = (0.5, 0.7, 0.9)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one XYXY ``box`` [4] with ``others`` [M, 4]."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def ground_truth_ids(footage, annotations: Dict) -> np.ndarray:
    """[N] the ground-truth identity each detection of ``footage`` (:class:`ian_d2.adapt.
    footage.Footage`) covers (IoU >= 0.5 with a person of ``annotations.json`` in its frame of
    its video, named ``camK.avi``), -1 for none."""
    out = np.full(len(footage), -1, np.int64)
    cams = annotations["cameras"]
    for i in range(len(footage)):
        cam = os.path.splitext(os.path.basename(str(footage.sources[i])))[0]
        frames = cams.get(cam, {}).get("frames", [])
        f = int(footage.frames[i])
        persons = frames[f] if 0 <= f < len(frames) else []
        if not persons:
            continue
        ious = _iou(footage.boxes[i], np.asarray([p["box"] for p in persons], np.float64))
        j = int(ious.argmax())
        if ious[j] >= 0.5:
            out[i] = int(persons[j]["person_id"])
    return out


def _pairs(counter: Counter) -> float:
    return float(sum(v * (v - 1) / 2 for v in counter.values()))


def _identity_quality(labels: np.ndarray, gt: np.ndarray, cams: np.ndarray) -> Dict:
    m = (labels >= 0) & (gt >= 0)
    lab, g, c = labels[m], gt[m], cams[m]
    same = _pairs(Counter(zip(lab.tolist(), g.tolist())))
    same_cam = _pairs(Counter(zip(lab.tolist(), g.tolist(), c.tolist())))
    true = _pairs(Counter(g.tolist()))
    true_cam = _pairs(Counter(zip(g.tolist(), c.tolist())))
    predicted = _pairs(Counter(lab.tolist()))
    return {
        "identities": int(labels.max(initial=-1) + 1),
        "outliers": int((labels < 0).sum()),
        "pair_precision": round(same / max(predicted, 1.0), 4),
        "pair_recall": round(same / max(true, 1.0), 4),
        "cross_camera_pair_recall": round((same - same_cam) / max(true - true_cam, 1.0), 4),
    }


def pseudo_label_quality(
    index_dir: str,
    annotations_file: str,
    label_files: Optional[Sequence[str]] = None,
) -> Dict:
    """The quality of an index's detections and tracks, and of pseudo labels, as ground truth
    sees them (see the module docstring).

    Args:
        index_dir: the footage's index (with tracks).
        annotations_file: the site's ``annotations.json`` of that footage.
        label_files: ``pseudo_labels.npy`` files ([N] int, one per detection of the index, in
            its order), e.g. one per round.

    Returns:
        dict: ``detections``, ``matched_share``, ``box_precision`` {threshold: share},
        ``track_purity``, ``tracks``, and ``pseudo_identities`` [one dict per label file].
    """
    from ian_d2.adapt.footage import read_footage

    footage = read_footage(index_dir, check_files=False)
    with open(annotations_file) as f:
        gt = ground_truth_ids(footage, json.load(f))
    precision = {}
    for t in THRESHOLDS:
        keep = footage.scores >= t
        precision[str(t)] = round(float((gt[keep] >= 0).mean()), 4) if keep.any() else None
    purity, weight = [], []
    for t in np.unique(footage.track_ids[footage.track_ids >= 0]):
        g = gt[(footage.track_ids == t) & (gt >= 0)]
        if len(g) >= 2:
            purity.append(Counter(g.tolist()).most_common(1)[0][1] / len(g))
            weight.append(len(g))
    cams = np.asarray([os.path.basename(str(s)) for s in footage.sources])
    identities = [_identity_quality(np.load(p), gt, cams) for p in (label_files or [])]
    return {
        "detections": len(footage),
        "matched_share": round(float((gt >= 0).mean()), 4),
        "box_precision": precision,
        "tracks": len(purity),
        "track_purity": round(float(np.average(purity, weights=weight)), 4) if purity else None,
        "pseudo_identities": identities,
    }
