"""Settings of the synthetic videos: :class:`VideoConfig`, its size presets and their checks.

:func:`make_video_config` builds the settings of a run from a site ("source": the two street
cameras; "target": the second site, :mod:`.video_site`), a preset ("tiny", "small", "default",
one set per site) and overrides, and rejects settings that cannot give the cameras.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

__all__ = [
    "VideoConfig",
    "VIDEO_CAMERAS",
    "SITES",
    "MAX_FOOTAGE",
    "PASS_GAP_S",
    "make_video_config",
]

VIDEO_CAMERAS = ("cam1", "cam2")  # the cameras of the default (source site, two cameras)

SITES = ("source", "target")

MAX_FOOTAGE = 4  # target site: footage sets of one seed whose identities are disjoint

MAX_CAMERAS = 8

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
        num_shared: Identities that walk through two cameras or more (source: both cameras;
            target: two or three of them); the rest walk through one camera each.
        static_clutter: (min, max) clutter objects standing in each camera's view.
        min_person_frac: Smallest person height, as a fraction of the frame height, at the point
            where a path crosses the middle of its track.
        depth_walk_prob: Probability that a person walks towards or away from the camera
            (facing front or back) instead of across the view.
        speed: (min, max) walking speed in metres per second (a person is 1.7 m tall).
        min_visible: Persons with a smaller visible fraction (cut by the frame border or hidden
            by clutter or other people) are left out of the annotations of that frame.
        noise: Standard deviation of the per-frame sensor noise, in grey levels (source site;
            each target-site camera has its own, :class:`~.video_site.SiteLook`).
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
            (a walk longer than its window starts or ends inside the view). At the target site
            the preset's length is kept (its walks are shown only while they cross the view).
        site: "source" (the default: the two street cameras; the videos and annotations are
            then those of a generator without the option) or "target" (the second site, another
            look and population: :mod:`.video_site`).
        num_cameras: Number of cameras, named ``cam1`` .. ``camN`` (source: 2 by default;
            target: 4 to 8, 4 by default).
        footage: Target site: which of the :data:`MAX_FOOTAGE` footage sets of the seed this
            run films (0 by default). Footage sets of one seed show the same cameras (same
            streets and looks) and disjoint identities at other times; the source site has one.
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
    site: str = "source"
    num_cameras: int = 2
    footage: int = 0

    @property
    def duration(self) -> float:
        """Length of each video in seconds."""
        return self.num_frames / self.fps

    @property
    def cameras(self) -> Tuple[str, ...]:
        """The camera names, ``cam1`` .. ``camN``."""
        return tuple(f"cam{i}" for i in range(1, self.num_cameras + 1))


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

# The target site (:mod:`.video_site`): four cameras mounted higher, smaller persons, a
# lower JPEG quality; most identities walk through two or three cameras, several times each.
_TARGET_COMMON: Dict[str, Any] = dict(
    site="target",
    num_cameras=4,
    fps=5.0,
    min_person_frac=0.26,
    depth_walk_prob=0.3,
    static_clutter=(2, 4),
    quality=75,
)
_TARGET_PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(
        _TARGET_COMMON,
        frame_size=(320, 240),
        num_frames=80,
        num_identities=8,
        num_shared=7,
        static_clutter=(1, 2),
    ),
    "small": dict(
        _TARGET_COMMON, frame_size=(640, 360), num_frames=300, num_identities=24, num_shared=20
    ),
    # the measurement's site (projects/adaptation): 4 x 150 s, crowded enough for 300+ queries
    "medium": dict(
        _TARGET_COMMON, frame_size=(640, 360), num_frames=750, num_identities=140, num_shared=130
    ),
    "default": dict(
        _TARGET_COMMON,
        frame_size=(640, 360),
        num_frames=3000,
        num_identities=160,
        num_shared=144,
        passes=3,
    ),
}

_PRESETS = {"source": _VIDEO_PRESETS, "target": _TARGET_PRESETS}


def make_video_config(size: str = "tiny", **overrides: Any) -> VideoConfig:
    """Build the settings of a video run from a preset and overrides.

    Args:
        size: One of "tiny", "small", "default" (the presets of the site; the target site also
            has "medium").
        **overrides: Any :class:`VideoConfig` field; None values are ignored. ``site`` picks
            the presets ("source" by default). ``duration`` (seconds) is accepted too and sets
            ``num_frames`` to ``round(duration * fps)``.

    Returns:
        The settings.

    Raises:
        ValueError: For an unknown site, size or field, or settings that cannot give the
            cameras (fewer than 2 shared identities, too few frames, a too small frame, a
            number of cameras the site does not have).
    """
    site = overrides.get("site") or "source"
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; expected one of {SITES}")
    if size not in _PRESETS[site]:
        raise ValueError(
            f"unknown size {size!r} at the {site} site; expected one of {tuple(_PRESETS[site])}"
        )
    params = dict(_PRESETS[site][size])
    names = {f.name for f in dataclasses.fields(VideoConfig)}
    duration = overrides.pop("duration", None)
    for k, v in overrides.items():
        if k not in names:
            raise ValueError(f"unknown setting {k!r}; expected one of {sorted(names)}")
        if v is not None:
            params[k] = tuple(v) if isinstance(v, list) else v
    if duration is not None:
        params["num_frames"] = int(round(float(duration) * float(params["fps"])))
    elif (
        site == "source"
        and overrides.get("num_frames") is None
        and int(params.get("passes", 1)) > 1
    ):
        params["num_frames"] = int(params["num_frames"]) * int(params["passes"])
    if "num_identities" in overrides and overrides["num_identities"] is not None:
        if "num_shared" not in overrides or overrides["num_shared"] is None:
            n = int(params["num_identities"])
            share = 0.4 if site == "source" else 0.9
            params["num_shared"] = max(2, min(n - 2, int(round(share * n))))
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
    lo = 2 if cfg.site == "source" else 4
    if int(cfg.num_cameras) != cfg.num_cameras or not lo <= cfg.num_cameras <= MAX_CAMERAS:
        raise ValueError(
            f"the {cfg.site} site has {lo} to {MAX_CAMERAS} cameras, not {cfg.num_cameras}"
        )
    if int(cfg.footage) != cfg.footage or not 0 <= cfg.footage < MAX_FOOTAGE:
        raise ValueError(f"footage must be in 0..{MAX_FOOTAGE - 1}, got {cfg.footage}")
    if cfg.site == "source" and cfg.footage != 0:
        raise ValueError("the source site has one footage set (footage 0)")
    if cfg.num_shared < 2:
        raise ValueError("num_shared must be at least 2")
    if cfg.num_identities < cfg.num_shared:
        raise ValueError(
            f"num_identities ({cfg.num_identities}) must be at least num_shared "
            f"({cfg.num_shared})"
        )
    return cfg
