"""The motion tracker: Roboflow's ``trackers`` (ByteTrack, OC-SORT, SORT) over one video's
stored detections, driven by the frames' times.

:class:`MotionTracker` feeds the tracker the detections of every indexed frame of a video in
time order, with the frame's timestamp: the Kalman step and the lost-track budget follow the
seconds between sampled frames, so variable frame rates and gaps in the sampling are tracked as
time, not as frame counts. Frames without detections are fed too (they age the tracks).

The tracker returns a track id for the detections it matched to a confirmed track; the detection
that started a track gets it here as well (the tracker reports it untracked, ``-1``), found by the
new track's initial box. Every other detection is a motion track of its own, so that each stored
detection belongs to exactly one motion track.

Shape shorthand: n detections of one video, F indexed frames of it.
"""

import logging
import math
import warnings
from typing import Sequence

import numpy as np

from .settings import TrackSettings

__all__ = ["MotionTracker"]

logger = logging.getLogger(__name__)


def _tracker_class(kind: str):
    """The ``trackers`` class of ``kind`` (imported here: ``trackers`` pulls ``supervision``)."""
    try:
        import trackers
    except ImportError as e:  # pragma: no cover - make setup installs it
        raise ImportError(
            "tracks need Roboflow's `trackers` package: run `make setup` (it installs "
            f"trackers and its dependencies, see requirements.txt) ({e})"
        ) from e
    return {
        "bytetrack": trackers.ByteTrackTracker,
        "ocsort": trackers.OCSORTTracker,
        "sort": trackers.SORTTracker,
    }[kind]


class MotionTracker:
    """
    Motion tracks of one video's detections.

    Args:
        kind: "bytetrack", "ocsort" or "sort".
        frame_rate: the nominal rate of the indexed frames (frames per second of video time):
            one Kalman step per 1 / frame_rate seconds.
        lost_track_s: seconds a track survives without a match.
        min_iou: smallest IoU to match a detection to a track.
        high_score: ByteTrack, OC-SORT: the first-stage score threshold.
        activation_score: ByteTrack, SORT: the score from which a detection starts a track.
    """

    def __init__(
        self,
        *,
        kind: str = "bytetrack",
        frame_rate: float,
        lost_track_s: float = 1.0,
        min_iou: float = 0.1,
        high_score: float = 0.6,
        activation_score: float = 0.6,
    ):
        if not (math.isfinite(frame_rate) and frame_rate > 0):
            raise ValueError(f"frame_rate must be a positive number of frames/s, not {frame_rate}")
        cls = _tracker_class(kind)
        # the lost-track buffer is counted in frames of a 30 fps video: seconds * 30
        args = dict(
            lost_track_buffer=int(round(lost_track_s * 30.0)),
            frame_rate=float(frame_rate),
            minimum_consecutive_frames=1,
            minimum_iou_threshold=float(min_iou),
        )
        if kind in ("bytetrack", "ocsort"):
            args["high_conf_det_threshold"] = float(high_score)
        if kind in ("bytetrack", "sort"):
            args["track_activation_threshold"] = float(activation_score)
        self.kind = kind
        self.tracker = cls(**args)

    @classmethod
    def from_settings(cls, settings: TrackSettings, frame_rate: float) -> "MotionTracker":
        return cls(
            kind=settings.tracker,
            frame_rate=frame_rate,
            lost_track_s=settings.lost_track_s,
            min_iou=settings.min_iou,
            high_score=settings.high_score,
            activation_score=settings.activation_score,
        )

    def track(
        self,
        frame_times: Sequence[float],
        det_frame: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
    ) -> np.ndarray:
        """
        Track one video.

        Args:
            frame_times: [F] times (seconds) of the video's indexed frames, strictly increasing.
            det_frame: [n] int, the position in ``frame_times`` of each detection's frame.
            boxes: [n, 4] XYXY boxes; scores: [n] detection scores.

        Returns:
            np.ndarray: [n] int64 motion track label of each detection (0, 1, ...: numbered in
            the order the tracks first appear, detections in their given order).
        """
        import supervision as sv

        times = np.asarray(frame_times, np.float64)
        if len(times) > 1 and not np.all(np.diff(times) > 0):
            raise ValueError("frame times must be strictly increasing")
        det_frame = np.asarray(det_frame, np.int64)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        n = len(scores)
        ids = np.full(n, -1, np.int64)  # the tracker's id of each detection
        order = np.argsort(det_frame, kind="stable")
        starts = np.searchsorted(det_frame[order], np.arange(len(times) + 1))
        spawned = {}  # tracklet -> the detection (index) that started it
        self.tracker.reset()
        for f, t in enumerate(times):
            rows = order[starts[f] : starts[f + 1]]
            before = set(self.tracker.tracks)  # references: no id reused meanwhile
            dets = sv.Detections(
                xyxy=boxes[rows].astype(np.float32).reshape(-1, 4),
                confidence=scores[rows],
                class_id=np.zeros(len(rows), int),
                data={"row": rows},
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                out = self.tracker.update(dets, timestamp=float(t))
            out_rows = np.asarray(out.data.get("row", []), np.int64)
            out_ids = np.asarray(out.tracker_id, np.int64)
            ids[out_rows] = out_ids
            unmatched = out_rows[out_ids < 0]
            for tr in self.tracker.tracks:
                if tr in before or not len(unmatched):
                    continue
                d = np.abs(boxes[unmatched] - np.asarray(tr.get_state_bbox(), np.float32)).sum(1)
                k = int(np.argmin(d))
                if d[k] < 1e-2 * max(1.0, float(np.abs(boxes[unmatched[k]]).max())):
                    spawned[tr] = int(unmatched[k])
                    unmatched = np.delete(unmatched, k)
            for tr, row in list(spawned.items()):
                if tr.tracker_id >= 0:
                    ids[row] = tr.tracker_id
                    del spawned[tr]
        # labels: the tracker's ids, then one label per untracked detection
        labels = np.full(n, -1, np.int64)
        seen = {}
        for i in order:
            key = ("t", int(ids[i])) if ids[i] >= 0 else ("d", int(i))
            labels[i] = seen.setdefault(key, len(seen))
        return labels
