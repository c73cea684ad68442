"""The JSON of the search service's objects: sources, frames, detections, hits (see
docs/SEARCH_API.md). Ids, never server paths: a source is named by its file's basename.
"""

import math
import os
import threading
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .state import IndexSnapshot, SourceEntry

__all__ = [
    "detection_json",
    "frame_json",
    "hit_json",
    "num",
    "source_json",
    "video_info",
]

_video_info: Dict[str, Optional[Tuple[float, int]]] = {}
_video_info_lock = threading.Lock()


def num(x, digits: int = 3) -> Optional[float]:
    """A JSON number rounded to ``digits``; None for NaN."""
    x = float(x)
    return None if math.isnan(x) else round(x, digits)


def video_info(path: str) -> Optional[Tuple[float, int]]:
    """(frames per second, frame count) as the video's container reports them, probed once;
    None if the file cannot be opened (moved, deleted)."""
    with _video_info_lock:
        if path in _video_info:
            return _video_info[path]
    info = None
    if os.path.isfile(path):
        cap = cv2.VideoCapture(path)
        try:
            if cap.isOpened():
                info = (
                    float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                    int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                )
        finally:
            cap.release()
    with _video_info_lock:
        _video_info[path] = info
    return info


def _video_fps(source: SourceEntry) -> Optional[float]:
    """A video's frame rate: from its indexed frames (time = frame / fps), else probed."""
    later = np.flatnonzero((source.frames > 0) & (source.times > 0))
    if len(later):
        i = later[-1]
        return float(source.frames[i]) / float(source.times[i])
    info = video_info(source.path)
    return info[0] if info and info[0] > 0 else None


def source_json(snap: IndexSnapshot, source: SourceEntry, sampled_fps: float) -> Dict:
    video = source.kind == "video"
    fps = _video_fps(source) if video else None
    duration = None
    if video:
        info = video_info(source.path)
        if info and info[1] > 0 and fps:
            duration = info[1] / fps
        elif len(source.times):
            duration = float(source.times[-1]) + (1.0 / fps if fps else 0.0)
    w, h = (int(v) for v in source.sizes[0]) if len(source.sizes) else (None, None)
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "frames": int(len(source.frames)),
        "fps": float(sampled_fps) if video else None,
        "video_fps": num(fps, 6) if fps else None,
        "duration_s": num(duration) if duration is not None else None,
        "width": w,
        "height": h,
        "detections": int(snap.detections_per_source()[source.index]),
    }


def _box(snap: IndexSnapshot, row: int) -> List[float]:
    return [round(float(v), 2) for v in snap.boxes[row]]


def detection_json(snap: IndexSnapshot, row: int, full: bool = False) -> Dict:
    """``{"id", "box", "score"}``; ``full``: with its source and frame."""
    out = {
        "id": snap.detection_id(row),
        "box": _box(snap, row),
        "score": round(float(snap.score[row]), 4),
    }
    if full:
        source = snap.sources[int(snap.src[row])]
        frame = int(snap.frame[row])
        out = {
            "id": out["id"],
            "source_id": source.id,
            "source": source.name,
            "frame_id": snap.frame_id(source, frame),
            "frame": frame if frame >= 0 else None,
            "time_s": num(snap.time_s[row], 6),
            "box": out["box"],
            "score": out["score"],
        }
    return out


def frame_json(snap: IndexSnapshot, source: SourceEntry, frame: int, full: bool = False) -> Dict:
    """An indexed item and its detections; ``full``: with its source."""
    pos = source.position(frame)
    w, h = (int(v) for v in source.sizes[pos])
    out = {"id": snap.frame_id(source, frame)}
    if full:
        out.update(source_id=source.id, source=source.name)
    out.update(
        frame=int(frame) if frame >= 0 else None,
        time_s=num(source.times[pos], 6),
        width=w,
        height=h,
        detections=[detection_json(snap, int(r)) for r in snap.rows_of_item(source, frame)],
    )
    return out


def hit_json(snap: IndexSnapshot, rank: int, row: int, similarity: float) -> Dict:
    source = snap.sources[int(snap.src[row])]
    frame = int(snap.frame[row])
    return {
        "rank": int(rank),
        "detection_id": snap.detection_id(row),
        "source_id": source.id,
        "source": source.name,
        "kind": source.kind,
        "frame_id": snap.frame_id(source, frame),
        "frame": frame if frame >= 0 else None,
        "time_s": num(snap.time_s[row], 6),
        "box": _box(snap, row),
        "score": round(float(snap.score[row]), 4),
        "similarity": round(float(similarity), 6),
    }
