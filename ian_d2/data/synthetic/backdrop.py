"""Street-like backgrounds and non-person clutter (poles, boxes, cars, trees, bins...).

A backdrop is a static image (sky or wall gradient, buildings with windows, ground plane, road
markings) plus a ground-plane perspective: an object whose base is at image row ``y`` is
``scale * (y - horizon)`` pixels tall if it is person-sized. Clutter objects use the same
perspective and are drawn depth-sorted together with the people, so they can occlude them.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

__all__ = ["Backdrop", "Clutter", "make_backdrop", "sample_clutter", "draw_clutter"]

CLUTTER_KINDS = ("pole", "box", "car", "tree", "bin", "bench", "bollard", "bush")


@dataclass
class Backdrop:
    """A background image with its ground-plane perspective.

    Attributes:
        image: uint8 (h, w, 3) BGR background.
        horizon: Image row of the horizon.
        scale: Person height per pixel of distance below the horizon.
    """

    image: np.ndarray
    horizon: float
    scale: float

    def person_height(self, foot_y: float) -> float:
        """Height in pixels of an average person standing at row ``foot_y``."""
        return self.scale * (foot_y - self.horizon)

    def foot_for_height(self, height: float) -> float:
        """Row at which an average person is ``height`` pixels tall."""
        return self.horizon + height / self.scale


@dataclass(frozen=True)
class Clutter:
    """A non-person object standing on the ground.

    Attributes:
        kind: One of :data:`CLUTTER_KINDS`.
        x: Centre column of its base.
        foot_y: Row of its base (its depth).
        size: Size factor (1 = typical for the kind).
        color: Main colour (BGR).
    """

    kind: str
    x: float
    foot_y: float
    size: float
    color: Tuple[int, int, int]


def _vgradient(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(col, (h, w, 3))


def _color(rng: np.random.Generator, base, amount: int = 20) -> Tuple[int, int, int]:
    c = np.clip(np.asarray(base) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in c)


def _buildings(img: np.ndarray, rng: np.random.Generator, horizon: int):
    h, w = img.shape[:2]
    x = int(rng.integers(-40, 0))
    walls = ((150, 160, 170), (120, 130, 150), (170, 180, 190), (90, 100, 120), (140, 150, 130))
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(horizon - rng.uniform(0.15, 0.45) * h)
        wall = _color(rng, walls[int(rng.integers(len(walls)))], 15)
        base = min(h - 1, horizon + int(0.04 * h))
        cv2.rectangle(img, (x, top), (x + bw, base), wall, -1)
        cv2.rectangle(img, (x, top), (x + bw, base), _color(rng, (60, 60, 60), 10), 1)
        win = _color(rng, (110, 90, 70) if rng.random() < 0.5 else (180, 200, 210), 20)
        step_x = int(rng.integers(12, 22))
        step_y = int(rng.integers(14, 24))
        for wy in range(top + 6, base - step_y // 2, step_y):
            for wx in range(x + 5, x + bw - 8, step_x):
                cv2.rectangle(img, (wx, wy), (wx + step_x // 2, wy + step_y // 2), win, -1)
        x += bw + int(rng.integers(0, 12))


def _indoor(img: np.ndarray, rng: np.random.Generator, horizon: int):
    h, w = img.shape[:2]
    wall = _color(rng, (170, 180, 190), 30)
    img[:horizon] = _vgradient(horizon, w, _color(rng, wall, 10), _shade_t(wall, 0.8))
    for _ in range(int(rng.integers(1, 4))):
        x0 = int(rng.integers(0, w - 30))
        bw = int(rng.integers(25, 70))
        y0 = int(horizon - rng.uniform(0.2, 0.35) * h)
        col = _color(rng, (70, 90, 120) if rng.random() < 0.5 else (200, 190, 160), 20)
        cv2.rectangle(img, (x0, y0), (x0 + bw, horizon), col, -1)
        cv2.rectangle(img, (x0, y0), (x0 + bw, horizon), (50, 50, 50), 1)


def _shade_t(c, f):
    return tuple(int(v * f) for v in c)


def _road(img: np.ndarray, rng: np.random.Generator, horizon: int, indoor: bool):
    h, w = img.shape[:2]
    gh = h - horizon
    if indoor:
        floor = _color(rng, (120, 130, 140), 30)
        img[horizon:] = _vgradient(gh, w, _shade_t(floor, 0.85), floor)
        step = int(rng.integers(25, 50))
        vp = (w // 2 + int(rng.integers(-w // 4, w // 4)), horizon - h // 3)
        for bx in range(-w, 2 * w, step):
            cv2.line(img, vp, (bx, h), _shade_t(floor, 0.75), 1, cv2.LINE_AA)
        return
    asphalt = _color(rng, (95, 95, 100), 15)
    img[horizon:] = _vgradient(gh, w, _shade_t(asphalt, 0.9), asphalt)
    # Sidewalk band with paving lines.
    walk_y = int(horizon + rng.uniform(0.45, 0.8) * gh)
    pave = _color(rng, (150, 160, 165), 15)
    img[walk_y:] = pave
    cv2.line(img, (0, walk_y), (w, walk_y), _shade_t(pave, 0.6), 2)
    for bx in range(int(rng.integers(0, 30)), w, int(rng.integers(30, 60))):
        cv2.line(img, (bx, walk_y), (bx - (bx - w // 2) // 3, h), _shade_t(pave, 0.8), 1)
    # Dashed lane markings converging to a vanishing point.
    vp = (w // 2 + int(rng.integers(-w // 5, w // 5)), horizon)
    for bx in (w // 2 + int(rng.integers(-w // 3, w // 3)),):
        for t0 in np.arange(0.1, 1.0, 0.2):
            p0 = (int(vp[0] + (bx - vp[0]) * t0), int(vp[1] + (walk_y - vp[1]) * t0))
            t1 = t0 + 0.1
            p1 = (int(vp[0] + (bx - vp[0]) * t1), int(vp[1] + (walk_y - vp[1]) * t1))
            cv2.line(img, p0, p1, (220, 230, 235), max(1, int(3 * t1)), cv2.LINE_AA)


def make_backdrop(
    rng: np.random.Generator,
    width: int,
    height: int,
    horizon_frac: Optional[float] = None,
    bottom_person_frac: Optional[float] = None,
    indoor: Optional[bool] = None,
) -> Backdrop:
    """Render a random background.

    Args:
        rng: Random generator.
        width: Image width.
        height: Image height.
        horizon_frac: Horizon row as a fraction of the height (random if None).
        bottom_person_frac: Height of a person standing on the bottom row, as a fraction of the
            image height (random if None).
        indoor: Force an indoor (wall) or outdoor (street) scene; random if None.

    Returns:
        A :class:`Backdrop`.
    """
    if horizon_frac is None:
        horizon_frac = float(rng.uniform(0.3, 0.48))
    if bottom_person_frac is None:
        bottom_person_frac = float(rng.uniform(0.55, 0.72))
    if indoor is None:
        indoor = bool(rng.random() < 0.2)
    horizon = int(round(horizon_frac * height))
    img = np.zeros((height, width, 3), np.float32)
    skies = ((235, 200, 150), (210, 210, 210), (200, 170, 190), (240, 215, 180))
    sky = _color(rng, skies[int(rng.integers(len(skies)))], 15)
    img[:horizon] = _vgradient(horizon, width, _shade_t(sky, 0.85), sky)
    img = img.astype(np.uint8)
    if indoor:
        _indoor(img, rng, horizon)
    else:
        _buildings(img, rng, horizon)
    _road(img, rng, horizon, indoor)
    scale = bottom_person_frac * height / max(1.0, height - horizon)
    return Backdrop(image=img, horizon=float(horizon), scale=float(scale))


def sample_clutter(
    rng: np.random.Generator, backdrop: Backdrop, n: int, width: int, height: int
) -> List[Clutter]:
    """Sample ``n`` clutter objects standing on the ground plane.

    Args:
        rng: Random generator.
        backdrop: The backdrop (for its perspective).
        n: Number of objects.
        width: Image width.
        height: Image height.

    Returns:
        The objects.
    """
    out = []
    palette = ((40, 40, 160), (150, 90, 40), (60, 60, 60), (200, 200, 200), (40, 120, 180))
    for _ in range(n):
        kind = CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]
        foot_y = float(rng.uniform(backdrop.horizon + 0.1 * (height - backdrop.horizon), height))
        out.append(
            Clutter(
                kind=kind,
                x=float(rng.uniform(-0.05, 1.05) * width),
                foot_y=foot_y,
                size=float(rng.uniform(0.8, 1.25)),
                color=_color(rng, palette[int(rng.integers(len(palette)))], 25),
            )
        )
    return out


def draw_clutter(
    img: np.ndarray, mask: Optional[np.ndarray], item: Clutter, backdrop: Backdrop
) -> None:
    """Draw one clutter object on ``img`` (and with value 255 on ``mask`` if given).

    Args:
        img: uint8 BGR image, modified in place.
        mask: uint8 mask of the same size or None.
        item: The object.
        backdrop: Its backdrop (for the perspective).
    """
    ph = max(4.0, backdrop.person_height(item.foot_y)) * item.size
    x, y = item.x, item.foot_y
    c = item.color
    dark = tuple(int(v * 0.6) for v in c)
    ops = []  # (function name, args) drawn identically on img and mask

    def rect(x0, y0, x1, y1, col):
        ops.append(("rect", (int(x0), int(y0)), (int(x1), int(y1)), col))

    def ell(cx, cy, ax, ay, col):
        ops.append(("ell", (int(cx), int(cy)), (max(1, int(ax)), max(1, int(ay))), col))

    k = item.kind
    if k == "pole":
        rect(x - 0.025 * ph, y - 1.6 * ph, x + 0.025 * ph, y, (70, 70, 70))
        rect(x - 0.12 * ph, y - 1.62 * ph, x + 0.12 * ph, y - 1.56 * ph, (60, 60, 60))
    elif k == "box":
        rect(x - 0.25 * ph, y - 0.35 * ph, x + 0.25 * ph, y, (60, 110, 160))
        rect(x - 0.25 * ph, y - 0.35 * ph, x + 0.25 * ph, y - 0.3 * ph, (40, 80, 120))
    elif k == "car":
        rect(x - 1.1 * ph, y - 0.45 * ph, x + 1.1 * ph, y - 0.1 * ph, c)
        rect(x - 0.65 * ph, y - 0.75 * ph, x + 0.6 * ph, y - 0.44 * ph, c)
        rect(x - 0.58 * ph, y - 0.7 * ph, x + 0.52 * ph, y - 0.47 * ph, (90, 70, 60))
        for wx in (x - 0.7 * ph, x + 0.7 * ph):
            ell(wx, y - 0.12 * ph, 0.16 * ph, 0.14 * ph, (20, 20, 20))
    elif k == "tree":
        rect(x - 0.05 * ph, y - 1.1 * ph, x + 0.05 * ph, y, (30, 60, 90))
        ell(x, y - 1.35 * ph, 0.45 * ph, 0.5 * ph, (40, 120, 50))
    elif k == "bin":
        rect(x - 0.13 * ph, y - 0.5 * ph, x + 0.13 * ph, y, (40, 90, 40))
        rect(x - 0.15 * ph, y - 0.54 * ph, x + 0.15 * ph, y - 0.48 * ph, (30, 60, 30))
    elif k == "bench":
        rect(x - 0.5 * ph, y - 0.3 * ph, x + 0.5 * ph, y - 0.25 * ph, (40, 70, 110))
        rect(x - 0.5 * ph, y - 0.5 * ph, x + 0.5 * ph, y - 0.44 * ph, (40, 70, 110))
        rect(x - 0.45 * ph, y - 0.3 * ph, x - 0.41 * ph, y, (50, 50, 50))
        rect(x + 0.41 * ph, y - 0.3 * ph, x + 0.45 * ph, y, (50, 50, 50))
    elif k == "bollard":
        rect(x - 0.05 * ph, y - 0.4 * ph, x + 0.05 * ph, y, dark)
        rect(x - 0.05 * ph, y - 0.3 * ph, x + 0.05 * ph, y - 0.26 * ph, (220, 220, 220))
    else:  # bush
        ell(x, y - 0.25 * ph, 0.45 * ph, 0.28 * ph, (50, 110, 60))
        ell(x - 0.2 * ph, y - 0.35 * ph, 0.25 * ph, 0.2 * ph, (60, 130, 70))

    for op in ops:
        if op[0] == "rect":
            cv2.rectangle(img, op[1], op[2], op[3], -1)
            if mask is not None:
                cv2.rectangle(mask, op[1], op[2], 255, -1)
        else:
            cv2.ellipse(img, op[1], op[2], 0, 0, 360, op[3], -1, cv2.LINE_AA)
            if mask is not None:
                cv2.ellipse(mask, op[1], op[2], 0, 0, 360, 255, -1)
