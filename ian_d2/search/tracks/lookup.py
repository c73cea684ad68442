"""The tracks of an index over its rows: which track each stored detection belongs to.

:func:`track_lookup` maps the per-video track files (:mod:`.build`) onto the rows of the loaded
shards (rows numbered in shard order, as the searcher and the search service number them). A
detection in no track (a still image, or a video whose tracks are not built or not up to date)
is a track of its own: one detection, its own embedding, ``tracked`` False.

Shape shorthand: N stored detections, T tracks (single detections included), D embedding
dimension.
"""

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from .build import read_track_files

__all__ = ["TrackLookup", "track_lookup"]

logger = logging.getLogger(__name__)


@dataclass
class TrackLookup:
    """
    Attributes:
        track_of_row: [N] int64 the track of each row.
        tracked: [T] bool False for a single detection outside any track.
        source: [T] the video path of a track (None for single detections).
        number: [T] int32 the track's number in its video (-1 for single detections).
        first_frame, last_frame: [T] int32 frames of its first / last detection.
        first_time, last_time: [T] float64 their times (NaN: still image).
        num_detections: [T] int64 its detections.
        best_row: [T] int64 its highest-scoring detection.
        emb: [T, D] float32 mean embedding, L2-normalised (a single detection's own).
        untracked_video_rows: video detections in no track (tracks not built or out of date).
    """

    track_of_row: np.ndarray
    tracked: np.ndarray
    source: List[Optional[str]]
    number: np.ndarray
    first_frame: np.ndarray
    last_frame: np.ndarray
    first_time: np.ndarray
    last_time: np.ndarray
    num_detections: np.ndarray
    best_row: np.ndarray
    emb: np.ndarray
    untracked_video_rows: int = 0

    @property
    def num_tracks(self) -> int:
        return len(self.tracked)

    def rows_of(self, track: int) -> np.ndarray:
        """[n] int64 rows of a track, in row order."""
        return np.flatnonzero(self.track_of_row == track)


def _rows_of_ids(ids: Sequence[str], shard_index: Dict[str, int], offsets: np.ndarray):
    """[n] int64 rows of detection ids (-1: not in the loaded shards)."""
    out = np.full(len(ids), -1, np.int64)
    for i, did in enumerate(ids):
        stem, _, row = did.rpartition(".")
        s = shard_index.get(stem)
        if s is not None and row.isdigit() and int(row) < offsets[s + 1] - offsets[s]:
            out[i] = offsets[s] + int(row)
    return out


def track_lookup(
    index_dir: str,
    shard_names: Sequence[str],
    shard_offsets: np.ndarray,
    frame: np.ndarray,
    time_s: np.ndarray,
    score: np.ndarray,
    emb: np.ndarray,
    tables: Optional[List[Tuple[str, Dict, pa.Table]]] = None,
) -> TrackLookup:
    """
    The tracks of the rows of ``shard_names``.

    Args:
        index_dir: the index.
        shard_names: [S] shard file names in row order; shard_offsets: [S + 1] their first rows.
        frame: [N] frame numbers (-1: still image); time_s: [N] times; score: [N] scores.
        emb: [N, D] row embeddings.
        tables: the track files (:func:`read_track_files`; None: read them).
    """
    n = len(score)
    offsets = np.asarray(shard_offsets, np.int64)
    shard_index = {os.path.splitext(name)[0]: s for s, name in enumerate(shard_names)}
    loaded = set(shard_names)
    track_of_row = np.full(n, -1, np.int64)
    cols = {k: [] for k in ("source", "number", "best", "emb")}
    stale = 0
    for path, header, table in tables if tables is not None else read_track_files(index_dir):
        if not set(header.get("shards", {})) <= loaded:
            stale += 1  # made from shards not loaded (gone, or not yet seen): left out
            continue
        t = table.select(["source", "track", "best_detection", "detections"]).to_pydict()
        embs = table.column("embedding").combine_chunks()
        embs = embs.values.to_numpy(zero_copy_only=False).reshape(len(t["track"]), -1)
        for k in range(len(t["track"])):
            rows = _rows_of_ids(t["detections"][k], shard_index, offsets)
            if (rows < 0).any() or (track_of_row[rows] >= 0).any():
                stale += 1
                continue
            track_of_row[rows] = len(cols["source"])
            cols["source"].append(t["source"][k])
            cols["number"].append(int(t["track"][k]))
            cols["best"].append(
                int(_rows_of_ids([t["best_detection"][k]], shard_index, offsets)[0])
            )
            cols["emb"].append(embs[k])
    if stale:
        logger.warning(
            "%s: %d track file(s) or track(s) do not match the loaded shards (left out): run "
            "`python -m ian_d2.search tracks INDEX`",
            index_dir,
            stale,
        )
    num_tracked = len(cols["source"])
    single = np.flatnonzero(track_of_row < 0)
    track_of_row[single] = num_tracked + np.arange(len(single))
    num = num_tracked + len(single)
    counts = np.bincount(track_of_row, minlength=num).astype(np.int64)
    first_time = np.full(num, np.inf)
    last_time = np.full(num, -np.inf)
    with np.errstate(invalid="ignore"):  # still images: NaN times, kept NaN
        np.minimum.at(first_time, track_of_row, time_s)
        np.maximum.at(last_time, track_of_row, time_s)
    first_frame = np.full(num, np.iinfo(np.int32).max, np.int64)
    last_frame = np.full(num, -(2**31), np.int64)
    np.minimum.at(first_frame, track_of_row, frame)
    np.maximum.at(last_frame, track_of_row, frame)
    d = emb.shape[1] if emb.ndim == 2 else 0
    track_emb = np.concatenate(
        [np.asarray(cols["emb"], np.float32).reshape(-1, d), emb[single].astype(np.float32)]
    )
    return TrackLookup(
        track_of_row=track_of_row,
        tracked=np.r_[np.ones(num_tracked, bool), np.zeros(len(single), bool)],
        source=cols["source"] + [None] * len(single),
        number=np.r_[np.asarray(cols["number"], np.int32), np.full(len(single), -1, np.int32)],
        first_frame=first_frame.astype(np.int32),
        last_frame=last_frame.astype(np.int32),
        first_time=np.where(np.isinf(first_time), np.nan, first_time),
        last_time=np.where(np.isinf(last_time), np.nan, last_time),
        num_detections=counts,
        best_row=np.r_[np.asarray(cols["best"], np.int64), single],
        emb=track_emb,
        untracked_video_rows=int((np.asarray(frame)[single] >= 0).sum()),
    )
