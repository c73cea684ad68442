"""Casting of the synthetic videos: who walks through which camera, and in which order.

:func:`cast_two_cameras` is the source site's two-camera cast (the shared identities cross
cam1 early and cam2 later); :func:`cast_cameras` casts any number of cameras: each shared
identity walks a route through two or three of them (never all, when there are more than
three), the others through one camera each.

At the target site the identities come from their own random stream and wear its palette
(:data:`.video_site.TARGET_PALETTE`); the stream is one sequence of distinct appearances per
seed, dealt out to the footage sets of that seed in turn (footage ``f`` gets the appearances
``f``, ``f + MAX_FOOTAGE``, ...), so that footage sets of one seed never share an identity,
whatever their sizes.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .identities import Appearance, sample_identities
from .video_config import MAX_FOOTAGE, VideoConfig
from .video_site import TARGET_PALETTE, TARGET_STREAM

__all__ = ["cast_two_cameras", "cast_cameras", "target_identities"]

_ROUTE_STEP = 0.04  # fraction of the video between the walks of a route through two cameras


def cast_two_cameras(
    rng: np.random.Generator, cfg: VideoConfig
) -> Tuple[Dict[int, Appearance], Dict[str, List[int]]]:
    """The identities ({person id: appearance}) and, per camera, those who walk through it in
    order of time (the shared identities in both cameras, the rest split between them)."""
    n_ids, n_shared = cfg.num_identities, cfg.num_shared
    apps = dict(zip(range(1, n_ids + 1), sample_identities(rng, n_ids)))
    ids = [int(v) for v in rng.permutation(np.arange(1, n_ids + 1))]
    shared = ids[:n_shared]
    rest = ids[n_shared:]
    own = {"cam1": rest[: (len(rest) + 1) // 2], "cam2": rest[(len(rest) + 1) // 2 :]}
    # Shared identities cross the middle of cam1 early and of cam2 later, in the same order.
    orders = {
        "cam1": shared + [int(v) for v in rng.permutation(own["cam1"])],
        "cam2": [int(v) for v in rng.permutation(own["cam2"])] + shared,
    }
    return apps, orders


def target_identities(seed: int, footage: int, n: int) -> List[Appearance]:
    """The ``n`` identities of footage set ``footage`` of the target site for ``seed``.

    Returns:
        ``n`` appearances of :data:`.video_site.TARGET_PALETTE`, disjoint (signatures and
        all) from those of every other footage set of the seed.
    """
    rng = np.random.default_rng([int(seed), 303, TARGET_STREAM])
    pool = sample_identities(rng, MAX_FOOTAGE * n, palette=TARGET_PALETTE)
    return pool[footage::MAX_FOOTAGE]


def cast_cameras(
    rng: np.random.Generator, cfg: VideoConfig, apps: Sequence[Appearance]
) -> Tuple[Dict[int, Appearance], Dict[str, List[int]]]:
    """Cast ``apps`` (person ids 1..N in this order) over the cameras of ``cfg``.

    Each of ``cfg.num_shared`` identities (chosen at random) walks a route through two cameras
    or, with four cameras or more, two or three (a random order of cameras, one walk after the
    other); the others walk through one camera each. Each camera's walks are in order of the
    time their route reaches it.

    Returns:
        ({person id: appearance}, {camera: person ids in order of time}).
    """
    names = cfg.cameras
    n_cam = len(names)
    n_ids = len(apps)
    most = 2 if n_cam <= 3 else 3
    ids = [int(v) for v in rng.permutation(np.arange(1, n_ids + 1))]
    when: Dict[str, List[Tuple[float, int]]] = {c: [] for c in names}
    for k, pid in enumerate(ids):
        start = float(rng.uniform(0.0, 1.0))
        if k < cfg.num_shared:
            n_route = int(rng.integers(2, most + 1))
            route = [int(c) for c in rng.choice(n_cam, size=n_route, replace=False)]
        else:
            route = [int(rng.integers(n_cam))]
        for j, c in enumerate(route):
            when[names[c]].append(((start + j * _ROUTE_STEP) % 1.0, pid))
    orders = {c: [pid for _, pid in sorted(w)] for c, w in when.items()}
    return dict(zip(range(1, n_ids + 1), apps)), orders
