"""Drawing of one pedestrian figure into a small RGBA-like patch.

The figure is drawn with OpenCV primitives (ellipses, polygons, thick lines) onto a black colour
patch and, in parallel, onto an alpha mask. Colours drawn over black with anti-aliasing are
premultiplied by the alpha, so the caller composites with ``image * (1 - alpha) + patch``.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .identities import Appearance

__all__ = ["Pose", "PersonPatch", "sample_pose", "draw_person"]

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
FACINGS = ("left", "right", "front", "back")


@dataclass(frozen=True)
class Pose:
    """Per-image pose of a person.

    Attributes:
        facing: One of "left", "right", "front", "back".
        stride: Leg stride / stance in [0, 1].
        swing: Arm swing in [-1, 1].
    """

    facing: str
    stride: float
    swing: float


@dataclass
class PersonPatch:
    """A rendered person.

    Attributes:
        color: float32 (h, w, 3) premultiplied colour.
        alpha: float32 (h, w) coverage in [0, 1].
        foot: (x, y) of the foot point inside the patch.
        bbox: Tight (x0, y0, x1, y1) of the drawn figure inside the patch (x1, y1 exclusive).
    """

    color: np.ndarray
    alpha: np.ndarray
    foot: Tuple[float, float]
    bbox: Tuple[int, int, int, int]


def sample_pose(rng: np.random.Generator, facing: Optional[str] = None) -> Pose:
    """Sample a random pose (optionally with a fixed facing direction).

    Args:
        rng: Random generator.
        facing: Facing direction to keep, or None to sample one.

    Returns:
        A :class:`Pose`.
    """
    if facing is None:
        facing = FACINGS[int(rng.choice(4, p=[0.3, 0.3, 0.22, 0.18]))]
    return Pose(facing=facing, stride=float(rng.uniform(0.0, 1.0)), swing=float(rng.uniform(-1, 1)))


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _shade(color, factor: float) -> Tuple[float, float, float]:
    return tuple(float(min(255.0, c * factor)) for c in color)


class _Pen:
    """Draws every primitive on the colour patch and the alpha mask at once."""

    def __init__(self, h: int, w: int):
        self.img = np.zeros((h, w, 3), np.uint8)
        self.mask = np.zeros((h, w), np.uint8)

    def poly(self, pts, color):
        p = np.array([_pt(x, y) for x, y in pts], np.int32)
        cv2.fillConvexPoly(self.img, p, color, _AA, _SHIFT)
        cv2.fillConvexPoly(self.mask, p, 255, _AA, _SHIFT)

    def ellipse(self, c, axes, color, start=0, end=360, angle=0.0):
        ax = (max(1, int(round(axes[0] * _ONE))), max(1, int(round(axes[1] * _ONE))))
        cv2.ellipse(self.img, _pt(*c), ax, angle, start, end, color, -1, _AA, _SHIFT)
        cv2.ellipse(self.mask, _pt(*c), ax, angle, start, end, 255, -1, _AA, _SHIFT)

    def limb(self, pts, thickness: float, color):
        t = max(1, int(round(thickness)))
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(self.img, _pt(*a), _pt(*b), color, t, _AA, _SHIFT)
            cv2.line(self.mask, _pt(*a), _pt(*b), 255, t, _AA, _SHIFT)

    def line(self, a, b, thickness: float, color):
        t = max(1, int(round(thickness)))
        cv2.line(self.img, _pt(*a), _pt(*b), color, t, _AA, _SHIFT)
        cv2.line(self.mask, _pt(*a), _pt(*b), 255, t, _AA, _SHIFT)


def _apply_pattern(pen: _Pen, torso_mask: np.ndarray, app: Appearance, y_top: float, B: float):
    """Paint the clothing pattern of ``app`` inside ``torso_mask`` (uint8, >127 = torso)."""
    if app.pattern == "plain":
        return
    ys, xs = np.nonzero(torso_mask > 127)
    if ys.size == 0:
        return
    period = max(2.0, app.stripe * B)
    if app.pattern == "stripes":
        sel = (np.floor((ys - y_top) / period).astype(np.int64) % 2) == 1
    elif app.pattern == "checks":
        cell = (np.floor((ys - y_top) / period) + np.floor(xs / period)).astype(np.int64)
        sel = cell % 2 == 1
    else:  # two_tone
        y_mid = ys.min() + 0.5 * (ys.max() - ys.min())
        sel = ys > y_mid
    pen.img[ys[sel], xs[sel]] = app.upper2


def draw_person(app: Appearance, height: float, pose: Pose) -> PersonPatch:
    """Draw a pedestrian.

    Args:
        app: Identity appearance.
        height: Target figure height in pixels (head/hat top to the soles).
        pose: Pose of this instance.

    Returns:
        The rendered :class:`PersonPatch`.
    """
    P = float(max(12.0, height))
    w = int(np.ceil(0.75 * P)) + 6
    h = int(np.ceil(P)) + 4
    pen = _Pen(h, w)
    cx = w / 2.0
    hat = "hat" in app.accessories
    y0 = 1.0 + (0.045 * P if hat else 0.0)
    yf = P + 1.0  # sole line
    B = yf - y0
    wf = app.width
    side = pose.facing in ("left", "right")
    d = 1.0 if pose.facing == "right" else -1.0
    rh = 0.064 * B
    rw = rh * 0.82
    head_c = (cx + (0.012 * B * d if side else 0.0), y0 + rh)
    ys = y0 + 2 * rh + 0.022 * B  # shoulder line
    yh = y0 + 0.53 * B  # hip line
    sh = 0.028 * B  # shoe height
    y_sole = yf - sh * 0.5
    if side:
        sw, hw = 0.085 * B * wf, 0.08 * B * wf
    else:
        sw, hw = 0.13 * B * wf, 0.1 * B * wf
    lt = 0.085 * B * wf
    at = 0.055 * B * wf
    skin = app.skin
    dark = 0.75

    # Legs: list of (hip, knee, foot, far?) in drawing order.
    legs = []
    if side:
        st = (0.04 + 0.14 * pose.stride) * B
        kx = 0.025 * B * d
        for sgn, far in ((-1.0, True), (1.0, False)):
            foot = (cx + sgn * st / 2, y_sole - sh * 0.3)
            knee = ((cx + foot[0]) / 2 + kx, (yh + foot[1]) / 2)
            legs.append(((cx, yh), knee, foot, far))
    else:
        spread = (0.01 + 0.05 * pose.stride) * B
        for sgn in (-1.0, 1.0):
            hip = (cx + sgn * 0.05 * B * wf, yh)
            foot = (cx + sgn * (0.05 * B * wf + spread), y_sole - sh * 0.3)
            knee = ((hip[0] + foot[0]) / 2, (yh + foot[1]) / 2)
            legs.append((hip, knee, foot, False))

    # Arms: (shoulder, elbow, hand, far?).
    arms = []
    arm_len = 0.34 * B
    if side:
        for sgn, far in ((-1.0, True), (1.0, False)):
            th = sgn * pose.swing * 0.55
            sx, sy = cx, ys + at * 0.5
            hx, hy = sx + d * arm_len * np.sin(th), sy + arm_len * np.cos(th)
            ex, ey = (sx + hx) / 2 - d * 0.01 * B, (sy + hy) / 2
            arms.append(((sx, sy), (ex, ey), (hx, hy), far))
    else:
        out = 0.02 * B + 0.03 * B * abs(pose.swing)
        for sgn in (-1.0, 1.0):
            sx, sy = cx + sgn * (sw - at * 0.45), ys + at * 0.5
            hx, hy = sx + sgn * out, sy + arm_len
            arms.append(
                ((sx, sy), ((sx + hx) / 2 + sgn * 0.01 * B, (sy + hy) / 2), (hx, hy), False)
            )

    def draw_leg(leg):
        hip, knee, foot, far = leg
        f = dark if far else 1.0
        if app.lower_style == "trousers":
            pen.limb([hip, knee, foot], lt, _shade(app.lower, f))
        else:
            pen.limb([hip, knee, foot], lt * 0.8, _shade(skin, f))
            if app.lower_style == "shorts":
                pen.limb([hip, knee], lt * 1.05, _shade(app.lower, f))
        fx = foot[0] + (d * 0.03 * B if side else 0.0)
        pen.ellipse((fx, y_sole), (0.045 * B if side else 0.035 * B, sh), _shade(app.shoes, f))

    def draw_arm(arm):
        s, e, hnd, far = arm
        f = dark if far else 1.0
        if app.sleeves == "long":
            pen.limb([s, e, hnd], at, _shade(app.upper, f))
        else:
            pen.limb([e, hnd], at * 0.8, _shade(skin, f))
            pen.limb([s, e], at * 1.05, _shade(app.upper, f))
        pen.ellipse(hnd, (at * 0.55, at * 0.6), _shade(skin, f))

    backpack = "backpack" in app.accessories
    acc = app.accessory_color

    # Long hair behind the head and shoulders.
    if app.hair_style == "long":
        hx = head_c[0] - (d * rw * 0.3 if side else 0.0)
        pen.poly(
            [
                (hx - rw * 1.05, head_c[1]),
                (hx + rw * 1.05, head_c[1]),
                (hx + rw, ys + 0.06 * B),
                (hx - rw, ys + 0.06 * B),
            ],
            app.hair,
        )
    # Far limbs and the side-view backpack are behind the body.
    for leg in legs:
        if leg[3]:
            draw_leg(leg)
    for arm in arms:
        if arm[3]:
            draw_arm(arm)
    if backpack and side:
        bx0 = cx - d * (sw * 0.6)
        bx1 = cx - d * (sw + 0.08 * B)
        pen.poly(
            [
                (bx0, ys + 0.01 * B),
                (bx1, ys + 0.03 * B),
                (bx1, ys + 0.26 * B),
                (bx0, ys + 0.28 * B),
            ],
            acc,
        )
    for leg in legs:
        if not leg[3]:
            draw_leg(leg)

    # Hip block / skirt.
    if app.lower_style == "skirt":
        pen.poly(
            [
                (cx - hw, yh - 0.03 * B),
                (cx + hw, yh - 0.03 * B),
                (cx + hw * 1.5, yh + 0.19 * B),
                (cx - hw * 1.5, yh + 0.19 * B),
            ],
            app.lower,
        )
    else:
        pen.poly(
            [
                (cx - hw, yh - 0.04 * B),
                (cx + hw, yh - 0.04 * B),
                (cx + hw, yh + 0.05 * B),
                (cx - hw, yh + 0.05 * B),
            ],
            app.lower,
        )

    # Neck and torso (with its pattern).
    pen.limb([(cx, ys - 0.03 * B), (cx, ys + 0.01 * B)], 0.045 * B, skin)
    torso = [(cx - sw, ys), (cx + sw, ys), (cx + hw, yh), (cx - hw, yh)]
    torso_mask = np.zeros(pen.mask.shape, np.uint8)
    tp = np.array([_pt(x, y) for x, y in torso], np.int32)
    cv2.fillConvexPoly(torso_mask, tp, 255, cv2.LINE_8, _SHIFT)
    pen.poly(torso, app.upper)
    _apply_pattern(pen, torso_mask, app, ys, B)
    if backpack and pose.facing == "back":
        pen.poly(
            [
                (cx - sw * 0.7, ys + 0.02 * B),
                (cx + sw * 0.7, ys + 0.02 * B),
                (cx + sw * 0.75, ys + 0.27 * B),
                (cx - sw * 0.75, ys + 0.27 * B),
            ],
            acc,
        )
    elif backpack and pose.facing == "front":
        for sgn in (-1.0, 1.0):
            pen.line((cx + sgn * sw * 0.55, ys), (cx + sgn * hw * 0.6, ys + 0.2 * B), 0.02 * B, acc)
    elif backpack:
        pen.line((cx - d * sw * 0.3, ys), (cx - d * hw * 0.2, ys + 0.2 * B), 0.02 * B, acc)

    for arm in arms:
        if not arm[3]:
            draw_arm(arm)

    # Bag on a shoulder strap.
    if "bag" in app.accessories:
        bs = 1.0 if not side else d
        bx = cx + bs * (hw + 0.03 * B)
        by = yh - 0.04 * B
        pen.line((cx - bs * sw * 0.6, ys), (bx, by), 0.015 * B, _shade(acc, 0.8))
        pen.poly(
            [
                (bx - 0.05 * B, by),
                (bx + 0.05 * B, by),
                (bx + 0.055 * B, by + 0.11 * B),
                (bx - 0.055 * B, by + 0.11 * B),
            ],
            acc,
        )

    # Head, hair, hat.
    pen.ellipse(head_c, (rw, rh), skin)
    if app.hair_style != "bald":
        if pose.facing == "back":
            pen.ellipse(head_c, (rw * 1.04, rh * 1.04), app.hair)
        elif side:
            pen.ellipse(head_c, (rw * 1.05, rh * 1.05), app.hair, 180, 360)
            start = 90 if d > 0 else -90
            pen.ellipse(head_c, (rw * 1.05, rh * 1.05), app.hair, start, start + 180)
        else:
            pen.ellipse((head_c[0], head_c[1] - rh * 0.05), (rw * 1.05, rh), app.hair, 180, 360)
    elif pose.facing == "back":
        pen.ellipse(head_c, (rw, rh), _shade(skin, 0.9))
    if hat:
        pen.ellipse((head_c[0], head_c[1] - rh * 0.25), (rw * 1.12, rh * 0.95), acc, 180, 360)
        bw = rw * (1.5 if not side else 1.2)
        bxc = head_c[0] + (d * rw * 0.5 if side else 0.0)
        pen.line(
            (bxc - bw, head_c[1] - rh * 0.25), (bxc + bw, head_c[1] - rh * 0.25), 0.015 * B, acc
        )

    alpha = pen.mask.astype(np.float32) * (1.0 / 255.0)
    ys_, xs_ = np.nonzero(pen.mask > 127)
    bbox = (int(xs_.min()), int(ys_.min()), int(xs_.max()) + 1, int(ys_.max()) + 1)
    return PersonPatch(color=pen.img.astype(np.float32), alpha=alpha, foot=(cx, yf), bbox=bbox)
