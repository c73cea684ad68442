"""Tracks measured against ground truth: tracking quality and search quality per track.

The ground truth is the synthetic video's ``annotations.json`` (per-frame boxes and identities
of each camera, :mod:`ian_d2.data.synthetic.video`); the index must hold its videos (matched by
file name). Nothing runs the model: the stored detections and embeddings are used.

* **Tracking** (:func:`evaluate_tracking`): per camera and for all cameras together, HOTA,
  IDF1 and MOTA (``trackers.eval``, Roboflow's implementation of the TrackEval metrics) of the
  motion tracker alone and of motion + embedding re-link, over the indexed frames, a detection
  matching a ground-truth box at IoU >= 0.5 (HOTA: averaged over IoU thresholds).
* **Search** (:func:`evaluate_search`): the queries are the stored detections that match a
  ground-truth person in every ``query_every``-th frame of the first camera (their stored
  embeddings). An *appearance* is one walk of an identity through one camera's view
  (:func:`appearances`): a maximal run of the annotated frames where it is visible, runs
  less than ``APPEARANCE_GAP_S`` (2.5 s) apart counting as one. For
  the per-detection top-k and the per-track top-k (``best`` and ``mean``), the number of
  distinct correct appearances among the hits (a hit is correct when its detection matches a
  ground-truth box of the query's identity) and the recall over appearances at 1, 5 and 10
  (the fraction of the identity's appearances in the index found among the hits), averaged
  over the queries. The query detection itself is never a hit.

Shape shorthand: n detections of a video, G ground-truth boxes of a frame, N all detections.
"""

import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..manifest import IndexManifest
from .build import _rows_of, _video_items, track_video
from .lookup import TrackLookup
from .rank import rank_tracks
from .settings import TrackSettings

__all__ = [
    "APPEARANCE_GAP_S",
    "appearances",
    "evaluate_search",
    "evaluate_tracking",
    "load_ground_truth",
    "longest_pure_track",
    "match_ground_truth",
]

logger = logging.getLogger(__name__)

IOU_MATCH = 0.5
APPEARANCE_GAP_S = 2.5  # an identity out of sight this long or longer starts a new appearance


def appearances(frames: Sequence[Sequence], fps: float) -> Dict[int, List[Tuple[int, int]]]:
    """{person id: [(first frame, last frame), ...]}: the appearances of each identity in one
    camera's annotated ``frames`` (per frame, (person id, box) pairs or the annotation dicts of
    ``annotations.json``), in order of time. An appearance is a maximal run of frames where the
    identity is visible; two runs with fewer than ``APPEARANCE_GAP_S * fps`` frames between them
    (a short occlusion) are one appearance."""
    gap = max(1, int(round(APPEARANCE_GAP_S * fps)))
    out: Dict[int, List[Tuple[int, int]]] = {}
    for f, fr in enumerate(frames):
        for a in fr:
            p = int(a["person_id"] if isinstance(a, dict) else a[0])
            runs = out.setdefault(p, [])
            if runs and f - runs[-1][1] - 1 < gap:
                runs[-1] = (runs[-1][0], f)
            else:
                runs.append((f, f))
    return out


def load_ground_truth(path: str) -> Dict[str, List[List[Tuple[int, List[float]]]]]:
    """{video file name: per frame [(person id, [x1, y1, x2, y2]), ...]} of an
    ``annotations.json``; a ValueError naming the file if it is not one."""
    try:
        with open(path) as f:
            ann = json.load(f)
        return {
            cam["file"]: [
                [(int(a["person_id"]), list(a["box"])) for a in fr] for fr in cam["frames"]
            ]
            for cam in ann["cameras"].values()
        }
    except Exception as e:
        raise ValueError(
            f"'{path}' is not the annotations.json of a synthetic video (python -m "
            f"ian_d2.data.synthetic --format video): {type(e).__name__}: {e}"
        ) from e


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of XYXY boxes."""
    from trackers.eval import box_iou

    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return box_iou(a, b)


def match_ground_truth(gt: Sequence[Tuple[int, List[float]]], boxes: np.ndarray) -> np.ndarray:
    """[n] the person id each detection of a frame matches (IoU >= 0.5, one-to-one, Hungarian on
    IoU), -1 for none."""
    from scipy.optimize import linear_sum_assignment

    out = np.full(len(boxes), -1, np.int64)
    if not len(gt) or not len(boxes):
        return out
    iou = _iou(np.asarray([b for _, b in gt]), boxes)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    for r, c in zip(rows, cols):
        if iou[r, c] >= IOU_MATCH:
            out[c] = gt[r][0]
    return out


def _persons(rows: Dict, gt_frames: Sequence) -> np.ndarray:
    """[n] the ground-truth person each stored detection of a video matches
    (:func:`match_ground_truth` frame by frame), -1 for none."""
    pid = np.full(len(rows["frame"]), -1, np.int64)
    for f in np.unique(rows["frame"]):
        sel = np.flatnonzero(rows["frame"] == f)
        g = gt_frames[f] if f < len(gt_frames) else []
        pid[sel] = match_ground_truth(g, rows["boxes"][sel])
    return pid


def _video_data(index_dir: str, ground_truth: Dict) -> Dict[str, Dict]:
    """{video file name: frames, rows, gt} of the index's videos that have ground truth."""
    manifest = IndexManifest.load(index_dir)
    videos = _video_items(index_dir)
    names = {os.path.basename(p): p for p in videos}
    missing = sorted(set(ground_truth) - set(names))
    if missing:
        raise ValueError(
            f"index '{index_dir}' holds no video named {', '.join(missing)} (of the annotations): "
            "index the synthetic video's folder"
        )
    out = {}
    for name in sorted(ground_truth):
        path = names[name]
        shards = sorted(videos[path]["shards"])
        rows = _rows_of(index_dir, shards, {path}, manifest.embed_dim).get(path)
        out[name] = {"path": path, "frames": videos[path]["frames"], "rows": rows}
    return out


def _sequence(frames: Dict[int, float], rows: Optional[Dict], labels: np.ndarray, gt, offset):
    """Per indexed frame: gt ids, tracker ids, IoU [G, n] (ids offset for concatenation)."""
    gt_ids, trk_ids, sims = [], [], []
    det_frame = rows["frame"] if rows is not None else np.zeros(0, np.int64)
    for f in sorted(frames):
        g = gt[f] if f < len(gt) else []
        sel = np.flatnonzero(det_frame == f)
        boxes = rows["boxes"][sel] if rows is not None else np.zeros((0, 4))
        gt_ids.append(np.asarray([p for p, _ in g], np.int64) + offset)
        trk_ids.append(np.asarray(labels[sel], np.int64) + offset)
        sims.append(_iou(np.asarray([b for _, b in g]), boxes))
    return gt_ids, trk_ids, sims


def _metrics(gt_ids, trk_ids, sims) -> Dict[str, float]:
    from trackers.eval import (
        compute_clear_metrics,
        compute_hota_metrics,
        compute_identity_metrics,
    )

    hota = compute_hota_metrics(gt_ids, trk_ids, sims)
    idm = compute_identity_metrics(gt_ids, trk_ids, sims, threshold=IOU_MATCH)
    clear = compute_clear_metrics(gt_ids, trk_ids, sims, threshold=IOU_MATCH)
    return {
        "HOTA": round(100 * float(hota["HOTA"]), 2),
        "DetA": round(100 * float(hota["DetA"]), 2),
        "AssA": round(100 * float(hota["AssA"]), 2),
        "IDF1": round(100 * float(idm["IDF1"]), 2),
        "MOTA": round(100 * float(clear["MOTA"]), 2),
        "IDSW": int(clear["IDSW"]),
        "gt_ids": int(len(np.unique(np.concatenate(gt_ids + [np.zeros(0, np.int64)])))),
        "tracks": int(len(np.unique(np.concatenate(trk_ids + [np.zeros(0, np.int64)])))),
    }


def evaluate_tracking(
    index_dir: str, annotations: str, settings: Optional[TrackSettings] = None
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """
    Tracking quality of motion only vs motion + embedding re-link (module docstring).

    Args:
        index_dir: an index holding the synthetic video's cameras.
        annotations: its ``annotations.json``.
        settings: the track settings (default: the index's, else the defaults); ``reid`` is
            set to False, then True.

    Returns:
        dict: {"motion" | "motion+reid": {camera file | "all": {"HOTA", "DetA", "AssA",
        "IDF1", "MOTA", "IDSW", "gt_ids", "tracks"}}} (percentages).
    """
    from .build import TRACKS

    settings = settings or TrackSettings.load(os.path.join(index_dir, TRACKS)) or TrackSettings()
    gt = load_ground_truth(annotations)
    data = _video_data(index_dir, gt)
    manifest = IndexManifest.load(index_dir)
    out = {}
    for variant, reid in (("motion", False), ("motion+reid", True)):
        s = settings.replace(reid=reid)
        per, every = {}, ([], [], [])
        for k, (name, v) in enumerate(data.items()):
            labels = track_video(v["frames"], v["rows"], s, manifest.fps, manifest.embed_dim)[0]
            seq = _sequence(v["frames"], v["rows"], labels, gt[name], (k + 1) * 1_000_000)
            per[name] = _metrics(*seq)
            for acc, part in zip(every, seq):
                acc += part
        per["all"] = _metrics(*every)
        out[variant] = per
    return out


def evaluate_search(
    index_dir: str,
    annotations: str,
    settings: Optional[TrackSettings] = None,
    *,
    query_every: int = 10,
    top_k: int = 10,
) -> Dict[str, object]:
    """
    Search quality per detection vs per track (module docstring).

    Returns:
        dict: ``queries``, ``appearances_per_identity`` (mean over the queries), per mode
        ("detections", "tracks_best", "tracks_mean"): ``distinct_appearances_top{k}`` and
        ``recall@1/5/10`` over appearances (means over the queries); and
        ``when_the_identity_has_them``: the same count over the queries whose identity has at
        least twice the appearances the per-detection top-k found (:func:`_goal_queries`).
    """
    from .build import TRACKS

    settings = settings or TrackSettings.load(os.path.join(index_dir, TRACKS)) or TrackSettings()
    gt = load_ground_truth(annotations)
    data = _video_data(index_dir, gt)
    manifest = IndexManifest.load(index_dir)
    with open(annotations) as f:
        gt_fps = float(json.load(f)["fps"])
    parts = {k: [] for k in ("emb", "pid", "cam", "frame", "label", "walk")}
    offset = 0
    for c, (name, v) in enumerate(data.items()):
        rows = v["rows"]
        if rows is None:
            continue
        labels = track_video(v["frames"], rows, settings, manifest.fps, manifest.embed_dim)[0]
        pid = _persons(rows, gt[name])
        parts["emb"].append(rows["emb"])
        parts["pid"].append(pid)
        parts["cam"].append(np.full(len(labels), c))
        parts["frame"].append(rows["frame"])
        parts["label"].append(labels + offset)
        runs = appearances(gt[name], gt_fps)
        parts["walk"].append(
            np.asarray(
                [
                    next(i for i, (a, b) in enumerate(runs[p]) if a <= f <= b) if p >= 0 else -1
                    for p, f in zip(pid, rows["frame"])
                ],
                np.int64,
            )
        )
        offset += int(labels.max()) + 1 if len(labels) else 0
    if not parts["emb"]:
        raise ValueError(f"index '{index_dir}' holds no detection of the annotated videos")
    emb = np.concatenate(parts["emb"]).astype(np.float32)
    pid, cam, frame, label, walk = (
        np.concatenate(parts[k]) for k in ("pid", "cam", "frame", "label", "walk")
    )
    lookup = _lookup(label, emb)
    found_in_index = {(int(p), int(c), int(w)) for p, c, w in zip(pid, cam, walk) if p >= 0}
    queries = np.flatnonzero((cam == 0) & (frame % query_every == 0) & (pid >= 0))
    modes = {"detections": [], "tracks_best": [], "tracks_mean": []}
    ks = sorted({1, 5, top_k})
    per_identity = []
    for qrow in queries:
        q = emb[qrow]
        mask = np.ones(len(emb), bool)
        mask[qrow] = False  # the query itself is never a hit
        want = {a for a in found_in_index if a[0] == pid[qrow]}
        per_identity.append(len(want))
        sims = emb @ q
        order = np.lexsort((np.arange(len(emb)), -sims.astype(np.float64)))
        hits = {"detections": order[mask[order]][: max(ks)]}
        for rank_by in ("best", "mean"):
            r = rank_tracks(lookup, emb, q, mask, rank_by=rank_by, top_k=max(ks))
            hits[f"tracks_{rank_by}"] = r.rows
        for mode, rows in hits.items():
            found = [
                (int(pid[r]), int(cam[r]), int(walk[r])) if pid[r] == pid[qrow] else None
                for r in rows
            ]
            entry = {f"distinct_appearances_top{top_k}": len({a for a in found[:top_k] if a})}
            for k in ks:
                entry[f"recall@{k}"] = len({a for a in found[:k] if a}) / max(1, len(want))
            modes[mode].append(entry)
    out: Dict[str, object] = {
        "queries": int(len(queries)),
        "appearances_per_identity": round(float(np.mean(per_identity)), 3) if per_identity else 0,
    }
    for mode, entries in modes.items():
        out[mode] = {
            key: round(float(np.mean([e[key] for e in entries])), 4) if entries else None
            for key in (entries[0] if entries else {})
        }
    out["when_the_identity_has_them"] = _goal_queries(modes, per_identity, top_k)
    return out


def _goal_queries(modes: Dict[str, List[Dict]], per_identity: List[int], top_k: int) -> Dict:
    """The queries of the goal "a per-track top-k holds at least twice as many distinct correct
    appearances as a per-detection top-k when the identity has them": those whose identity has
    at least twice (and at least one more than) the appearances the per-detection top-k found.
    Per mode: the mean distinct appearances over those queries, and how many of them reach
    twice the per-detection count on their own."""
    key = f"distinct_appearances_top{top_k}"
    det = [e[key] for e in modes["detections"]]
    chosen = [i for i, (d, n) in enumerate(zip(det, per_identity)) if n >= max(2 * d, d + 1)]
    out: Dict[str, object] = {"queries": len(chosen)}
    for mode, entries in modes.items():
        values = [entries[i][key] for i in chosen]
        out[mode] = {
            key: round(float(np.mean(values)), 4) if values else None,
            "queries_at_2x": sum(v >= max(2 * det[i], 1) for i, v in zip(chosen, values)),
        }
    return out


def longest_pure_track(index_dir: str, annotations: str) -> Optional[Dict[str, object]]:
    """
    The stored track to show as an example (``eval-tracks --picture``): of the tracks whose
    detections that match a ground-truth person (IoU >= 0.5) all match the same person, with
    at least half of them matched, the one with the most matched minus unmatched detections;
    ties: more matched, then the first in file order.
    The longest track alone is often a motion track that switches between people walking close
    together, which would show the tracker's worst case as if it were typical.

    Returns:
        dict: ``source``, ``track`` (its number), ``person_id``, ``num_detections``,
        ``matched`` (its detections matching that person); None when no track qualifies.
    """
    from .build import read_track_files

    gt = load_ground_truth(annotations)
    data = _video_data(index_dir, gt)
    person_of: Dict[str, int] = {}
    for name, v in data.items():
        rows = v["rows"]
        if rows is None:
            continue
        person_of.update(zip(rows["ids"], _persons(rows, gt[name]).tolist()))
    sources = {v["path"] for v in data.values()}
    best, best_key = None, None
    for _, header, t in read_track_files(index_dir):
        if header.get("source") not in sources:
            continue
        for number, ids in zip(t.column("track").to_pylist(), t.column("detections").to_pylist()):
            people = [person_of.get(i, -1) for i in ids]
            matched = [p for p in people if p >= 0]
            if len(set(matched)) != 1 or 2 * len(matched) < len(ids):
                continue
            key = (len(matched) - (len(ids) - len(matched)), len(matched))
            if best_key is None or key > best_key:
                best_key = key
                best = {
                    "source": header["source"],
                    "track": int(number),
                    "person_id": matched[0],
                    "num_detections": len(ids),
                    "matched": len(matched),
                }
    return best


def _lookup(label: np.ndarray, emb: np.ndarray) -> TrackLookup:
    """A :class:`TrackLookup` of in-memory track labels [N] (mean embeddings; no times)."""
    num = int(label.max()) + 1 if len(label) else 0
    sums = np.zeros((num, emb.shape[1]), np.float64)
    np.add.at(sums, label, emb)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    z = np.zeros(num)
    return TrackLookup(
        track_of_row=label.astype(np.int64),
        tracked=np.ones(num, bool),
        source=[None] * num,
        number=np.arange(num, dtype=np.int32),
        first_frame=z.astype(np.int32),
        last_frame=z.astype(np.int32),
        first_time=z,
        last_time=z,
        num_detections=np.bincount(label, minlength=num),
        best_row=np.zeros(num, np.int64),
        emb=means.astype(np.float32),
    )
