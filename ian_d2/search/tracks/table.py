"""The per-track table of one video: one row per track, as a Parquet file.

Columns (readable with pandas / pyarrow alone):

=================  ==========================  ===============================================
column             type                        content
=================  ==========================  ===============================================
source             string                      absolute path of the video
track              int32                       the track's number in its video (0, 1, ... by
                                               first appearance)
first_frame        int32                       frame number of its first detection
last_frame         int32                       ... of its last detection
first_time_s       float64                     time of its first detection, seconds
last_time_s        float64                     ... of its last detection
num_detections     int32                       its detections
num_motion_tracks  int32                       the motion tracks linked into it (1: none)
best_detection     string                      detection id of its highest-scoring detection
best_score         float32                     that detection's score
embedding          fixed_size_list<float32>[D]  mean of its embeddings, L2-normalised
detections         list<string>                its detection ids, in time order
=================  ==========================  ===============================================

A detection id is ``<shard stem>.<row in the shard>`` (as in the search service); the track of
a detection is the row whose ``detections`` holds its id
(``table.to_pandas().explode("detections")``).

Shape shorthand: n detections of the video, T tracks, D embedding dimension.
"""

from typing import Dict, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["TRACK_COLUMNS", "track_table"]

TRACK_COLUMNS = (
    "source",
    "track",
    "first_frame",
    "last_frame",
    "first_time_s",
    "last_time_s",
    "num_detections",
    "num_motion_tracks",
    "best_detection",
    "best_score",
    "embedding",
    "detections",
)


def track_table(
    source: str,
    detection_ids: Sequence[str],
    frames: np.ndarray,
    times: np.ndarray,
    scores: np.ndarray,
    embeds: np.ndarray,
    labels: np.ndarray,
    motion_labels: np.ndarray,
) -> pa.Table:
    """
    The per-track table of one video.

    Args:
        source: the video's path.
        detection_ids: [n] detection ids.
        frames: [n] frame numbers; times: [n] seconds; scores: [n] detection scores.
        embeds: [n, D] embeddings.
        labels: [n] track of each detection (0 .. T - 1).
        motion_labels: [n] motion track of each detection.

    Returns:
        pa.Table: T rows, the columns of :data:`TRACK_COLUMNS`.
    """
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    d = int(np.asarray(embeds).reshape(n, -1).shape[1]) if n else int(np.asarray(embeds).shape[-1])
    num = int(labels.max()) + 1 if n else 0
    order = np.lexsort((np.arange(n), np.asarray(times, np.float64), labels))
    bounds = np.searchsorted(labels[order], np.arange(num + 1))
    cols: Dict[str, list] = {k: [] for k in TRACK_COLUMNS if k != "embedding"}
    means = np.zeros((num, d), np.float32)
    scores = np.asarray(scores, np.float32)
    for k in range(num):
        rows = order[bounds[k] : bounds[k + 1]]
        best = rows[int(np.argmax(scores[rows]))]  # the first of the ties (time order)
        mean = np.asarray(embeds, np.float64)[rows].mean(0)
        means[k] = mean / max(np.linalg.norm(mean), 1e-12)
        cols["source"].append(source)
        cols["track"].append(k)
        cols["first_frame"].append(int(frames[rows[0]]))
        cols["last_frame"].append(int(frames[rows[-1]]))
        cols["first_time_s"].append(float(times[rows[0]]))
        cols["last_time_s"].append(float(times[rows[-1]]))
        cols["num_detections"].append(len(rows))
        cols["num_motion_tracks"].append(len(np.unique(np.asarray(motion_labels)[rows])))
        cols["best_detection"].append(str(detection_ids[best]))
        cols["best_score"].append(float(scores[best]))
        cols["detections"].append([str(detection_ids[r]) for r in rows])
    types = {
        "source": pa.string(),
        "track": pa.int32(),
        "first_frame": pa.int32(),
        "last_frame": pa.int32(),
        "first_time_s": pa.float64(),
        "last_time_s": pa.float64(),
        "num_detections": pa.int32(),
        "num_motion_tracks": pa.int32(),
        "best_detection": pa.string(),
        "best_score": pa.float32(),
        "detections": pa.list_(pa.string()),
    }
    arrays = []
    for name in TRACK_COLUMNS:
        if name == "embedding":
            flat = pa.array(means.reshape(-1), type=pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, d))
        else:
            arrays.append(pa.array(cols[name], type=types[name]))
    return pa.Table.from_arrays(arrays, names=list(TRACK_COLUMNS))
