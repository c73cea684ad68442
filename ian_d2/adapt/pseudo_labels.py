"""Pseudo identities of unlabeled detections, for fine-tuning on a user's footage (issue 28).

:func:`assign_pseudo_identities` labels the N detections of an index (their embeddings, the track
each belongs to, the frame each is in) in one of three modes:

* ``tracks``: each track of at least ``min_track_len`` detections is one identity (a track is
  one person: must-link); every other detection is an outlier (-1).
* ``clusters``: DBSCAN over the k-reciprocal Jaccard distance of the detections
  (:mod:`.jaccard`; SpCL / DAPS), no track information; cannot-link enforced.
* ``both``: tracks are must-links. The nodes clustered are the tracks (a track's mean
  embedding, L2-normalised) and the detections without a track (a node each); DBSCAN runs on the
  nodes' Jaccard distance, and a node's label goes to all its detections. A noise node that is a
  track of at least ``min_track_len`` detections stays an identity of its own
  (``keep_noise_tracks``); other noise detections are outliers. Cannot-link enforced.

``k1`` and ``k2`` count the points clustered: detections in ``clusters``, nodes in ``both``
(where a small index, a few hundred tracks, may want a smaller ``k1``: see :mod:`.jaccard`).
``min_samples`` is counted in **detections** in every mode: a node weighs the detections it
stands for, so a track of ``min_samples`` detections is a core point by itself (one person seen
that often is dense evidence), and two such tracks within ``eps`` of each other join. Counted in
nodes, a person seen in fewer than ``min_samples`` tracks (most people of a short clip) could
never be merged across cameras.

Cannot-link: two detections of one frame are two people. A cluster that holds two of one frame
is split greedily: its units (tracks and single detections in ``both``, detections in
``clusters``), in order of decreasing size, then decreasing cosine similarity to the cluster's
mean, then first row, each join the existing sub-identity that has no detection in their frames
and whose mean they are most similar to (ties: the earliest sub-identity), or open a new one.
A second pass places them again in the same order, the founders (the unit that opened each
sub-identity) first, each in its own: a unit placed before the conflict appeared (when one
sub-identity was all there was) moves to the sub-identity it resembles most. The first
sub-identity keeps the cluster; ``cannot_link_splits`` counts the others (sum over
clusters of sub-identities - 1). Every sub-identity is kept, however small. Since a track never
holds two detections of one frame (checked), no identity does afterwards.

Labels are contiguous 0..K-1, numbered by each identity's first row; the result is deterministic,
and independent of the order of the rows up to that numbering (exact ties aside, broken by index).

Track ids are global: one id is one track, whatever the source (combine the source into the id
before calling when ids restart per video). Frame keys identify a (source, frame).

Shape shorthand: N detections, D embedding dimension, M nodes (tracks and untracked detections).
"""

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
from scipy import sparse

from .jaccard import (
    EXPANSIONS,
    check_features,
    dbscan,
    k_reciprocal_jaccard,
    relabel_by_first_row,
)

__all__ = ["MODES", "PseudoLabels", "TRACKS_HINT", "assign_pseudo_identities", "tracklets"]

logger = logging.getLogger(__name__)

MODES = ("tracks", "clusters", "both")
TRACKS_HINT = "build tracks with python -m ian_d2.search tracks INDEX"


@dataclass
class PseudoLabels:
    """The pseudo identities of N detections.

    Attributes:
        labels: [N] int64, identities 0..K-1 (numbered by first row), -1 for an outlier.
        num_identities: K.
        num_outliers: the detections labelled -1.
        cluster_sizes: the detections of each identity, largest first (K ints).
        cannot_link_splits: the sub-identities split off clusters that held two detections of one
            frame (0 in ``tracks`` mode).
        mode: ``tracks``, ``clusters`` or ``both``.
        settings: the parameters the labels were made with (JSON types).
        num_nodes: the points clustered (``both``: tracks + untracked detections; ``clusters``:
            N; ``tracks``: the tracks kept).
        noise_tracks_kept: DBSCAN noise tracks kept as identities of their own (``both``).
    """

    labels: np.ndarray
    num_identities: int
    num_outliers: int
    cluster_sizes: List[int]
    cannot_link_splits: int
    mode: str
    settings: Dict[str, Any]
    num_nodes: int
    noise_tracks_kept: int = 0

    def summary(self) -> Dict[str, Any]:
        """A JSON-serialisable summary for a manifest (the labels themselves left out): counts,
        the settings and the histogram of identity sizes ({size as a string: identities})."""
        sizes = self.cluster_sizes
        histogram = Counter(sizes)
        return {
            "mode": self.mode,
            "num_detections": int(len(self.labels)),
            "num_identities": int(self.num_identities),
            "num_outliers": int(self.num_outliers),
            "num_nodes": int(self.num_nodes),
            "cannot_link_splits": int(self.cannot_link_splits),
            "noise_tracks_kept": int(self.noise_tracks_kept),
            "identity_size": {
                "min": int(min(sizes)) if sizes else 0,
                "median": float(np.median(sizes)) if sizes else 0.0,
                "max": int(max(sizes)) if sizes else 0,
            },
            "identity_size_histogram": {str(s): int(histogram[s]) for s in sorted(histogram)},
            "settings": dict(self.settings),
        }


def _check_ids(values, name: str, n: int) -> np.ndarray:
    """``values`` as int64 [n]; ``ValueError`` naming the shape or dtype otherwise."""
    a = np.asarray(values)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},): one per row of features")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _check_tracks(track_ids: np.ndarray, frame_keys: np.ndarray) -> None:
    """Track ids are >= -1 and a track holds at most one detection per frame."""
    low = np.flatnonzero(track_ids < -1)
    if low.size:
        i = int(low[0])
        raise ValueError(f"track_ids must be >= -1 (-1: no track), got {track_ids[i]} at row {i}")
    rows = np.flatnonzero(track_ids >= 0)
    pairs = np.stack([track_ids[rows], frame_keys[rows]], axis=1)
    _, first, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        track, frame = pairs[first[np.flatnonzero(counts > 1)[0]]]
        both = rows[(track_ids[rows] == track) & (frame_keys[rows] == frame)]
        raise ValueError(
            f"track {track} holds {len(both)} detections of frame {frame} (rows "
            f"{', '.join(map(str, both[:5]))}): a track is one person, one detection a frame"
        )


def _check_settings(mode, eps, min_samples, k1, k2, min_track_len, keep_noise_tracks) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.number)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a Jaccard distance in (0, 1), got {eps!r}")
    for name, value in (("min_samples", min_samples), ("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if k2 > k1 + 1:
        raise ValueError(f"k2 must be at most k1 + 1 = {k1 + 1}, got {k2}")
    if (
        isinstance(min_track_len, bool)
        or not isinstance(min_track_len, (int, np.integer))
        or min_track_len < 1
    ):
        raise ValueError(f"min_track_len must be an integer >= 1, got {min_track_len!r}")
    if not isinstance(keep_noise_tracks, (bool, np.bool_)):
        raise ValueError(f"keep_noise_tracks must be True or False, got {keep_noise_tracks!r}")


def _nodes(track_ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The nodes of ``both`` mode: each track (by increasing id), then each untracked detection
    (by row). Returns node_of_row [N] int64 and node_is_track [M] bool."""
    n = len(track_ids)
    tracked = track_ids >= 0
    _, inverse = np.unique(track_ids[tracked], return_inverse=True)
    num_tracks = int(inverse.max()) + 1 if inverse.size else 0
    node_of_row = np.empty(n, dtype=np.int64)
    node_of_row[tracked] = inverse.ravel()
    node_of_row[~tracked] = num_tracks + np.arange(int((~tracked).sum()))
    node_is_track = np.arange(num_tracks + int((~tracked).sum())) < num_tracks
    return node_of_row, node_is_track


def _node_sums(x: np.ndarray, node_of_row: np.ndarray, m: int) -> np.ndarray:
    """Sum of the float64 features of each node's rows, [M, D]."""
    n = len(node_of_row)
    member = sparse.csr_matrix((np.ones(n), (node_of_row, np.arange(n))), shape=(m, n))
    return np.asarray(member @ x.astype(np.float64))


def _normalise(sums: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of ``sums`` [M, D] scaled to norm 1 (``fallback`` rows where they vanish)."""
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    tiny = norms[:, 0] < 1e-6
    out = sums / np.where(tiny[:, None], 1.0, norms)
    out[tiny] = fallback[tiny]
    return out


def _place(
    ranked: np.ndarray, seeds: List[int], frames: List[set], unit: np.ndarray, sums: np.ndarray
) -> Tuple[List[int], np.ndarray]:
    """Greedy placement of a cluster's m units into sub-identities with no frame in common.

    The ``seeds`` each open a sub-identity first; then the units of ``ranked`` (the others) each
    join the sub-identity that shares no frame with them and whose mean is most similar to theirs
    (cosine; ties: the earliest), or open a new one.

    Args:
        ranked: [m] the order of the units; seeds: units opening the first sub-identities.
        frames: the frames of each unit; unit: [m, D] unit mean features; sums: [m, D] sums.

    Returns:
        the founders (the unit opening each sub-identity, in order) and [m] sub-identity of each.
    """
    where = np.full(len(ranked), -1, dtype=np.int64)
    founders: List[int] = []
    taken: List[set] = []
    totals: List[np.ndarray] = []
    seeded = set(seeds)
    for i in list(seeds) + [i for i in ranked.tolist() if i not in seeded]:
        best, best_sim = -1, -np.inf
        if i not in seeded:
            for j, total in enumerate(totals):
                if taken[j].isdisjoint(frames[i]):
                    sim = float(unit[i] @ total) / max(float(np.linalg.norm(total)), 1e-12)
                    if sim > best_sim:
                        best, best_sim = j, sim
        if best < 0:
            best = len(founders)
            founders.append(i)
            taken.append(set())
            totals.append(np.zeros_like(sums[i]))
        taken[best] |= frames[i]
        totals[best] = totals[best] + sums[i]
        where[i] = best
    return founders, where


def _split_cannot_link(
    node_labels: np.ndarray,
    node_of_row: np.ndarray,
    frame_keys: np.ndarray,
    sums: np.ndarray,
    unit: np.ndarray,
) -> Tuple[np.ndarray, int]:
    """Split every cluster that holds two detections of one frame (see the module docstring).

    Args:
        node_labels: [M] cluster of each node (-1: none).
        node_of_row: [N] node of each detection; frame_keys: [N] its frame.
        sums: [M, D] float64 sum of each node's features; unit: [M, D] their L2-normalised mean.

    Returns:
        the new node labels [M] (split-off parts numbered after the existing clusters) and the
        number of sub-identities split off.
    """
    row_labels = node_labels[node_of_row]
    rows = np.flatnonzero(row_labels >= 0)
    pairs = np.stack([row_labels[rows], frame_keys[rows]], axis=1)
    _, first_pair, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    if not (counts > 1).any():
        return node_labels, 0
    conflicted = np.unique(pairs[first_pair[counts > 1], 0])
    order = np.argsort(node_of_row, kind="stable")
    starts = np.searchsorted(node_of_row[order], np.arange(len(node_labels) + 1))
    out = node_labels.copy()
    next_label = int(node_labels.max()) + 1
    splits = 0
    for cluster in conflicted:
        nodes = np.flatnonzero(node_labels == cluster)
        members = [order[starts[u] : starts[u + 1]] for u in nodes]
        sizes = np.array([len(r) for r in members])
        centre = sums[nodes].sum(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        first_rows = np.array([r.min() for r in members])
        ranked = np.lexsort((first_rows, -(unit[nodes] @ centre), -sizes))
        frames = [set(frame_keys[r].tolist()) for r in members]
        founders, _ = _place(ranked, [], frames, unit[nodes], sums[nodes])
        founders, subs = _place(ranked, founders, frames, unit[nodes], sums[nodes])
        for j in range(1, len(founders)):
            out[nodes[subs == j]] = next_label
            next_label += 1
        splits += len(founders) - 1
    logger.info(
        "cannot-link: %d clusters held two detections of one frame, split into %d more",
        len(conflicted),
        splits,
    )
    return out, splits


def tracklets(track_ids, frames, max_len: int) -> np.ndarray:
    """Tracks cut into consecutive pieces of at most ``max_len`` detections (in frame order).

    A tracker on sparse or crowded footage switches identities inside a track; a short piece of
    a track is far purer than the whole (on the measurement's target site at 2 frames a second:
    pairs of consecutive detections of a track 86 % one person, whole tracks 55 %:
    docs/ADAPT.md), so the must-links of ``tracks`` and ``both`` are safer between tracklets.

    Args:
        track_ids: [N] int global track of each detection (-1: none).
        frames: [N] int the frame of each detection in its video (the order within a track).
        max_len: the longest piece; 0 keeps the tracks whole.

    Returns:
        [N] int64 tracklet ids (global, numbered by track then time; -1 kept).
    """
    track_ids = np.asarray(track_ids, dtype=np.int64)
    frames = np.asarray(frames, dtype=np.int64)
    if track_ids.shape != frames.shape:
        raise ValueError(f"track_ids {track_ids.shape} and frames {frames.shape} differ in shape")
    if int(max_len) < 0:
        raise ValueError(f"the tracklet length must be >= 0 (0: whole tracks), got {max_len}")
    if int(max_len) == 0:
        return track_ids.copy()
    out = np.full_like(track_ids, -1)
    rows = np.flatnonzero(track_ids >= 0)
    order = rows[np.lexsort((rows, frames[rows], track_ids[rows]))]
    tracks = track_ids[order]
    start = np.r_[True, tracks[1:] != tracks[:-1]]
    position = np.arange(len(order)) - np.maximum.accumulate(
        np.where(start, np.arange(len(order)), 0)
    )
    new_piece = start | (position % int(max_len) == 0)
    out[order] = np.cumsum(new_piece) - 1
    return out


def assign_pseudo_identities(
    features,
    track_ids,
    frame_keys,
    mode: str = "both",
    eps: float = 0.6,
    min_samples: int = 4,
    k1: int = 20,
    k2: int = 6,
    min_track_len: int = 2,
    keep_noise_tracks: bool = True,
    expansion: str = "mutual",
) -> PseudoLabels:
    """Pseudo identities of N detections (see the module docstring for the modes and rules).

    Args:
        features: [N, D] float, L2-normalised embeddings (checked: finite, norm 1 within 1e-3).
        track_ids: [N] int, the track of each detection (global ids), -1 for none.
        frame_keys: [N] int, an id of the (source, frame) each detection is in.
        mode: ``tracks``, ``clusters`` or ``both``.
        eps: DBSCAN radius, a k-reciprocal Jaccard distance in (0, 1).
        min_samples: DBSCAN core weight, counted in detections (a node weighs its detections).
        k1, k2: the k-reciprocal neighbours and the query expansion of the Jaccard distance.
        min_track_len: the detections a track needs to be an identity by itself (``tracks``; a
            noise track kept in ``both``).
        keep_noise_tracks: in ``both``, keep a DBSCAN noise track of at least ``min_track_len``
            detections as an identity of its own (else its detections are outliers).
        expansion: the query expansion of the Jaccard distance (``mutual`` or ``knn``, the
            paper's; :func:`~.jaccard.k_reciprocal_jaccard`).

    Returns:
        :class:`PseudoLabels`.

    Raises:
        ValueError: naming the value, for inputs that disagree in shape, features not finite or
            not L2-normalised, bad settings, too few detections to cluster (fewer than
            ``min_samples``), no track long enough in ``tracks`` mode, or a track holding two
            detections of one frame.
    """
    _check_settings(mode, eps, min_samples, k1, k2, min_track_len, keep_noise_tracks)
    if expansion not in EXPANSIONS:
        raise ValueError(f"expansion must be one of {EXPANSIONS}, got {expansion!r}")
    x = check_features(features)
    n = x.shape[0]
    track_ids = _check_ids(track_ids, "track_ids", n)
    frame_keys = _check_ids(frame_keys, "frame_keys", n)
    settings = {
        "mode": mode,
        "eps": float(eps),
        "min_samples": int(min_samples),
        "min_samples_unit": "detections",
        "k1": int(k1),
        "k2": int(k2),
        "min_track_len": int(min_track_len),
        "keep_noise_tracks": bool(keep_noise_tracks),
        "expansion": expansion,
    }
    if mode != "clusters":
        _check_tracks(track_ids, frame_keys)
    else:
        track_ids = np.full(n, -1, dtype=np.int64)  # no track information
    node_of_row, node_is_track = _nodes(track_ids)
    m = len(node_is_track)
    node_sizes = np.bincount(node_of_row, minlength=m)
    long_track = node_is_track & (node_sizes >= min_track_len)
    splits = kept = 0
    if mode == "tracks":
        if not long_track.any():
            raise ValueError(
                f"mode 'tracks' needs a track of at least min_track_len={min_track_len} "
                f"detections; the {n} rows hold {int(node_is_track.sum())} tracks, none that "
                f"long: {TRACKS_HINT}"
            )
        node_labels = np.where(long_track, np.arange(m), -1)
        num_nodes = int(long_track.sum())
    else:
        if n < min_samples:
            raise ValueError(
                f"{n} detections are too few to cluster with min_samples={min_samples}: "
                f"need at least {min_samples} rows"
            )
        sums = _node_sums(x, node_of_row, m)
        first_row = np.full(m, n, dtype=np.int64)
        np.minimum.at(first_row, node_of_row, np.arange(n))
        unit = _normalise(sums, x[first_row].astype(np.float64))
        distances = k_reciprocal_jaccard(unit.astype(np.float32), k1, k2, expansion)
        node_labels = dbscan(distances, eps, min_samples, weights=node_sizes)
        node_labels, splits = _split_cannot_link(node_labels, node_of_row, frame_keys, sums, unit)
        rescued = (node_labels < 0) & long_track
        if keep_noise_tracks and rescued.any():
            start = int(node_labels.max(initial=-1)) + 1
            node_labels[rescued] = start + np.arange(int(rescued.sum()))
            kept = int(rescued.sum())
        num_nodes = m
    labels = relabel_by_first_row(node_labels[node_of_row])
    num_identities = int(labels.max(initial=-1)) + 1
    sizes = sorted(np.bincount(labels[labels >= 0], minlength=num_identities).tolist())[::-1]
    result = PseudoLabels(
        labels=labels,
        num_identities=num_identities,
        num_outliers=int((labels < 0).sum()),
        cluster_sizes=sizes,
        cannot_link_splits=int(splits),
        mode=mode,
        settings=settings,
        num_nodes=num_nodes,
        noise_tracks_kept=kept,
    )
    logger.info(
        "pseudo identities (%s) of %d detections: %d identities, %d outliers, %d cannot-link "
        "splits, %d noise tracks kept",
        mode,
        n,
        result.num_identities,
        result.num_outliers,
        splits,
        kept,
    )
    return result
