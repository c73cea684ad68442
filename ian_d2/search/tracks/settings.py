"""The settings of track building: the motion tracker's and the embedding re-link step's.

An index keeps one set of settings (``INDEX/tracks/settings.json``): the tracks of every video
are built with it, and a different set is refused unless the tracks are rebuilt.
"""

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional

from ...utils.io import atomic_write

__all__ = ["TRACKER_KINDS", "TrackSettings"]

# the motion trackers of Roboflow's `trackers` package that tracks can be built with
TRACKER_KINDS = ("bytetrack", "ocsort", "sort")


@dataclass(frozen=True)
class TrackSettings:
    """
    Attributes:
        tracker: the motion tracker, one of :data:`TRACKER_KINDS`.
        lost_track_s: seconds of video time a track survives without a matched detection.
        min_iou: the smallest IoU between a track's predicted box and a detection to match.
        high_score: ByteTrack / OC-SORT: detections from this score are matched first (the
            others only to tracks left unmatched).
        activation_score: ByteTrack / SORT: detections from this score start a new track.
        reid: link the motion tracks of a video whose embeddings agree (see
            :mod:`.association`); False: motion only.
        link_similarity: the smallest cosine similarity of two motion tracks' mean embeddings
            to link them.
        link_max_gap_s: the longest gap, seconds, between the end of a track and the start of
            the track it is linked to.
        link_max_speed: the fastest plausible move across a gap, in box heights per second
            (plus one box height): farther starts are not linked.
    """

    tracker: str = "bytetrack"
    lost_track_s: float = 1.0
    min_iou: float = 0.1
    high_score: float = 0.6
    activation_score: float = 0.6
    reid: bool = True
    link_similarity: float = 0.7
    link_max_gap_s: float = 5.0
    link_max_speed: float = 3.0

    def __post_init__(self):
        if self.tracker not in TRACKER_KINDS:
            raise ValueError(f"tracker {self.tracker!r} is not one of {', '.join(TRACKER_KINDS)}")
        for name in ("lost_track_s", "link_max_gap_s", "link_max_speed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"track setting {name} must be a number >= 0, not {v!r}")
        for name in ("min_iou", "high_score", "activation_score"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"track setting {name} must be in [0, 1], not {v!r}")
        if not (isinstance(self.link_similarity, (int, float)) and -1 <= self.link_similarity <= 1):
            raise ValueError(
                f"track setting link_similarity must be in [-1, 1], not {self.link_similarity!r}"
            )

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, object], what: str = "track settings") -> "TrackSettings":
        """Settings from a dict; a ValueError naming ``what`` for unknown keys or bad values."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{what}: unknown setting(s) {unknown}; expected {sorted(names)}")
        return cls(**data)

    def replace(self, **changes) -> "TrackSettings":
        """These settings with ``changes`` (None values ignored)."""
        return TrackSettings(
            **{**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}}
        )

    # the index's settings file ------------------------------------------------------------------
    @staticmethod
    def path(tracks_dir: str) -> str:
        return os.path.join(tracks_dir, "settings.json")

    @classmethod
    def load(cls, tracks_dir: str) -> Optional["TrackSettings"]:
        """The settings stored in ``tracks_dir`` (None: none stored yet)."""
        path = cls.path(tracks_dir)
        if not os.path.isfile(path):
            return None
        try:
            with open(path) as f:
                data = json.load(f)
        except Exception as e:
            raise ValueError(f"track settings '{path}' are not readable JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"track settings '{path}' must be a JSON object")
        return cls.from_dict(data, f"track settings '{path}'")

    def save(self, tracks_dir: str) -> None:
        os.makedirs(tracks_dir, exist_ok=True)
        data = json.dumps(self.to_dict(), indent=1).encode()
        atomic_write(self.path(tracks_dir), lambda f: f.write(data))
