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
"""

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

from .backdrop import Backdrop, draw_clutter, make_backdrop, sample_clutter
from .identities import Appearance, sample_identities
from .presets import SIZES
from .render import Pose, draw_person
from .scene import CameraStyle, _composite

__all__ = [
    "VideoConfig",
    "VIDEO_CAMERAS",
    "make_video_config",
    "occluder_columns",
    "generate_video",
    "open_video_writer",
]

logger = logging.getLogger(__name__)

VIDEO_CAMERAS = ("cam1", "cam2")

_PERSON_M = 1.7  # height of an average person, metres
_STEP_M = 0.7  # length of one step, metres (half a gait cycle)
PASS_GAP_S = 3.0  # with passes > 1: least time (s) an identity is out of sight between walks
_ATTEMPTS = 5  # plans of a camera's walks before accepting one where someone is hardly visible


@dataclass(frozen=True)
class VideoConfig:
    """Settings of one synthetic video run.

    Attributes:
        frame_size: (width, height) of the frames.
        fps: Frames per second, a whole number (the AVI written by OpenCV's built-in MJPG
            encoder stores whole frames per second).
        num_frames: Frames per camera.
        num_identities: Number of identities, both cameras together.
        num_shared: Identities that walk through both cameras (the rest are split between the
            two cameras).
        static_clutter: (min, max) clutter objects standing in each camera's view.
        min_person_frac: Smallest person height, as a fraction of the frame height, at the point
            where a path crosses the middle of its track.
        depth_walk_prob: Probability that a person walks towards or away from the camera
            (facing front or back) instead of across the view.
        speed: (min, max) walking speed in metres per second (a person is 1.7 m tall).
        min_visible: Persons with a smaller visible fraction (cut by the frame border or hidden
            by clutter or other people) are left out of the annotations of that frame.
        noise: Standard deviation of the per-frame sensor noise, in grey levels.
        quality: Motion-JPEG quality (0-100).
        occluder: Width of an occluder, as a fraction of the frame width: a grey pillar over
            the whole height of the middle of each camera's view, in front of everyone, so
            that a person walking across the view disappears behind it for a while and comes
            back (0: none, the default; the videos and annotations are then those of a
            generator without the option).
        passes: Times each identity walks through each of its cameras (1, the default: once;
            the videos and annotations are then those of a generator without the option). With
            N > 1 the video is N times longer (unless ``num_frames`` or ``duration`` is given)
            and the walks of a camera repeat N times in the same order; each walk is shown only
            within a time window around its middle, so that the identity is out of sight for at
            least ``PASS_GAP_S`` (3 s) between two walks: N separate appearances per camera
            (a walk longer than its window starts or ends inside the view).
    """

    frame_size: Tuple[int, int] = (320, 240)
    fps: float = 10.0
    num_frames: int = 30
    num_identities: int = 4
    num_shared: int = 2
    static_clutter: Tuple[int, int] = (1, 3)
    min_person_frac: float = 0.22
    depth_walk_prob: float = 0.2
    speed: Tuple[float, float] = (1.1, 1.6)
    min_visible: float = 0.3
    noise: float = 2.0
    quality: int = 90
    occluder: float = 0.0
    passes: int = 1

    @property
    def duration(self) -> float:
        """Length of each video in seconds."""
        return self.num_frames / self.fps


_VIDEO_PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(frame_size=(320, 240), fps=10.0, num_frames=30, num_identities=4, num_shared=2),
    "small": dict(
        frame_size=(640, 360),
        fps=10.0,
        num_frames=80,
        num_identities=6,
        num_shared=3,
        static_clutter=(2, 4),
    ),
    "default": dict(
        frame_size=(640, 360),
        fps=10.0,
        num_frames=100,
        num_identities=10,
        num_shared=4,
        static_clutter=(2, 4),
    ),
}


def make_video_config(size: str = "tiny", **overrides: Any) -> VideoConfig:
    """Build the settings of a video run from a preset and overrides.

    Args:
        size: One of "tiny", "small", "default".
        **overrides: Any :class:`VideoConfig` field; None values are ignored. ``duration``
            (seconds) is accepted too and sets ``num_frames`` to ``round(duration * fps)``.

    Returns:
        The settings.

    Raises:
        ValueError: For an unknown size or field, or settings that cannot give the two cameras
            (fewer than 2 shared identities, too few frames, a too small frame).
    """
    if size not in _VIDEO_PRESETS:
        raise ValueError(f"unknown size {size!r}; expected one of {SIZES}")
    params = dict(_VIDEO_PRESETS[size])
    names = {f.name for f in dataclasses.fields(VideoConfig)}
    duration = overrides.pop("duration", None)
    for k, v in overrides.items():
        if k not in names:
            raise ValueError(f"unknown setting {k!r}; expected one of {sorted(names)}")
        if v is not None:
            params[k] = tuple(v) if isinstance(v, list) else v
    if duration is not None:
        params["num_frames"] = int(round(float(duration) * float(params["fps"])))
    elif overrides.get("num_frames") is None and int(params.get("passes", 1)) > 1:
        params["num_frames"] = int(params["num_frames"]) * int(params["passes"])
    if "num_identities" in overrides and overrides["num_identities"] is not None:
        if "num_shared" not in overrides or overrides["num_shared"] is None:
            n = int(params["num_identities"])
            params["num_shared"] = max(2, min(n - 2, int(round(0.4 * n))))
    cfg = VideoConfig(**params)
    cfg = dataclasses.replace(
        cfg, fps=float(cfg.fps), frame_size=tuple(int(v) for v in cfg.frame_size)
    )
    W, H = cfg.frame_size
    if W < 64 or H < 64:
        raise ValueError(f"frame_size must be at least 64x64, got {W}x{H}")
    if cfg.fps <= 0 or float(cfg.fps) != round(cfg.fps):
        # OpenCV's built-in MJPG writer stores a whole number of frames per second in the AVI.
        raise ValueError(f"fps must be a positive whole number, got {cfg.fps}")
    if cfg.num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {cfg.num_frames}")
    if not 0.0 <= cfg.occluder <= 0.5:
        raise ValueError(
            f"occluder must be a fraction of the frame width in [0, 0.5], not {cfg.occluder}"
        )
    if int(cfg.passes) != cfg.passes or cfg.passes < 1:
        raise ValueError(f"passes must be a whole number >= 1, got {cfg.passes}")
    if cfg.num_shared < 2:
        raise ValueError("num_shared must be at least 2")
    if cfg.num_identities < cfg.num_shared:
        raise ValueError(
            f"num_identities ({cfg.num_identities}) must be at least num_shared "
            f"({cfg.num_shared})"
        )
    return cfg


def open_video_writer(
    path: str, fps: float, frame_size: Tuple[int, int], quality: int = 90
) -> cv2.VideoWriter:
    """Open an MJPG-in-AVI writer, preferring OpenCV's built-in Motion-JPEG encoder.

    Args:
        path: Output ``.avi`` path.
        fps: Frames per second.
        frame_size: (width, height).
        quality: JPEG quality (0-100), where the backend supports it.

    Returns:
        An opened ``cv2.VideoWriter``.

    Raises:
        RuntimeError: When no OpenCV backend can write MJPG in AVI.
    """
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    size = (int(frame_size[0]), int(frame_size[1]))
    for api in (cv2.CAP_OPENCV_MJPEG, cv2.CAP_ANY):
        writer = cv2.VideoWriter(path, api, fourcc, float(fps), size)
        if writer.isOpened():
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
            return writer
        writer.release()
    raise RuntimeError(
        f"OpenCV {cv2.__version__} cannot write MJPG in AVI to {path!r} "
        "(cv2.VideoWriter(...).isOpened() is False): check that the folder is writable and that "
        "this OpenCV build has video I/O (opencv-python-headless has)"
    )


@dataclass(frozen=True)
class _Track:
    """One walk of a person through one camera's view, on the ground plane.

    Ground coordinates: X to the right, Z away from the camera (metres); heading 0 walks to the
    right, pi / 2 away from the camera.
    """

    person_id: int
    t_mid: float  # seconds; time at which the person is at (x_mid, z_mid)
    x_mid: float
    z_mid: float
    heading: float  # radians at t_mid
    turn: float  # radians per second (gentle curve)
    speed: float  # metres per second
    phase: float  # gait phase at t_mid
    window: float = math.inf  # shown only while |t - t_mid| <= window (seconds)

    def shown(self, t: float) -> bool:
        """Whether the walk is shown at time ``t`` (inside its time window)."""
        return abs(t - self.t_mid) <= self.window

    def state(self, t: float) -> Tuple[float, float, float, float]:
        """(X, Z, heading, gait phase) at time ``t``."""
        dt = t - self.t_mid
        th = self.heading + self.turn * dt
        if abs(self.turn) > 1e-9:
            r = self.speed / self.turn
            x = self.x_mid + r * (math.sin(th) - math.sin(self.heading))
            z = self.z_mid - r * (math.cos(th) - math.cos(self.heading))
        else:
            x = self.x_mid + self.speed * dt * math.cos(th)
            z = self.z_mid + self.speed * dt * math.sin(th)
        phase = self.phase + math.pi * self.speed * dt / _STEP_M
        return x, z, th, phase


@dataclass
class _Camera:
    name: str
    backdrop: Backdrop
    style: CameraStyle
    focal: float
    clutter: List[Tuple[float, np.ndarray, np.ndarray]]  # (foot_y, pixel index, BGR values)
    tracks: List[_Track]

    def project(self, x: float, z: float) -> Tuple[float, float, float]:
        """(foot x, foot y, average person height) in pixels of a ground point."""
        W = self.backdrop.image.shape[1]
        ph = self.focal * _PERSON_M / z
        return W / 2.0 + self.focal * x / z, self.backdrop.horizon + ph / self.backdrop.scale, ph

    def depth_for_height(self, ph: float) -> float:
        """Depth (metres) at which an average person is ``ph`` pixels tall."""
        return self.focal * _PERSON_M / ph


_OCCLUDER_BGR = (96.0, 104.0, 110.0)


def occluder_columns(cfg: VideoConfig) -> Tuple[int, int]:
    """The pixel columns [x0, x1) of the occluder of ``cfg`` ((0, 0) when it has none)."""
    W = cfg.frame_size[0]
    width = int(round(cfg.occluder * W))
    if width <= 0:
        return 0, 0
    x0 = (W - width) // 2
    return x0, x0 + width


def _facing(heading: float) -> str:
    """Facing direction of a person walking with ``heading`` (radians on the ground plane)."""
    c, s = math.cos(heading), math.sin(heading)
    if abs(c) >= 0.5:
        return "right" if c > 0 else "left"
    return "back" if s > 0 else "front"


def _walk_pose(heading: float, phase: float) -> Pose:
    """Walking pose: stride and arm swing follow the gait phase (one step per half cycle)."""
    s = math.sin(phase)
    return Pose(facing=_facing(heading), stride=0.1 + 0.9 * abs(s), swing=s)


def _static_clutter(rng, bd: Backdrop, n: int, W: int, H: int, max_area: float = 0.05):
    """Draw the static clutter once: (foot_y, flat pixel index, colours) per object.

    Objects covering more than ``max_area`` of the frame (a car or a bush right in front of the
    camera) are re-drawn, so that no object hides the people for most of their walk.
    """
    out = []
    for _ in range(10 * n):
        if len(out) >= n:
            break
        item = sample_clutter(rng, bd, 1, W, H)[0]
        canvas = bd.image.copy()
        mask = np.zeros((H, W), np.uint8)
        draw_clutter(canvas, mask, item, bd)
        idx = np.flatnonzero(mask.ravel() > 0)
        if 0 < idx.size <= max_area * W * H:
            out.append((item.foot_y, idx, canvas.reshape(-1, 3)[idx].astype(np.float32)))
    return out


def _in_view(cam: _Camera, x: float, z: float) -> bool:
    """Whether a person at ground point (x, z) is at least partly inside the frame (laterally)."""
    if z <= 0.3:
        return False
    W = cam.backdrop.image.shape[1]
    return abs(x) * cam.focal <= W / 2.0 * z + 0.4 * cam.focal * _PERSON_M


def _plan_tracks(
    rng: np.random.Generator, cam: _Camera, order: List[int], cfg: VideoConfig
) -> List[_Track]:
    """Tracks of the persons ``order`` (in order of time) through the view of ``cam``."""
    W, H = cfg.frame_size
    bd = cam.backdrop
    n = len(order)
    ph_near = 0.95 * bd.person_height(H - 2.0)
    ph_far = min(cfg.min_person_frac * H, 0.8 * ph_near)
    # Depth bins shuffled, so that people close in time walk at different depths.
    bins = rng.permutation(n)
    z_near = cam.depth_for_height(ph_near)
    times = np.arange(cfg.num_frames) / cfg.fps
    window = math.inf
    if cfg.passes > 1:  # consecutive walks of a person are n / passes slots apart (+- 1/2 slot)
        slot = cfg.duration / n
        window = 0.5 * (n / cfg.passes - 0.5) * slot - 0.5 * PASS_GAP_S
        if window <= 0:
            raise ValueError(
                f"passes={cfg.passes}: the video is too short for separate walks "
                f"({cfg.duration:.1f} s); give a longer duration"
            )
    tracks = []
    for k, pid in enumerate(order):
        t_mid = (k + float(rng.uniform(0.25, 0.75))) / n * cfg.duration
        u = (bins[k] + float(rng.uniform(0.1, 0.9))) / n
        ph = ph_far * (ph_near / ph_far) ** u  # uniform in log-size
        col = float(rng.uniform(0.3, 0.7)) * W - W / 2.0  # column at t_mid, from the centre
        if rng.random() < cfg.depth_walk_prob:
            heading = (0.5 if rng.random() < 0.5 else -0.5) * math.pi + float(
                rng.uniform(-0.25, 0.25)
            )
        else:
            heading = (0.0 if rng.random() < 0.5 else math.pi) + float(rng.uniform(-0.3, 0.3))
        z = cam.depth_for_height(ph)
        tr = _Track(
            person_id=pid,
            t_mid=t_mid,
            x_mid=col * z / cam.focal,
            z_mid=z,
            heading=heading,
            turn=float(rng.uniform(-0.06, 0.06)),
            speed=float(rng.uniform(*cfg.speed)),
            phase=float(rng.uniform(0.0, 2.0 * math.pi)),
            window=window,
        )
        # The camera is at about eye level, so someone walking up to it would end up filling
        # the frame: move the path back so that, while in view, it never comes closer than the
        # bottom row (same column at t_mid).
        for _ in range(3):
            z_min = min(
                (
                    z
                    for x, z, _, _ in (tr.state(float(t)) for t in times if tr.shown(float(t)))
                    if _in_view(cam, x, z)
                ),
                default=tr.z_mid,
            )
            if z_min >= 0.999 * z_near:
                break
            z = tr.z_mid + (z_near - z_min)
            tr = dataclasses.replace(tr, x_mid=col * z / cam.focal, z_mid=z)
        tracks.append(tr)
    return tracks


def _render_frame(
    cam: _Camera,
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
    for tr in cam.tracks:
        if not tr.shown(t):
            continue
        x, z, th, phase = tr.state(t)
        if z < 0.3:
            continue
        fx, fy, ph = cam.project(x, z)
        ph *= apps[tr.person_id].height
        if ph > 3.0 * H or fy - ph > H or fx + 0.5 * ph < 0 or fx - 0.5 * ph > W:
            continue
        people.append((tr.person_id, fx, fy, ph, _walk_pose(th, phase)))
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
        img[:, x0:x1] = np.asarray(_OCCLUDER_BGR, np.float32)
        owner[:, x0:x1] = -1

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

    st = cam.style
    out = (img * np.asarray(st.gain, np.float32) - 128.0) * np.float32(st.contrast)
    out += np.float32(128.0 + st.brightness)
    if cfg.noise > 0:
        out += (noise_rng.standard_normal((H, W), dtype=np.float32) * np.float32(cfg.noise))[
            ..., None
        ]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), annos


def _render_camera(
    cam: _Camera, ci: int, apps: Dict[int, Appearance], cfg: VideoConfig, path: str, seed: int
) -> List[List[Dict[str, Any]]]:
    """Render and write the video of ``cam``; returns the annotations of each frame."""
    writer = open_video_writer(path, cfg.fps, cfg.frame_size, cfg.quality)
    frames = []
    try:
        for i in range(cfg.num_frames):
            noise_rng = np.random.default_rng([int(seed), 304, ci, i])
            img, annos = _render_frame(cam, apps, i / cfg.fps, noise_rng, cfg)
            writer.write(img)
            frames.append(annos)
    finally:
        writer.release()
    return frames


def _appearance_json(app: Appearance) -> Dict[str, Any]:
    d = dataclasses.asdict(app)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


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
    walks = {name: order * int(cfg.passes) for name, order in orders.items()}

    cams: List[_Camera] = []
    for name in VIDEO_CAMERAS:
        bd = make_backdrop(
            rng, W, H, float(rng.uniform(0.3, 0.42)), float(rng.uniform(0.62, 0.75)), False
        )
        n_clutter = int(rng.integers(cfg.static_clutter[0], cfg.static_clutter[1] + 1))
        cams.append(
            _Camera(
                name=name,
                backdrop=bd,
                style=CameraStyle.sample(rng, strength=1.0),
                focal=float(W),
                clutter=_static_clutter(rng, bd, n_clutter, W, H),
                tracks=[],
            )
        )

    # A planned identity must be visible enough in a few frames of each of its cameras;
    # otherwise that camera's walks are planned again (derived seed) and it is rendered again.
    min_frames = max(2, min(5, cfg.num_frames // 6))
    cameras_json: Dict[str, Any] = {}
    files = []
    for ci, cam in enumerate(cams):
        path = os.path.join(out_dir, f"{cam.name}.avi")
        for attempt in range(_ATTEMPTS):
            plan_rng = np.random.default_rng([int(seed), 305, ci, attempt])
            cam.tracks = _plan_tracks(plan_rng, cam, walks[cam.name], cfg)
            frames = _render_camera(cam, ci, apps, cfg, path, seed)
            counts = {pid: 0 for pid in orders[cam.name]}
            for fr in frames:
                for a in fr:
                    counts[a["person_id"]] += 1
            short = sorted(pid for pid, c in counts.items() if c < min_frames)
            if not short:
                break
            logger.debug("%s, attempt %d: identities %s hardly visible", cam.name, attempt, short)
        files.append(path)
        cameras_json[cam.name] = {
            "file": os.path.basename(path),
            "num_frames": cfg.num_frames,
            "frames": frames,
        }

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

    anno = {
        "fps": cfg.fps,
        "frame_size": [W, H],
        "timestamps": "frame index / fps (seconds)",
        "seed": int(seed),
        "size": size,
        "min_visible": cfg.min_visible,
        "cameras": cameras_json,
        "identities": identities,
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
        "frame_size": [W, H],
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
        "seconds": round(time.perf_counter() - start, 2),
    }
