"""Synthetic surveillance videos: people walking through street cameras.

Two cameras (``cam1.avi`` and ``cam2.avi``, Motion-JPEG in AVI) watch two different streets,
each with its own backdrop, static clutter and colour cast, at the same frame rate and size.
Pedestrians drawn with the appearance code of the image generators walk along straight or gently
curved paths on the ground plane, so their image size and speed follow the perspective of the
backdrop; their legs and arms swing with the distance walked; they are depth-sorted with each
other and with the clutter, and enter and leave the frame. Several identities walk through both
cameras (crossing the middle of cam2's view later than that of cam1), the others through one
camera only. A person looks exactly the same in every frame and both cameras, up to pose, scale,
position, the camera's colour cast and a little sensor noise.

That is the **source site** (``site="source"``, the default), the look of the training data.
The **target site** (``site="target"``, :mod:`.video_site`) stands for a user's own footage:
four cameras or more (``num_cameras``) with strong casts, other lighting, blur, higher
viewpoints, other places, occluders, smaller persons, and a population of its own; most of its
identities walk through two or three of its cameras, ``passes`` times each. Its footage sets
(``footage`` 0-3) show the same cameras with disjoint identities.

Files written under ``out_dir``::

    cam1.avi, cam2.avi   MJPG in AVI, ``fps`` frames per second, ``frame_size`` pixels
    (... camN.avi)
    annotations.json     {"fps", "frame_size": [W, H], "cameras": {"cam1": {"file",
                         "num_frames", "frames": [[{"person_id", "box", "visible"}, ...], ...]},
                         "cam2": ...}, "identities": {"<id>": {"cameras", "planned_cameras",
                         "tracks": {cam: {"first_frame", "last_frame", "num_frames"}},
                         "appearance"}}, plus "timestamps", "seed", "size", "min_visible"
                         and, with an occluder, "occluder": {"box", "cameras"}}, with
                         passes > 1, "passes"; at the target site "site", "footage",
                         "looks" {cam: its SiteLook} and "occluders" {cam: [XYXY box, ...]}

A box is the pixel XYXY extent (x2, y2 exclusive) of the drawn figure, clipped to the frame;
``visible`` is the fraction of the figure's pixels that are in the frame and not hidden by clutter
or other people; persons less than ``min_visible`` (30%) visible are left out of that frame. The
frame ``i`` of a video is at time ``i / fps`` seconds. Same seed -> identical annotations and
identical decoded frames (and, with OpenCV's built-in MJPG encoder, identical files).

This module casts the identities, films each camera and writes the annotations; the parts live
in :mod:`.video_config` (settings and presets), :mod:`.video_cast` (who walks where),
:mod:`.video_camera` (each source camera's street, colour cast and projection),
:mod:`.video_site` (the target site's cameras), :mod:`.video_motion` (the walks),
:mod:`.video_render` (the frames and their boxes) and :mod:`.video_writer` (the AVI files).
"""

import dataclasses
import json
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .identities import Appearance, sample_identities
from .video_camera import Camera, make_camera, occluder_columns
from .video_cast import cast_cameras, cast_two_cameras, target_identities
from .video_config import PASS_GAP_S, VIDEO_CAMERAS, VideoConfig, make_video_config
from .video_motion import plan_tracks
from .video_render import render_camera
from .video_site import TARGET_STREAM, look_json, make_site_camera
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
    out_dir: str,
    *,
    size: str = "tiny",
    seed: int = 0,
    workers: Optional[int] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Render synthetic camera videos of people walking, with per-frame person boxes.

    Args:
        out_dir: Output folder (created); ``cam1.avi`` .. ``camN.avi`` and ``annotations.json``
            are written there (overwritten if present).
        size: Source site: "tiny" (320x240, 3 s, 4 identities), "small" (640x360, 8 s,
            6 identities) or "default" (640x360, 10 s, 10 identities); all at 10 fps. Target
            site (4 cameras, 5 fps): "tiny" (320x240, 16 s, 8 identities), "small" (640x360,
            60 s, 24 identities) or "default" (640x360, 10 min, 160 identities, 3 passes).
        seed: Random seed; the same seed gives identical annotations and decoded frames.
        workers: Processes filming the cameras (the output does not depend on it); None or 0:
            automatic (one per camera, up to the CPU count, for long target-site footage; else
            1).
        **overrides: Fields of :class:`VideoConfig` (e.g. ``site``, ``num_cameras``,
            ``footage``, ``frame_size``, ``fps``, ``num_frames``, ``num_identities``,
            ``num_shared``), or ``duration`` in seconds.

    Returns:
        Summary: ``out_dir``, ``files``, ``fps``, ``frame_size``, ``frames`` (per camera),
        ``duration_s``, ``identities``, ``identities_per_camera``, ``shared_identities`` (seen
        in two cameras or more), ``shared_ids``, ``boxes``, ``boxes_per_camera``,
        ``max_persons_per_frame``, ``seconds``.

    Raises:
        ValueError: For bad settings (see :func:`make_video_config`).
        RuntimeError: When OpenCV cannot write MJPG in AVI.
    """
    start = time.perf_counter()
    cfg = make_video_config(size, **overrides)
    W, H = cfg.frame_size
    os.makedirs(out_dir, exist_ok=True)
    apps, orders, cams = _set_up(cfg, int(seed))
    key = [int(seed)] if cfg.site == "source" else [int(seed), TARGET_STREAM, int(cfg.footage)]

    jobs = [
        (cam, ci, orders[cam.name], apps, cfg, os.path.join(out_dir, f"{cam.name}.avi"), key)
        for ci, cam in enumerate(cams)
    ]
    n_workers = _workers(workers, cfg)
    if n_workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as ex:
            filmed = list(ex.map(_film_job, jobs))
    else:
        filmed = [_film_job(job) for job in jobs]
    cameras_json: Dict[str, Any] = {}
    files = []
    for (cam, _, _, _, _, path, _), frames in zip(jobs, filmed):
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
        anno["occluder"] = {"box": [x0, 0, x1, H], "cameras": list(cfg.cameras)}
    if cfg.passes > 1:  # likewise
        anno["passes"] = int(cfg.passes)
    if cfg.site != "source":  # likewise
        anno["site"] = cfg.site
        anno["footage"] = int(cfg.footage)
        anno["looks"] = {cam.name: look_json(cam) for cam in cams}
        anno["occluders"] = {
            cam.name: [list(box) for box in cam.front[2]] for cam in cams if cam.front is not None
        }
    anno_path = os.path.join(out_dir, "annotations.json")
    with open(anno_path, "w", encoding="utf-8") as f:
        json.dump(anno, f, indent=1)
        f.write("\n")
    files.append(anno_path)
    return _summary(out_dir, files, cfg, cameras_json, time.perf_counter() - start)


def _workers(workers: Optional[int], cfg: VideoConfig) -> int:
    """Processes filming the cameras: ``workers``, or automatic (see :func:`generate_video`)."""
    if workers:
        return max(1, min(int(workers), cfg.num_cameras))
    if cfg.site == "source" or cfg.num_frames * cfg.num_cameras < 2000:
        return 1
    return max(1, min(cfg.num_cameras, os.cpu_count() or 1))


def _film_job(job) -> List[List[Dict[str, Any]]]:
    return _film(*job)


def _set_up(
    cfg: VideoConfig, seed: int
) -> Tuple[Dict[int, Appearance], Dict[str, List[int]], List[Camera]]:
    """The identities, each camera's walkers in order of time, and the cameras of a run.

    Source site: one random stream (``[seed, 303]``) casts, then draws the streets. Target
    site: the cameras come from a stream of the seed alone (every footage set of the seed shows
    the same cameras), the identities from the site's own stream (:func:`target_identities`),
    the cast from a stream of the seed and footage set.
    """
    if cfg.site == "source":
        rng = np.random.default_rng([seed, 303])
        if cfg.num_cameras == 2:
            apps, orders = cast_two_cameras(rng, cfg)
        else:
            apps, orders = cast_cameras(rng, cfg, sample_identities(rng, cfg.num_identities))
        cams = [make_camera(rng, name, cfg) for name in cfg.cameras]
        return apps, orders, cams
    cam_rng = np.random.default_rng([seed, 303, TARGET_STREAM, 1])
    cams = [make_site_camera(cam_rng, name, i, cfg) for i, name in enumerate(cfg.cameras)]
    cast_rng = np.random.default_rng([seed, 303, TARGET_STREAM, 2, int(cfg.footage)])
    people = target_identities(seed, int(cfg.footage), cfg.num_identities)
    apps, orders = cast_cameras(cast_rng, cfg, people)
    return apps, orders, cams


def _film(
    cam: Camera,
    ci: int,
    order: List[int],
    apps: Dict[int, Appearance],
    cfg: VideoConfig,
    path: str,
    key: Sequence[int],
) -> List[List[Dict[str, Any]]]:
    """Plan the walks of ``order`` (``cfg.passes`` times over) through ``cam``, render them and
    write the video to ``path``; returns the annotations of each frame.

    Source site: a planned identity must be visible enough in a few frames; otherwise the
    camera's walks are planned again (derived seed) and it is rendered again, up to
    ``_ATTEMPTS`` plans. The target site's long footage is filmed once (an identity hidden
    in a camera all along is reported by :func:`_identities_json`).
    """
    min_frames = max(2, min(5, cfg.num_frames // 6))
    walks = order * int(cfg.passes)
    attempts = _ATTEMPTS if cfg.site == "source" else 1
    for attempt in range(attempts):
        plan_rng = np.random.default_rng(list(key) + [305, ci, attempt])
        tracks = plan_tracks(plan_rng, cam, walks, cfg)
        frames = render_camera(cam, tracks, ci, apps, cfg, path, key)
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
    frames_of: Dict[str, Dict[int, List[int]]] = {}
    for name, cj in cameras_json.items():
        per = frames_of[name] = {}
        for i, fr in enumerate(cj["frames"]):
            for pid in sorted({a["person_id"] for a in fr}):
                per.setdefault(pid, []).append(i)
    hidden = []
    identities: Dict[str, Any] = {}
    for pid in sorted(apps):
        seen = {}
        for name in cameras_json:
            idx = frames_of[name].get(pid)
            if idx:
                seen[name] = {"first_frame": idx[0], "last_frame": idx[-1], "num_frames": len(idx)}
        planned = [n for n in cfg.cameras if pid in orders[n]]
        hidden += [(pid, name) for name in planned if name not in seen]
        identities[str(pid)] = {
            "cameras": sorted(seen),
            "planned_cameras": planned,
            "tracks": seen,
            "appearance": _appearance_json(apps[pid]),
        }
    for pid, name in hidden[:10]:
        logger.warning(
            "Identity %d is never visible enough in %s (at least %.0f%%)",
            pid,
            name,
            100 * cfg.min_visible,
        )
    if len(hidden) > 10:
        logger.warning("... and %d more (identity, camera) pairs never visible", len(hidden) - 10)
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
    n_cams: Dict[int, int] = {}
    for ids in per_cam.values():
        for pid in ids:
            n_cams[pid] = n_cams.get(pid, 0) + 1
    both = sorted(pid for pid, n in n_cams.items() if n >= 2)
    boxes = {n: sum(len(fr) for fr in cj["frames"]) for n, cj in cameras_json.items()}
    return {
        "out_dir": out_dir,
        "files": [os.path.basename(p) for p in files],
        "fps": cfg.fps,
        "frame_size": list(cfg.frame_size),
        "frames": {n: cj["num_frames"] for n, cj in cameras_json.items()},
        "duration_s": round(cfg.duration, 3),
        "identities": len(n_cams),
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
