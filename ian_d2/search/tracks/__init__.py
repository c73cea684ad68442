"""Tracks: the detections of one person's appearance in a video, linked into one result.

At indexing time (and with ``python -m ian_d2.search tracks INDEX`` for an existing index), the
stored detections of each video are linked over time by a maintained motion tracker
(:mod:`.tracker`, Roboflow's ``trackers``: ByteTrack by default), then motion tracks broken by an
occlusion or a missed frame are re-linked when the model's embeddings agree
(:mod:`.association`). Each video gets a per-track table (:mod:`.table`) in ``INDEX/tracks/``
(:mod:`.build`); a search can return one hit per track (:mod:`.lookup`, :mod:`.rank`).

Modules: :mod:`.settings` (what the tracks are built with), :mod:`.tracker`,
:mod:`.association`, :mod:`.table`, :mod:`.build`, :mod:`.lookup`, :mod:`.rank`,
:mod:`.evaluation` (against a synthetic video's ground truth: ``eval-tracks``) and
:mod:`.picture` (a track as a strip of crops). ``trackers`` (and ``supervision``) is imported
when a video is tracked or evaluated, not with this package.
"""

from .build import TRACKS, build_tracks, read_track_files, source_key
from .lookup import TrackLookup, track_lookup
from .rank import RANK_BY, TrackRanking, rank_tracks
from .settings import TRACKER_KINDS, TrackSettings

__all__ = [
    "RANK_BY",
    "TRACKER_KINDS",
    "TRACKS",
    "TrackLookup",
    "TrackRanking",
    "TrackSettings",
    "build_tracks",
    "rank_tracks",
    "read_track_files",
    "source_key",
    "track_lookup",
]
