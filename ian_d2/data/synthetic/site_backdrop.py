"""Backgrounds of the target site: scenes whose palette and structure differ from the streets.

The training backdrops (:mod:`.backdrop`) are streets seen from eye level: a blue-grey sky,
grey and beige buildings with window grids, grey asphalt with a sidewalk. The target site's
cameras hang higher (the horizon is near the top of the frame, the ground fills the view) and
watch other places, each with its own palette and structure:

* ``plaza``: a terracotta and sand chequerboard of large tiles in perspective, an ochre arcade
  at the far end, a round fountain;
* ``park``: mown grass in light and dark stripes, a winding gravel path, flower beds, a tree
  line;
* ``hall``: a station concourse, a polished diagonal tile floor with a yellow tactile strip,
  reflections of the ceiling lights, a teal tiled wall with a sign band;
* ``dusk``: a wet dark street under a violet-to-orange sky, building silhouettes with lit
  windows, pools of warm light under the street lamps.

Ground patterns are laid out on the ground plane (metres) and projected with the camera's
perspective, so that they shrink towards the horizon like the people. :func:`front_occluders`
draws the objects in front of everyone (pillars, posts) of a camera.
"""

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .backdrop import Backdrop

__all__ = ["SCENES", "make_site_backdrop", "front_occluders"]

PERSON_M = 1.7  # as video_camera.PERSON_M (the perspective of every backdrop)


def _texture(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Smooth random texture: float32 (h, w, 1) in about [-amp, amp], features ~``cell`` px."""
    small = rng.uniform(-amp, amp, size=(h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]


def _ground(h: int, w: int, horizon: float, scale: float) -> Tuple[np.ndarray, np.ndarray, int]:
    """Ground-plane coordinates of the rows below the horizon.

    Returns:
        (X, Z, y0): float32 (h - y0, w) metres to the right of and away from the camera of
        every pixel of rows y0..h-1 (y0 = first row below the horizon).
    """
    y0 = int(math.floor(horizon)) + 1
    ys = np.arange(y0, h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    z = (w * PERSON_M) / (np.maximum(ys - horizon, 0.5) * scale)  # focal = w pixels
    x = (xs - w / 2.0) * z / w
    return np.broadcast_to(x, (ys.size, w)), np.broadcast_to(z, (ys.size, w)), y0


def _row_of_depth(z: float, h: int, w: int, horizon: float, scale: float) -> float:
    """Image row of the ground at depth ``z`` metres."""
    return horizon + w * PERSON_M / (z * scale)


def _col_of(x: float, z: float, w: int) -> float:
    """Image column of the ground point (x, z)."""
    return w / 2.0 + w * x / z


def _vgrad(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:h, None, None]
    return np.broadcast_to(
        (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32), (h, w, 3)
    )


def _jit(rng: np.random.Generator, color, amount: int = 12) -> Tuple[int, int, int]:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in c)


def _plaza(img: np.ndarray, rng: np.random.Generator, horizon: float, scale: float) -> None:
    h, w = img.shape[:2]
    # Large tiles, terracotta and sand, in a chequerboard on the ground.
    X, Z, y0 = _ground(h, w, horizon, scale)
    tile = float(rng.uniform(1.5, 2.5))
    parity = (np.floor(X / tile) + np.floor(Z / tile)).astype(np.int64) % 2
    a = np.asarray(_jit(rng, (120, 165, 205)), np.float32)
    b = np.asarray(_jit(rng, (80, 110, 175)), np.float32)
    ground = np.where(parity[..., None] == 1, a, b)
    fx, fz = (X / tile) % 1.0, (Z / tile) % 1.0  # grout lines: near a tile edge
    grout = (np.minimum(fx, 1 - fx) < 0.04) | (np.minimum(fz, 1 - fz) < 0.04)
    ground[grout] = ground[grout] * 0.75
    img[y0:] = np.clip(ground + _texture(rng, h - y0, w, 12, 10), 0, 255)
    # The arcade: an ochre facade over the whole width at the far end, arches along its foot.
    base = int(horizon) + 2
    img[:base] = _jit(rng, (70, 135, 195), 15)
    arch_w = max(6, int(w * rng.uniform(0.05, 0.08)))
    arch_h = max(4, int(0.7 * base))
    dark = _jit(rng, (40, 55, 80), 8)
    for x in range(int(rng.integers(0, arch_w)), w, int(arch_w * 1.6)):
        top = base - arch_h + arch_w // 2
        cv2.rectangle(img, (x, top), (x + arch_w, base), dark, -1)
        cv2.ellipse(img, (x + arch_w // 2, top), (arch_w // 2, arch_w // 2), 0, 180, 360, dark, -1)
    cv2.line(img, (0, base), (w, base), _jit(rng, (50, 80, 120)), 2)
    # A round fountain (water in a stone rim) on the ground.
    zf = float(rng.uniform(9.0, 16.0))
    xf = float(rng.uniform(-0.25, 0.25)) * zf
    cy = _row_of_depth(zf, h, w, horizon, scale)
    r_m = float(rng.uniform(1.5, 2.5))
    ax = max(3, int(w * r_m / zf))
    ay = max(2, int(abs(cy - _row_of_depth(zf + r_m, h, w, horizon, scale))))
    centre = (int(_col_of(xf, zf, w)), int(cy))
    rim, water = _jit(rng, (170, 180, 185)), _jit(rng, (150, 130, 60))
    cv2.ellipse(img, centre, (ax, ay), 0, 0, 360, rim, -1, cv2.LINE_AA)
    inner = (int(ax * 0.85), int(ay * 0.8))
    cv2.ellipse(img, centre, inner, 0, 0, 360, water, -1, cv2.LINE_AA)


def _park(img: np.ndarray, rng: np.random.Generator, horizon: float, scale: float) -> None:
    h, w = img.shape[:2]
    hz = int(horizon)
    img[: hz + 1] = _vgrad(hz + 1, w, _jit(rng, (215, 215, 200)), _jit(rng, (205, 220, 215)))
    # Tree line: overlapping dark green crowns standing on the horizon.
    for _ in range(int(w / 14)):
        cx = int(rng.uniform(0, w))
        r = int(rng.uniform(0.04, 0.09) * w)
        col = _jit(rng, (45, 95, 55), 18)
        cv2.ellipse(img, (cx, hz - r // 3), (r, int(r * 1.1)), 0, 0, 360, col, -1, cv2.LINE_AA)
    X, Z, y0 = _ground(h, w, horizon, scale)
    # Mown grass: light and dark stripes along the view (2 m wide).
    stripe = (np.floor(X / 2.0).astype(np.int64) % 2)[..., None]
    light = np.asarray(_jit(rng, (80, 165, 110)), np.float32)
    darkg = np.asarray(_jit(rng, (55, 135, 80)), np.float32)
    ground = np.where(stripe == 1, light, darkg)
    # A winding gravel path, 3 m wide.
    amp, per, phase = rng.uniform(2.0, 5.0), rng.uniform(12.0, 25.0), rng.uniform(0, 2 * math.pi)
    off = float(rng.uniform(-0.2, 0.2)) * 10.0
    centre = off + amp * np.sin(Z / per * 2 * math.pi + phase)
    path = np.abs(X - centre) < 1.5
    ground[path] = np.asarray(_jit(rng, (140, 175, 195)), np.float32)
    edge = np.abs(np.abs(X - centre) - 1.5) < 0.08
    ground[edge] = ground[edge] * 0.7
    img[y0:] = np.clip(ground + _texture(rng, h - y0, w, 6, 14), 0, 255)
    # Flower beds: clusters of coloured dots on the grass.
    for _ in range(int(rng.integers(2, 5))):
        zb = float(rng.uniform(6.0, 25.0))
        xb = float(rng.uniform(-0.45, 0.45)) * zb
        if abs(xb - (off + amp * math.sin(zb / per * 2 * math.pi + phase))) < 3.0:
            continue
        cy = _row_of_depth(zb, h, w, horizon, scale)
        ax = max(3, int(w * 1.5 / zb))
        ay = max(2, int(abs(cy - _row_of_depth(zb + 1.5, h, w, horizon, scale))))
        cx = int(_col_of(xb, zb, w))
        cv2.ellipse(img, (cx, int(cy)), (ax, ay), 0, 0, 360, (40, 70, 90), -1, cv2.LINE_AA)
        flower = ((60, 60, 220), (50, 210, 240), (170, 80, 160), (230, 230, 240))
        col = flower[int(rng.integers(len(flower)))]
        for _ in range(int(ax * ay / 4) + 3):
            px = int(cx + rng.uniform(-0.8, 0.8) * ax)
            py = int(cy + rng.uniform(-0.8, 0.8) * ay)
            cv2.circle(img, (px, py), max(1, ax // 12), col, -1)


def _hall(img: np.ndarray, rng: np.random.Generator, horizon: float, scale: float) -> None:
    h, w = img.shape[:2]
    hz = int(horizon) + 1
    # Teal tiled wall with a dark sign band.
    wall = np.asarray(_jit(rng, (150, 160, 110)), np.float32)
    img[:hz] = wall
    step = max(4, w // 60)
    for x in range(0, w, step):
        img[:hz, x] = wall * 0.85
    for y in range(0, hz, step):
        img[y, :] = wall * 0.85
    band0 = int(0.2 * hz)
    img[band0 : band0 + max(2, int(0.35 * hz))] = _jit(rng, (110, 50, 25), 8)
    for x in range(int(w * 0.05), int(w * 0.95), int(w * 0.09)):
        cv2.rectangle(
            img,
            (x, band0 + 1),
            (x + int(w * 0.05), band0 + max(1, int(0.3 * hz))),
            (235, 235, 235),
            -1,
        )
    X, Z, y0 = _ground(h, w, horizon, scale)
    s = float(rng.uniform(0.8, 1.2))
    diag = (np.floor((X + Z) / s) + np.floor((X - Z) / s)).astype(np.int64) % 2
    a = np.asarray(_jit(rng, (175, 180, 185)), np.float32)
    b = np.asarray(_jit(rng, (135, 145, 150)), np.float32)
    ground = np.where(diag[..., None] == 1, a, b)
    # A yellow tactile strip along the platform edge.
    xs = float(rng.uniform(-6.0, 6.0))
    ground[np.abs(X - xs) < 0.3] = np.asarray((40, 200, 235), np.float32)
    # Reflections of the ceiling lights: bright soft spots in rows.
    glow = np.zeros(ground.shape[:2], np.float32)
    for zl in np.arange(float(rng.uniform(4, 8)), 60.0, float(rng.uniform(6, 10))):
        for xl in (-4.0, 4.0):
            glow += np.exp(-((X - xl) ** 2 + ((Z - zl) * 0.8) ** 2) / 2.0)
    ground += 55.0 * glow[..., None]
    img[y0:] = np.clip(ground + _texture(rng, h - y0, w, 16, 6), 0, 255)


def _dusk(img: np.ndarray, rng: np.random.Generator, horizon: float, scale: float) -> None:
    h, w = img.shape[:2]
    hz = int(horizon) + 1
    img[:hz] = _vgrad(hz, w, _jit(rng, (120, 60, 70)), _jit(rng, (90, 140, 220)))
    # Building silhouettes with lit windows.
    x = int(rng.integers(-20, 0))
    while x < w:
        bw = int(rng.uniform(0.1, 0.25) * w)
        top = int(hz * rng.uniform(0.0, 0.6))
        cv2.rectangle(img, (x, top), (x + bw, hz), _jit(rng, (45, 35, 40), 8), -1)
        for wy in range(top + 4, hz - 4, 7):
            for wx in range(x + 3, x + bw - 4, 8):
                if rng.random() < 0.35:
                    cv2.rectangle(img, (wx, wy), (wx + 3, wy + 3), _jit(rng, (90, 200, 245)), -1)
        x += bw + int(rng.integers(2, 10))
    X, Z, y0 = _ground(h, w, horizon, scale)
    asphalt = np.asarray(_jit(rng, (75, 70, 72), 6), np.float32)
    ground = np.broadcast_to(asphalt, X.shape + (3,)).copy()
    walk = np.abs(X) > float(rng.uniform(3.0, 5.0))
    ground[walk] = np.asarray(_jit(rng, (95, 105, 115), 6), np.float32)
    # Pools of warm light under the street lamps, and their reflections on the wet road.
    light = np.zeros(X.shape, np.float32)
    for zl in np.arange(float(rng.uniform(5, 9)), 70.0, float(rng.uniform(10, 16))):
        for xl in (-5.0, 5.0):
            light += np.exp(-((X - xl) ** 2 + (Z - zl) ** 2) / 6.0)
            light += 0.5 * np.exp(-((X - xl * 0.8) ** 2) / 0.15 - ((Z - zl - 4.0) ** 2) / 30.0)
    ground += light[..., None] * np.asarray((40, 110, 170), np.float32)
    img[y0:] = np.clip(ground + _texture(rng, h - y0, w, 4, 8), 0, 255)


SCENES: Dict[str, Callable[[np.ndarray, np.random.Generator, float, float], None]] = {
    "plaza": _plaza,
    "park": _park,
    "hall": _hall,
    "dusk": _dusk,
}


def make_site_backdrop(
    rng: np.random.Generator,
    width: int,
    height: int,
    scene: str,
    horizon_frac: float,
    bottom_person_frac: float,
) -> Backdrop:
    """Render a background of the target site.

    Args:
        rng: Random generator.
        width: Image width.
        height: Image height.
        scene: One of :data:`SCENES`.
        horizon_frac: Horizon row as a fraction of the height.
        bottom_person_frac: Height of a person standing on the bottom row, as a fraction of the
            image height (small with a high camera: steep perspective).

    Returns:
        A :class:`~.backdrop.Backdrop` (uint8 (height, width, 3) BGR image and perspective).
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; expected one of {sorted(SCENES)}")
    horizon = float(round(horizon_frac * height))
    scale = bottom_person_frac * height / max(1.0, height - horizon)
    img = np.zeros((height, width, 3), np.uint8)
    SCENES[scene](img, rng, horizon, scale)
    return Backdrop(image=img, horizon=horizon, scale=float(scale))


def front_occluders(
    rng: np.random.Generator,
    width: int,
    height: int,
    specs: Sequence[Tuple[str, float, float]],
) -> Optional[Tuple[np.ndarray, np.ndarray, Tuple[Tuple[int, int, int, int], ...]]]:
    """Draw the objects standing in front of everyone in a camera's view.

    Args:
        rng: Random generator (colours, the height of a sign).
        width: Image width.
        height: Image height.
        specs: (kind, centre column, width), columns as fractions of the width; kind
            "pillar" (a round concrete column over the whole height) or "post" (a dark metal
            post over the whole height, with a sign).

    Returns:
        None without objects, else (flat pixel indices [P] int64, their BGR colours [P, 3]
        float32, the XYXY boxes ((x0, y0, x1, y1), ...) of the objects).
    """
    if not specs:
        return None
    canvas = np.zeros((height, width, 3), np.float32)
    mask = np.zeros((height, width), bool)
    boxes = []
    for kind, centre, frac in specs:
        wpx = max(2, int(round(frac * width)))
        x0 = int(round(centre * width - wpx / 2.0))
        x0, x1 = max(0, x0), min(width, x0 + wpx)
        if x1 <= x0:
            continue
        u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - (x0 + x1) / 2.0) / max(1.0, wpx / 2.0)
        shade = (0.55 + 0.45 * np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0)))[None, :, None]
        box = [x0, 0, x1, height]
        if kind == "pillar":
            base = np.asarray(_jit(rng, (150, 155, 160), 10), np.float32)
            canvas[:, x0:x1] = base * shade
            band = int(height * 0.12)
            canvas[band : band + max(2, height // 40), x0:x1] *= 0.7
        elif kind == "post":
            base = np.asarray(_jit(rng, (60, 70, 55), 8), np.float32)
            canvas[:, x0:x1] = base * shade
            sy = int(height * rng.uniform(0.15, 0.3))
            sx0, sx1 = max(0, x0 - wpx), min(width, x1 + wpx)
            canvas[sy : sy + max(3, height // 14), sx0:sx1] = np.asarray((150, 90, 30), np.float32)
            mask[sy : sy + max(3, height // 14), sx0:sx1] = True
            box = [min(x0, sx0), 0, max(x1, sx1), height]
        else:
            raise ValueError(f"unknown occluder kind {kind!r}; expected 'pillar' or 'post'")
        mask[:, x0:x1] = True
        boxes.append(tuple(box))
    idx = np.flatnonzero(mask.ravel())
    return idx, canvas.reshape(-1, 3)[idx].copy(), tuple(boxes)
