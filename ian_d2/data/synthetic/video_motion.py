"""Walks of the synthetic videos: paths on the ground plane and the walking pose.

A :class:`Track` is one walk of a person through one camera's view, a straight or gently curved
path at a constant speed; :func:`plan_tracks` lays out the walks of a camera (in order of time, at
shuffled depths, kept from coming closer than the bottom of the frame); :func:`walk_pose` turns a
walker's heading and gait phase into the pose to draw.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .render import Pose
from .video_camera import Camera
from .video_config import PASS_GAP_S, VideoConfig

__all__ = ["STEP_M", "Track", "plan_tracks", "walk_pose"]

STEP_M = 0.7  # length of one step, metres (half a gait cycle)


@dataclass(frozen=True)
class Track:
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
        phase = self.phase + math.pi * self.speed * dt / STEP_M
        return x, z, th, phase


def plan_tracks(
    rng: np.random.Generator, cam: Camera, order: List[int], cfg: VideoConfig
) -> List[Track]:
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
        tr = Track(
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
        if cfg.site != "source":
            tr = _crossing_window(tr, cam, W, window)
        # The camera is at about eye level, so someone walking up to it would end up filling
        # the frame: move the path back so that, while in view, it never comes closer than the
        # bottom row (same column at t_mid).
        for _ in range(3):
            z_min = min(
                (
                    z
                    for x, z, _, _ in (tr.state(float(t)) for t in _times(times, tr, cfg))
                    if cam.in_view(x, z)
                ),
                default=tr.z_mid,
            )
            if z_min >= 0.999 * z_near:
                break
            z = tr.z_mid + (z_near - z_min)
            tr = dataclasses.replace(tr, x_mid=col * z / cam.focal, z_mid=z)
            if cfg.site != "source":
                tr = _crossing_window(tr, cam, W, window)
        tracks.append(tr)
    return tracks


def _crossing_window(tr: Track, cam: Camera, width: int, window: float) -> Track:
    """``tr`` shown only for about the time it takes to cross the view (target site).

    In long footage, a walk is otherwise shown from the start of the video to its end: someone
    walking away would stay in view, ever smaller, for minutes. A walk is shown while
    ``|t - t_mid|`` is at most the time to walk 0.75 view widths at its depth (plus 1 s), which
    lets a walk across the view enter and leave at the sides.
    """
    view_m = width * tr.z_mid / cam.focal
    return dataclasses.replace(tr, window=min(window, 0.75 * view_m / tr.speed + 1.0))


def _times(times: np.ndarray, tr: Track, cfg: VideoConfig):
    """The times of ``times`` [num_frames] (seconds) at which ``tr`` is shown, as floats."""
    if cfg.site == "source" or not math.isfinite(tr.window):
        return (float(t) for t in times if tr.shown(float(t)))
    lo, hi = np.searchsorted(times, [tr.t_mid - tr.window - 1.0, tr.t_mid + tr.window + 1.0])
    return (float(t) for t in times[lo:hi] if tr.shown(float(t)))


def walk_pose(heading: float, phase: float) -> Pose:
    """Walking pose: stride and arm swing follow the gait phase (one step per half cycle)."""
    s = math.sin(phase)
    return Pose(facing=_facing(heading), stride=0.1 + 0.9 * abs(s), swing=s)


def _facing(heading: float) -> str:
    """Facing direction of a person walking with ``heading`` (radians on the ground plane)."""
    c, s = math.cos(heading), math.sin(heading)
    if abs(c) >= 0.5:
        return "right" if c > 0 else "left"
    return "back" if s > 0 else "front"
