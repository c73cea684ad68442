"""Ranking by track: one hit per track (pure numpy, exact).

Two orders (``rank_by``):

* ``best``: a track's similarity is that of its most similar detection (among the rows that pass
  the filters): the per-detection ranking with every track's other detections folded away;
* ``mean``: a track's similarity is that of its mean embedding (L2-normalised); tracks with at
  least one row passing the filters take part.

The hit of a track is its most similar detection that passes the filters. Order: similarity
descending, then the hit's row ascending (pages concatenate to the unpaged ranking).

Shape shorthand: N stored rows, T tracks, D embedding dimension, P page size.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .lookup import TrackLookup

__all__ = ["RANK_BY", "TrackRanking", "rank_tracks"]

RANK_BY = ("best", "mean")


@dataclass
class TrackRanking:
    """
    Attributes:
        tracks: [P] int64 the tracks of the page, best first.
        rows: [P] int64 their hit rows (most similar detection passing the filters).
        similarities: [P] float32 their similarities (by ``rank_by``).
        total: tracks with a row passing the filters (and ``min_similarity``).
    """

    tracks: np.ndarray
    rows: np.ndarray
    similarities: np.ndarray
    total: int


def rank_tracks(
    lookup: TrackLookup,
    emb: np.ndarray,
    query: np.ndarray,
    mask: Optional[np.ndarray] = None,
    *,
    rank_by: str = "best",
    top_k: int = 10,
    offset: int = 0,
    min_similarity: Optional[float] = None,
) -> TrackRanking:
    """
    One page of the tracks ranked for a query embedding.

    Args:
        lookup: the tracks of the rows.
        emb: [N, D] row embeddings (L2-normalised; or any object with ``len``, ``emb[rows]``
            and ``emb @ query``, e.g. the service's served matrix); query: [D].
        mask: [N] bool rows that may be hits (None: all).
        rank_by: "best" or "mean" (module docstring).
        top_k, offset: the page.
        min_similarity: tracks below it are left out.
    """
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}, not {rank_by!r}")
    q = np.asarray(query, np.float32).reshape(-1)
    if mask is None:  # no copy of the matrix (a memory map or the service's served matrix)
        rows, sims = np.arange(len(emb), dtype=np.int64), emb @ q
    else:
        rows = np.flatnonzero(mask)
        sims = emb[rows] @ q
    tracks = lookup.track_of_row[rows]
    # the most similar row of each track: sort by (track, -similarity, row), first of each
    order = np.lexsort((rows, -sims.astype(np.float64), tracks))
    first = np.r_[True, tracks[order][1:] != tracks[order][:-1]] if len(order) else order
    hit = order[first]
    t, r, s = tracks[hit], rows[hit], sims[hit]
    if rank_by == "mean":
        s = lookup.emb[t] @ q
    if min_similarity is not None:
        keep = s >= np.float32(min_similarity)
        t, r, s = t[keep], r[keep], s[keep]
    ranked = np.lexsort((r, -s.astype(np.float64)))
    page = ranked[offset : offset + top_k]
    return TrackRanking(t[page], r[page], s[page].astype(np.float32), len(t))
