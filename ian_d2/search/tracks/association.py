"""Re-linking motion tracks with the model's embeddings (one video at a time).

A motion tracker associates by boxes only: a person hidden for a while (an occluder, a missed
detection, a sampling gap longer than its lost-track budget) comes back as a new track. Two
motion tracks of a video are linked into one track when

* the first ends before the second starts (``end_a < start_b``), within ``max_gap_s`` seconds;
* the cosine similarity of their mean embeddings (L2-normalised) is at least ``min_similarity``;
* the second starts where the first could have walked to: the distance between the centre of the
  last box of the first and that of the first box of the second is at most
  ``(max_speed * gap + 1)`` box heights (the mean height of the two boxes).

Links are made greedily, the most similar pair first; each motion track gets at most one
predecessor and one successor, so a track is a chain of motion tracks in time order, and two
motion tracks that overlap in time are never in one track (checked again on every merge).

Shape shorthand: n detections of the video, m motion tracks, D embedding dimension.
"""

import logging
from typing import List

import numpy as np

__all__ = ["link_tracks"]

logger = logging.getLogger(__name__)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def link_tracks(
    labels: np.ndarray,
    times: np.ndarray,
    boxes: np.ndarray,
    embeds: np.ndarray,
    *,
    min_similarity: float = 0.7,
    max_gap_s: float = 5.0,
    max_speed: float = 3.0,
) -> np.ndarray:
    """
    Link the motion tracks of one video whose embeddings agree.

    Args:
        labels: [n] int motion track label of each detection (0 .. m - 1).
        times: [n] float time of each detection's frame, seconds.
        boxes: [n, 4] XYXY boxes.
        embeds: [n, D] embeddings (L2-normalised).
        min_similarity, max_gap_s, max_speed: see the module docstring.

    Returns:
        np.ndarray: [n] int64 track label of each detection (0, 1, ...: numbered in the order
        of the tracks' first detection in time, then of their smallest motion label).
    """
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    if n == 0:
        return labels.copy()
    times = np.asarray(times, np.float64)
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    m = int(labels.max()) + 1
    start = np.full(m, np.inf)
    end = np.full(m, -np.inf)
    np.minimum.at(start, labels, times)
    np.maximum.at(end, labels, times)
    sums = np.zeros((m, embeds.shape[1]), np.float64)
    np.add.at(sums, labels, embeds)
    means = _normalise(sums)
    # the first / last box of each motion track (the last detection at its start / end time)
    first_box = np.zeros((m, 4))
    last_box = np.zeros((m, 4))
    for i in np.lexsort((np.arange(n), times))[::-1]:  # latest last: the first box wins
        first_box[labels[i]] = boxes[i]
    for i in np.lexsort((np.arange(n), times)):
        last_box[labels[i]] = boxes[i]

    pairs = []
    sims = means @ means.T
    for a in range(m):
        for b in np.flatnonzero((start > end[a]) & (start - end[a] <= max_gap_s)):
            s = float(sims[a, b])
            if s < min_similarity:
                continue
            gap = float(start[b] - end[a])
            ca = (last_box[a, :2] + last_box[a, 2:]) / 2
            cb = (first_box[b, :2] + first_box[b, 2:]) / 2
            height = max(
                1.0, ((last_box[a, 3] - last_box[a, 1]) + (first_box[b, 3] - first_box[b, 1])) / 2
            )
            if np.linalg.norm(cb - ca) > (max_speed * gap + 1.0) * height:
                continue
            pairs.append((-s, gap, a, int(b)))
    pairs.sort()

    successor = np.full(m, -1)
    predecessor = np.full(m, -1)
    group = list(range(m))  # union-find
    spans: List[List[tuple]] = [[(start[k], end[k])] for k in range(m)]

    def root(k):
        while group[k] != k:
            group[k] = group[group[k]]
            k = group[k]
        return k

    for _, _, a, b in pairs:
        if successor[a] >= 0 or predecessor[b] >= 0:
            continue
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        if any(s1 <= e2 and s2 <= e1 for s1, e1 in spans[ra] for s2, e2 in spans[rb]):
            continue  # never one track for two motion tracks that overlap in time
        successor[a], predecessor[b] = b, a
        group[rb] = ra
        spans[ra] += spans[rb]
    roots = np.asarray([root(k) for k in range(m)])
    linked = roots[labels]
    # number the tracks by their first detection in time
    out = np.full(n, -1, np.int64)
    names = {}
    for i in np.lexsort((labels, np.arange(n), times)):
        out[i] = names.setdefault(int(linked[i]), len(names))
    logger.debug("Linked %d motion tracks into %d tracks", m, len(names))
    return out
