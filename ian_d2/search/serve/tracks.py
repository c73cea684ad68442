"""Tracks in the search service: the tracks of the served snapshot, and the JSON of a track.

:class:`ServedTracks` maps the index's track files onto a snapshot's rows
(:func:`ian_d2.search.tracks.track_lookup`) and keeps the result until the snapshot or the track
files change (a job, ``index --append`` or ``tracks`` in another process): one ``listdir`` and a
few ``stat`` per request.

Track ids: ``<source id>.t<number>`` (e.g. ``e2a26b481a6b1c6e.t3``) for a track of a video; a
detection outside any track (a still image, or a video detection of an index whose tracks are
not up to date) is a track of one detection whose id is its detection id.
"""

import glob
import math
import os
import threading
from typing import Dict, Optional, Tuple

from ..tracks import TRACKS, TrackLookup, track_lookup
from .state import IndexSnapshot, source_id_of

__all__ = ["ServedTracks", "track_id", "track_json"]


class ServedTracks:
    """The tracks of the snapshots of one index, computed once per snapshot and track files."""

    def __init__(self, index_dir: str):
        self.index_dir = index_dir
        self._lock = threading.Lock()
        self._key = None
        self._snap: Optional[IndexSnapshot] = None
        self._lookup: Optional[TrackLookup] = None
        self._ids: Dict[str, int] = {}

    def _files_key(self) -> Tuple:
        files = glob.glob(os.path.join(self.index_dir, TRACKS, "*.parquet"))
        out = []
        for f in sorted(files):
            try:
                st = os.stat(f)
                out.append((f, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:  # replaced meanwhile
                pass
        return tuple(out)

    def lookup(self, snap: IndexSnapshot) -> TrackLookup:
        """The tracks of ``snap``'s rows."""
        key = self._files_key()
        with self._lock:
            if key != self._key or snap is not self._snap:
                self._lookup = track_lookup(
                    self.index_dir, snap.shard_names, snap.shard_offsets, snap.frame,
                    snap.time_s, snap.score, snap.emb,
                )  # fmt: skip
                self._ids = {
                    track_id(snap, self._lookup, t): t
                    for t in range(self._lookup.num_tracks)
                    if self._lookup.tracked[t]
                }
                self._key, self._snap = key, snap
            return self._lookup

    def track_of_id(self, snap: IndexSnapshot, tid: str) -> Optional[int]:
        """The track of a track id (None: unknown)."""
        lookup = self.lookup(snap)
        with self._lock:
            track = self._ids.get(str(tid))
        if track is None:  # a single detection: its detection id
            row = snap.row_of(str(tid))
            if row is not None and not lookup.tracked[lookup.track_of_row[row]]:
                track = int(lookup.track_of_row[row])
        return track


def track_id(snap: IndexSnapshot, lookup: TrackLookup, track: int) -> str:
    """The id of a track (module docstring)."""
    if lookup.tracked[track]:
        return f"{source_id_of(lookup.source[track])}.t{int(lookup.number[track])}"
    return snap.detection_id(int(lookup.best_row[track]))


def _num(x) -> Optional[float]:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def track_json(snap: IndexSnapshot, lookup: TrackLookup, track: int) -> Dict:
    """``{"id", "tracked", "first_frame", "last_frame", "first_time_s", "last_time_s",
    "num_detections", "best_detection_id"}`` of a track (frames and times null for a still
    image; ``tracked`` false for a detection outside any track)."""
    image = int(lookup.first_frame[track]) < 0
    return {
        "id": track_id(snap, lookup, track),
        "tracked": bool(lookup.tracked[track]),
        "first_frame": None if image else int(lookup.first_frame[track]),
        "last_frame": None if image else int(lookup.last_frame[track]),
        "first_time_s": _num(lookup.first_time[track]),
        "last_time_s": _num(lookup.last_time[track]),
        "num_detections": int(lookup.num_detections[track]),
        "best_detection_id": snap.detection_id(int(lookup.best_row[track])),
    }
