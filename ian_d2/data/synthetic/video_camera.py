"""The street cameras of the synthetic videos: what each one sees and how it projects.

A :class:`Camera` is the look of one view (its backdrop, the static clutter standing in it and
its colour cast) and its ground-plane geometry (a pinhole at about eye level: a ground point
``(X, Z)``, metres to the right of and away from the camera, maps to the foot pixel and height of
a person standing there). :func:`make_camera` draws a random street for a camera of the source
site (the target site's cameras: :mod:`.video_site`); :func:`occluder_columns` places the
optional grey pillar in front of each view.
"""

from dataclasses import dataclass
from typing import Any, List, Tuple

import numpy as np

from .backdrop import Backdrop, draw_clutter, make_backdrop, sample_clutter
from .scene import CameraStyle
from .video_config import VideoConfig

__all__ = ["PERSON_M", "OCCLUDER_BGR", "Camera", "make_camera", "occluder_columns"]

PERSON_M = 1.7  # height of an average person, metres

OCCLUDER_BGR = (96.0, 104.0, 110.0)  # colour of the occluder pillar


@dataclass(frozen=True)
class Camera:
    """One camera: its street (backdrop, clutter), colour cast and projection.

    Attributes:
        name: Camera name (the video file is ``<name>.avi``).
        backdrop: The street behind everyone, with its ground-plane perspective.
        style: Colour cast and lighting applied to each frame.
        focal: Focal length in pixels.
        clutter: Static objects drawn once: (foot_y, flat pixel index, BGR values) each.
        look: Target site: the camera's :class:`~.video_site.SiteLook` (tone curve, blur,
            noise), applied instead of ``style``; None at the source site.
        front: Objects in front of everyone (target site): (flat pixel index [P], BGR values
            [P, 3], XYXY boxes of the objects), or None.
    """

    name: str
    backdrop: Backdrop
    style: CameraStyle
    focal: float
    clutter: List[Tuple[float, np.ndarray, np.ndarray]]
    look: Any = None
    front: Any = None

    def project(self, x: float, z: float) -> Tuple[float, float, float]:
        """(foot x, foot y, average person height) in pixels of a ground point."""
        W = self.backdrop.image.shape[1]
        ph = self.focal * PERSON_M / z
        return W / 2.0 + self.focal * x / z, self.backdrop.horizon + ph / self.backdrop.scale, ph

    def depth_for_height(self, ph: float) -> float:
        """Depth (metres) at which an average person is ``ph`` pixels tall."""
        return self.focal * PERSON_M / ph

    def in_view(self, x: float, z: float) -> bool:
        """Whether a person at ground point (x, z) is at least partly in the frame (laterally)."""
        if z <= 0.3:
            return False
        W = self.backdrop.image.shape[1]
        return abs(x) * self.focal <= W / 2.0 * z + 0.4 * self.focal * PERSON_M


def make_camera(rng: np.random.Generator, name: str, cfg: VideoConfig) -> Camera:
    """A camera watching a random outdoor street: backdrop, static clutter and colour cast."""
    W, H = cfg.frame_size
    bd = make_backdrop(
        rng, W, H, float(rng.uniform(0.3, 0.42)), float(rng.uniform(0.62, 0.75)), False
    )
    n_clutter = int(rng.integers(cfg.static_clutter[0], cfg.static_clutter[1] + 1))
    return Camera(
        name=name,
        backdrop=bd,
        style=CameraStyle.sample(rng, strength=1.0),
        focal=float(W),
        clutter=_static_clutter(rng, bd, n_clutter, W, H),
    )


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


def occluder_columns(cfg: VideoConfig) -> Tuple[int, int]:
    """The pixel columns [x0, x1) of the occluder of ``cfg`` ((0, 0) when it has none)."""
    W = cfg.frame_size[0]
    width = int(round(cfg.occluder * W))
    if width <= 0:
        return 0, 0
    x0 = (W - width) // 2
    return x0, x0 + width
