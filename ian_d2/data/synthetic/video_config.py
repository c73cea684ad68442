"""Settings of the synthetic videos: :class:`VideoConfig`, its size presets and their checks.

:func:`make_video_config` builds the settings of a run from a preset ("tiny", "small",
"default") and overrides, and rejects settings that cannot give the two cameras.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from .presets import SIZES

__all__ = ["VideoConfig", "VIDEO_CAMERAS", "PASS_GAP_S", "make_video_config"]

VIDEO_CAMERAS = ("cam1", "cam2")

PASS_GAP_S = 3.0  # with passes > 1: least time (s) an identity is out of sight between walks


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
