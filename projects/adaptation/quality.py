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
from typing import Dict, Sequence

import numpy as np

from ian_d2.utils.boxes import box_iou

__all__ = ["ground_truth_ids", "pseudo_label_quality"]

THRESHOLDS = (0.5, 0.7, 0.9)


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
        ious = box_iou(footage.boxes[i], [p["box"] for p in persons])[0]
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
    runs: Dict[str, Sequence[str]],
) -> Dict[str, Dict]:
    """The quality of an index's detections and tracks, and of pseudo labels, as ground truth
    sees them (see the module docstring); the footage is read and matched once for all runs.

    Args:
        index_dir: the footage's index (with tracks).
        annotations_file: the site's ``annotations.json`` of that footage.
        runs: {run name: its ``pseudo_labels.npy`` files ([N] int, one per detection of the
            index, in its order), e.g. one per round}.

    Returns:
        dict: {run name: ``detections``, ``matched_share``, ``box_precision`` {threshold:
        share}, ``track_purity``, ``tracks``, and ``pseudo_identities`` [one dict per file]}.
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
    shared = {
        "detections": len(footage),
        "matched_share": round(float((gt >= 0).mean()), 4),
        "box_precision": precision,
        "tracks": len(purity),
        "track_purity": round(float(np.average(purity, weights=weight)), 4) if purity else None,
    }
    return {
        name: {
            **shared,
            "pseudo_identities": [_identity_quality(np.load(p), gt, cams) for p in files],
        }
        for name, files in runs.items()
    }
