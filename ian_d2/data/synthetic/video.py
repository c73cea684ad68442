"""Synthetic surveillance videos: people walking through two street cameras.

Two cameras (``cam1.avi`` and ``cam2.avi``, Motion-JPEG in AVI) watch two different streets,
each with its own backdrop, static clutter and colour cast, at the same frame rate and size.
Pedestrians drawn with the appearance code of the image generators walk along straight or gently
curved paths on the ground plane, so their image size and speed follow the perspective of the
backdrop; their legs and arms swing with the distance walked; they are depth-sorted with each
other and with the clutter, and enter and leave the frame. Several identities walk through both
cameras (crossing the middle of cam2's view later than that of cam1), the others through one
camera only. A person looks exactly the same in every frame and both cameras, up to pose, scale,
position, the camera's colour cast and a little sensor noise.

Files written under ``out_dir``::

    cam1.avi, cam2.avi   MJPG in AVI, ``fps`` frames per second, ``frame_size`` pixels
    annotations.json     {"fps", "frame_size": [W, H], "cameras": {"cam1": {"file",
                         "num_frames", "frames": [[{"person_id", "box", "visible"}, ...], ...]},
                         "cam2": ...}, "identities": {"<id>": {"cameras", "planned_cameras",
                         "tracks": {cam: {"first_frame", "last_frame", "num_frames"}},
                         "appearance"}}, plus "timestamps", "seed", "size", "min_visible"
                         and, with an occluder, "occluder": {"box", "cameras"}}, with
                         passes > 1, "passes"

A box is the pixel XYXY extent (x2, y2 exclusive) of the drawn figure, clipped to the frame;
``visible`` is the fraction of the figure's pixels that are in the frame and not hidden by clutter
or other people; persons less than ``min_visible`` (30%) visible are left out of that frame. The
frame ``i`` of a video is at time ``i / fps`` seconds. Same seed -> identical annotations and
identical decoded frames (and, with OpenCV's built-in MJPG encoder, identical files).

This module casts the identities, films each camera and writes the annotations; the parts live
in :mod:`.video_config` (settings and presets), :mod:`.video_camera` (each camera's street, colour
cast and projection), :mod:`.video_motion` (the walks), :mod:`.video_render` (the frames and
their boxes) and :mod:`.video_writer` (the AVI files).
"""

import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from .identities import Appearance, sample_identities
from .video_camera import Camera, make_camera, occluder_columns
from .video_config import PASS_GAP_S, VIDEO_CAMERAS, VideoConfig, make_video_config
from .video_motion import plan_tracks
from .video_render import render_camera
from .video_writer import open_video_writer

__all__ = [
    "VideoConfig",
    "VIDEO_CAMERAS",
    "PASS_GAP_S",
    "make_video_config",
    "occluder_columns",
    "generate_video",
    "open_video_writer",
]

logger = logging.getLogger(__name__)

_ATTEMPTS = 5  # plans of a camera's walks before accepting one where someone is hardly visible


def generate_video(
    out_dir: str, *, size: str = "tiny", seed: int = 0, **overrides: Any
) -> Dict[str, Any]:
    """Render two synthetic camera videos of people walking, with per-frame person boxes.

    Args:
        out_dir: Output folder (created); ``cam1.avi``, ``cam2.avi`` and ``annotations.json``
            are written there (overwritten if present).
        size: "tiny" (320x240, 3 s, 4 identities), "small" (640x360, 8 s, 6 identities) or
            "default" (640x360, 10 s, 10 identities); all at 10 fps.
        seed: Random seed; the same seed gives identical annotations and decoded frames.
        **overrides: Fields of :class:`VideoConfig` (e.g. ``frame_size``, ``fps``,
            ``num_frames``, ``num_identities``, ``num_shared``), or ``duration`` in seconds.

    Returns:
        Summary: ``out_dir``, ``files``, ``fps``, ``frame_size``, ``frames`` (per camera),
        ``duration_s``, ``identities``, ``identities_per_camera``, ``shared_identities``,
        ``shared_ids``, ``boxes``, ``boxes_per_camera``, ``max_persons_per_frame``, ``seconds``.

    Raises:
        ValueError: For bad settings (see :func:`make_video_config`).
        RuntimeError: When OpenCV cannot write MJPG in AVI.
    """
    start = time.perf_counter()
    cfg = make_video_config(size, **overrides)
    W, H = cfg.frame_size
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([int(seed), 303])
    apps, orders = _cast(rng, cfg)
    cams = [make_camera(rng, name, cfg) for name in VIDEO_CAMERAS]

    cameras_json: Dict[str, Any] = {}
    files = []
    for ci, cam in enumerate(cams):
        path = os.path.join(out_dir, f"{cam.name}.avi")
        frames = _film(cam, ci, orders[cam.name], apps, cfg, path, seed)
        files.append(path)
        cameras_json[cam.name] = {
            "file": os.path.basename(path),
            "num_frames": cfg.num_frames,
            "frames": frames,
        }

    anno = {
        "fps": cfg.fps,
        "frame_size": [W, H],
        "timestamps": "frame index / fps (seconds)",
        "seed": int(seed),
        "size": size,
        "min_visible": cfg.min_visible,
        "cameras": cameras_json,
        "identities": _identities_json(apps, orders, cameras_json, cfg),
    }
    if cfg.occluder > 0:  # only then: the default annotations stay as they were
        x0, x1 = occluder_columns(cfg)
        anno["occluder"] = {"box": [x0, 0, x1, H], "cameras": list(VIDEO_CAMERAS)}
    if cfg.passes > 1:  # likewise
        anno["passes"] = int(cfg.passes)
    anno_path = os.path.join(out_dir, "annotations.json")
    with open(anno_path, "w", encoding="utf-8") as f:
        json.dump(anno, f, indent=1)
        f.write("\n")
    files.append(anno_path)
    return _summary(out_dir, files, cfg, cameras_json, time.perf_counter() - start)


def _cast(
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


def _film(
    cam: Camera,
    ci: int,
    order: List[int],
    apps: Dict[int, Appearance],
    cfg: VideoConfig,
    path: str,
    seed: int,
) -> List[List[Dict[str, Any]]]:
    """Plan the walks of ``order`` (``cfg.passes`` times over) through ``cam``, render them and
    write the video to ``path``; returns the annotations of each frame.

    A planned identity must be visible enough in a few frames; otherwise the camera's walks are
    planned again (derived seed) and it is rendered again, up to ``_ATTEMPTS`` plans.
    """
    min_frames = max(2, min(5, cfg.num_frames // 6))
    walks = order * int(cfg.passes)
    for attempt in range(_ATTEMPTS):
        plan_rng = np.random.default_rng([int(seed), 305, ci, attempt])
        tracks = plan_tracks(plan_rng, cam, walks, cfg)
        frames = render_camera(cam, tracks, ci, apps, cfg, path, seed)
        counts = {pid: 0 for pid in order}
        for fr in frames:
            for a in fr:
                counts[a["person_id"]] += 1
        short = sorted(pid for pid, c in counts.items() if c < min_frames)
        if not short:
            break
        logger.debug("%s, attempt %d: identities %s hardly visible", cam.name, attempt, short)
    return frames


def _identities_json(
    apps: Dict[int, Appearance],
    orders: Dict[str, List[int]],
    cameras_json: Dict[str, Any],
    cfg: VideoConfig,
) -> Dict[str, Any]:
    """The ``identities`` of annotations.json: per identity, the cameras it is seen in, those
    it was planned for, its first and last annotated frame per camera, and its appearance."""
    identities: Dict[str, Any] = {}
    for pid in sorted(apps):
        seen = {}
        for name, cj in cameras_json.items():
            idx = [i for i, fr in enumerate(cj["frames"]) if any(a["person_id"] == pid for a in fr)]
            if idx:
                seen[name] = {"first_frame": idx[0], "last_frame": idx[-1], "num_frames": len(idx)}
        planned = [n for n in VIDEO_CAMERAS if pid in orders[n]]
        for name in planned:
            if name not in seen:
                logger.warning(
                    "Identity %d is never visible enough in %s (at least %.0f%%)",
                    pid,
                    name,
                    100 * cfg.min_visible,
                )
        identities[str(pid)] = {
            "cameras": sorted(seen),
            "planned_cameras": planned,
            "tracks": seen,
            "appearance": _appearance_json(apps[pid]),
        }
    return identities


def _appearance_json(app: Appearance) -> Dict[str, Any]:
    """An appearance as JSON (tuples as lists)."""
    d = dataclasses.asdict(app)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _summary(
    out_dir: str,
    files: List[str],
    cfg: VideoConfig,
    cameras_json: Dict[str, Any],
    seconds: float,
) -> Dict[str, Any]:
    """The summary :func:`generate_video` returns."""
    per_cam = {
        n: sorted({a["person_id"] for fr in cj["frames"] for a in fr})
        for n, cj in cameras_json.items()
    }
    both = sorted(set(per_cam["cam1"]) & set(per_cam["cam2"]))
    boxes = {n: sum(len(fr) for fr in cj["frames"]) for n, cj in cameras_json.items()}
    return {
        "out_dir": out_dir,
        "files": [os.path.basename(p) for p in files],
        "fps": cfg.fps,
        "frame_size": list(cfg.frame_size),
        "frames": {n: cj["num_frames"] for n, cj in cameras_json.items()},
        "duration_s": round(cfg.duration, 3),
        "identities": len(set(per_cam["cam1"]) | set(per_cam["cam2"])),
        "identities_per_camera": {n: len(v) for n, v in per_cam.items()},
        "shared_identities": len(both),
        "shared_ids": both,
        "boxes": sum(boxes.values()),
        "boxes_per_camera": boxes,
        "max_persons_per_frame": max(
            len(fr) for cj in cameras_json.values() for fr in cj["frames"]
        ),
        "seconds": round(seconds, 2),
    }
