"""Rendering the synthetic videos: each camera's frames and the boxes of the people in them.

A frame composites, depth-sorted by foot row, the camera's static clutter and the walkers shown
at that time over its backdrop; then the occluder pillar (if any) and the camera's own
occluders (target site) in front of everything, the camera's colour cast and per-frame sensor
noise (target site: its look, :func:`.video_site.finish_frame`). A person's annotation is the
box of the drawn figure, clipped to the frame, and the fraction of its pixels left visible.
"""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .identities import Appearance
from .render import draw_person
from .scene import _composite
from .video_camera import OCCLUDER_BGR, Camera, occluder_columns
from .video_config import VideoConfig
from .video_motion import Track, walk_pose
from .video_site import finish_frame
from .video_writer import open_video_writer

__all__ = ["render_camera", "render_frame"]


def render_camera(
    cam: Camera,
    tracks: List[Track],
    ci: int,
    apps: Dict[int, Appearance],
    cfg: VideoConfig,
    path: str,
    key: Sequence[int],
) -> List[List[Dict[str, Any]]]:
    """Render the walks ``tracks`` through ``cam`` (camera number ``ci`` of the run whose
    random streams start with ``key``, e.g. ``[seed]``) and write its video to ``path``;
    returns the annotations of each frame."""
    writer = open_video_writer(path, cfg.fps, cfg.frame_size, cfg.quality)
    frames = []
    try:
        for i in range(cfg.num_frames):
            noise_rng = np.random.default_rng([int(k) for k in key] + [304, ci, i])
            img, annos = render_frame(cam, tracks, apps, i / cfg.fps, noise_rng, cfg)
            writer.write(img)
            frames.append(annos)
    finally:
        writer.release()
    return frames


def render_frame(
    cam: Camera,
    tracks: List[Track],
    apps: Dict[int, Appearance],
    t: float,
    noise_rng: np.random.Generator,
    cfg: VideoConfig,
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Render the frame of ``cam`` at time ``t``; returns (BGR uint8 image, annotations)."""
    W, H = cfg.frame_size
    items: List[Tuple[float, int, Any]] = []  # (depth = foot row, order, payload)
    for c in cam.clutter:
        items.append((c[0], len(items), c))
    people = []
    for tr in tracks:
        if not tr.shown(t):
            continue
        x, z, th, phase = tr.state(t)
        if z < 0.3:
            continue
        fx, fy, ph = cam.project(x, z)
        ph *= apps[tr.person_id].height
        if ph > 3.0 * H or fy - ph > H or fx + 0.5 * ph < 0 or fx - 0.5 * ph > W:
            continue
        people.append((tr.person_id, fx, fy, ph, walk_pose(th, phase)))
        items.append((fy, len(items), len(people) - 1))
    items.sort(key=lambda it: (it[0], it[1]))

    img = cam.backdrop.image.astype(np.float32)
    owner = np.full((H, W), -1, np.int32)
    flat_img, flat_owner = img.reshape(-1, 3), owner.reshape(-1)
    drawn = []  # (person index, unclipped box, opaque pixels)
    for _, _, payload in items:
        if isinstance(payload, tuple):  # static clutter
            flat_img[payload[1]] = payload[2]
            flat_owner[payload[1]] = -1
            continue
        pid, fx, fy, ph, pose = people[payload]
        patch = draw_person(apps[pid], ph, pose)
        ox = int(round(fx - patch.foot[0]))
        oy = int(round(fy - patch.foot[1]))
        _composite(img, owner, patch, ox, oy, payload)
        bx0, by0, bx1, by1 = patch.bbox
        total = int((patch.alpha > 0.5).sum())
        drawn.append((payload, (ox + bx0, oy + by0, ox + bx1, oy + by1), total))
    if cfg.occluder > 0:  # in front of everything: hides whoever walks behind it
        x0, x1 = occluder_columns(cfg)
        img[:, x0:x1] = np.asarray(OCCLUDER_BGR, np.float32)
        owner[:, x0:x1] = -1
    if cam.front is not None:  # the camera's own pillars and posts
        flat_img[cam.front[0]] = cam.front[1]
        flat_owner[cam.front[0]] = -1

    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(people))
    annos = []
    for k, box, total in drawn:
        visible = float(counts[k]) / max(1, total)
        x1, y1 = max(0, box[0]), max(0, box[1])
        x2, y2 = min(W, box[2]), min(H, box[3])
        if visible < cfg.min_visible or x2 <= x1 or y2 <= y1:
            continue
        annos.append(
            {"person_id": people[k][0], "box": [x1, y1, x2, y2], "visible": round(visible, 3)}
        )
    annos.sort(key=lambda a: a["person_id"])

    if cam.look is not None:
        return finish_frame(img, cam.look, noise_rng), annos
    st = cam.style
    out = (img * np.asarray(st.gain, np.float32) - 128.0) * np.float32(st.contrast)
    out += np.float32(128.0 + st.brightness)
    if cfg.noise > 0:
        out += (noise_rng.standard_normal((H, W), dtype=np.float32) * np.float32(cfg.noise))[
            ..., None
        ]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), annos
