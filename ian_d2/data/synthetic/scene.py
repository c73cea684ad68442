"""Composition of one scene: backdrop, clutter and people, depth-sorted, then photometry.

A :class:`SceneSpec` fully determines the output image (it carries its own seed), so scenes can
be rendered in any order or in worker processes and still give identical bytes.
"""

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .backdrop import Clutter, draw_clutter, make_backdrop, sample_clutter
from .identities import Appearance
from .render import draw_person, sample_pose

__all__ = [
    "CameraStyle",
    "PersonSpec",
    "SceneSpec",
    "PersonResult",
    "render_scene",
    "render_to_file",
    "render_many",
]

_OCCLUDER_KINDS = ("box", "bush", "bin", "bench", "bollard", "box", "bush")
_MIN_VISIBLE = 0.3


@dataclass(frozen=True)
class CameraStyle:
    """Colour cast and lighting of a camera.

    Attributes:
        gain: Per-channel (B, G, R) multiplicative colour cast.
        brightness: Additive brightness offset.
        contrast: Contrast factor around mid-grey.
    """

    gain: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    brightness: float = 0.0
    contrast: float = 1.0

    @staticmethod
    def sample(rng: np.random.Generator, strength: float = 1.0) -> "CameraStyle":
        """Sample a random camera style; ``strength`` scales how far it is from neutral."""
        gain = tuple(float(1.0 + strength * v) for v in rng.uniform(-0.12, 0.12, 3))
        return CameraStyle(
            gain=gain,
            brightness=float(strength * rng.uniform(-20, 20)),
            contrast=float(1.0 + strength * rng.uniform(-0.15, 0.1)),
        )


@dataclass(frozen=True)
class PersonSpec:
    """A person to place in a scene.

    Attributes:
        appearance: Who it is.
        tag: Caller's label, returned with the result (identity index or -1).
        anchor: (foot x, foot y) as fractions of the image size, or None to place at random.
        facing: Facing direction, or None for random.
        occluder: Whether to put a clutter object right in front of this person.
    """

    appearance: Appearance
    tag: int = -1
    anchor: Optional[Tuple[float, float]] = None
    facing: Optional[str] = None
    occluder: bool = False


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one image.

    Attributes:
        seed: Seed of this image (a tuple of ints for ``np.random.default_rng``).
        width: Image width.
        height: Image height.
        persons: The people in it.
        camera: Camera style (colour cast, lighting).
        backdrop_seed: Seed of a shared (per camera) backdrop and its static clutter; None means
            a backdrop of its own, drawn from ``seed``.
        backdrop_args: (horizon_frac, bottom_person_frac, indoor) for a shared backdrop.
        static_clutter: Number of static clutter objects of a shared backdrop.
        clutter: Number of random clutter objects of this image.
        allow_cut: Whether people may extend past the image border.
        min_person_frac: Smallest person height for random placement, as a fraction of the
            image height.
        occluder_prob: Not used for placement of the given persons (their ``occluder`` flag is);
            kept for reference of the generator settings.
    """

    seed: Tuple[int, ...]
    width: int
    height: int
    persons: Tuple[PersonSpec, ...]
    camera: CameraStyle = CameraStyle()
    backdrop_seed: Optional[Tuple[int, ...]] = None
    backdrop_args: Tuple = (None, None, None)
    static_clutter: int = 0
    clutter: int = 3
    allow_cut: bool = False
    min_person_frac: float = 0.14
    occluder_prob: float = 0.0


@dataclass
class PersonResult:
    """Where a person ended up.

    Attributes:
        tag: The :attr:`PersonSpec.tag`.
        box: Tight (x, y, w, h) of the drawn figure in image pixels, NOT clipped to the image.
        visible: Fraction of the figure's pixels that are visible (inside the image and not
            hidden by anything drawn in front of it).
    """

    tag: int
    box: Tuple[int, int, int, int]
    visible: float = 1.0
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=16)
def _shared_backdrop(seed: Tuple[int, ...], w: int, h: int, args: Tuple, n_static: int):
    rng = np.random.default_rng(list(seed))
    bd = make_backdrop(rng, w, h, *args)
    clutter = sample_clutter(rng, bd, n_static, w, h)
    return bd, tuple(clutter)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _composite(img, owner, patch, ox: int, oy: int, index: int) -> int:
    """Blend ``patch`` at offset (ox, oy) into ``img``; returns the number of opaque pixels."""
    H, W = img.shape[:2]
    ph, pw = patch.alpha.shape
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(W, ox + pw), min(H, oy + ph)
    if x1 <= x0 or y1 <= y0:
        return 0
    a = patch.alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    c = patch.color[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    region = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = region * (1.0 - a[..., None]) + c
    solid = a > 0.5
    owner[y0:y1, x0:x1][solid] = index
    return int(solid.sum())


def _photometry(img: np.ndarray, rng: np.random.Generator, cam: CameraStyle) -> np.ndarray:
    gain = np.asarray(cam.gain, np.float32) * np.float32(rng.uniform(0.95, 1.05))
    contrast = cam.contrast * rng.uniform(0.9, 1.1)
    bright = cam.brightness + rng.uniform(-15, 15)
    out = (img * gain - 128.0) * np.float32(contrast) + np.float32(128.0 + bright)
    if rng.random() < 0.3:
        sigma = float(rng.uniform(0.5, 1.3))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    noise = rng.standard_normal(out.shape[:2], dtype=np.float32) * np.float32(rng.uniform(1.5, 4))
    out += noise[..., None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _render_once(spec: SceneSpec, attempt: int, clutter_in_front: bool = True):
    rng = np.random.default_rng(list(spec.seed) + [attempt])
    W, H = spec.width, spec.height
    if spec.backdrop_seed is not None:
        bd, static = _shared_backdrop(
            tuple(spec.backdrop_seed), W, H, tuple(spec.backdrop_args), spec.static_clutter
        )
    else:
        bd, static = make_backdrop(rng, W, H), ()
    items: List[Tuple[float, int, object]] = []  # (depth, order, payload)
    for c in static:
        items.append((c.foot_y if clutter_in_front else -1.0, len(items), c))
    for c in sample_clutter(rng, bd, spec.clutter, W, H):
        items.append((c.foot_y if clutter_in_front else -1.0, len(items), c))

    placed = []  # (x0, y0, x1, y1) approximate boxes for overlap rejection
    people = []
    min_h = spec.min_person_frac * H
    y_lo = bd.foot_for_height(min_h)
    for i, ps in enumerate(spec.persons):
        pose = sample_pose(rng, ps.facing)
        jitter = float(rng.uniform(0.95, 1.05))
        for _ in range(12):
            if ps.anchor is not None:
                fx = ps.anchor[0] * W + rng.uniform(-2, 2)
                fy = ps.anchor[1] * H + rng.uniform(-1, 1)
            else:
                fy = float(rng.uniform(min(y_lo, H - 3), H - 2))
            ph = max(min_h * 0.9, bd.person_height(fy)) * ps.appearance.height * jitter
            if ps.anchor is None:
                margin = 0.3 * ph + 2
                if spec.allow_cut:
                    fx = float(rng.uniform(0.0, W))  # foot inside: at least half visible
                else:
                    fx = float(rng.uniform(margin, max(margin + 1, W - margin)))
                ph = min(ph, fy - 2) if not spec.allow_cut else ph
            approx = (fx - 0.2 * ph, fy - ph, fx + 0.2 * ph, fy)
            if ps.anchor is not None or all(_iou(approx, b) < 0.3 for b in placed):
                break
        placed.append(approx)
        people.append((i, ps, pose, fx, fy, ph))
        items.append((fy, len(items), ("person", len(people) - 1)))
        if ps.occluder and clutter_in_front:
            kind = _OCCLUDER_KINDS[int(rng.integers(len(_OCCLUDER_KINDS)))]
            oc = Clutter(
                kind=kind,
                x=float(fx + rng.uniform(-0.35, 0.35) * ph),
                foot_y=float(min(H + 5.0, fy + rng.uniform(2, 10))),
                size=float(rng.uniform(0.7, 1.1)),
                color=tuple(int(v) for v in rng.integers(30, 220, 3)),
            )
            items.append((oc.foot_y, len(items), oc))

    img = bd.image.astype(np.float32)
    owner = np.full((H, W), -1, np.int32)
    total = [0] * len(people)
    results: List[Optional[PersonResult]] = [None] * len(people)
    items.sort(key=lambda t: (t[0], t[1]))
    mask = np.zeros((H, W), np.uint8)
    for _, _, payload in items:
        if isinstance(payload, Clutter):
            canvas = np.clip(img, 0, 255).astype(np.uint8)
            mask[:] = 0
            draw_clutter(canvas, mask, payload, bd)
            hit = mask > 0
            img[hit] = canvas[hit]
            owner[hit] = -1
            continue
        k = payload[1]
        i, ps, pose, fx, fy, ph = people[k]
        patch = draw_person(ps.appearance, ph, pose)
        ox = int(round(fx - patch.foot[0]))
        oy = int(round(fy - patch.foot[1]))
        _composite(img, owner, patch, ox, oy, k)
        total[k] = int((patch.alpha > 0.5).sum())
        bx0, by0, bx1, by1 = patch.bbox
        results[k] = PersonResult(
            tag=ps.tag, box=(ox + bx0, oy + by0, bx1 - bx0, by1 - by0), extra={"index": i}
        )
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(people))
    for k, r in enumerate(results):
        r.visible = float(counts[k]) / max(1, total[k])
    out = _photometry(img, rng, spec.camera)
    return out, results


def render_scene(spec: SceneSpec) -> Tuple[np.ndarray, List[PersonResult]]:
    """Render a scene.

    A labeled person (``tag >= 0``) that ends up almost entirely hidden triggers a re-draw with
    a derived seed (a few attempts, the last one with all clutter behind the people), so labeled
    persons stay at least partly visible (people can still hide each other, and PRW people can
    be cut by the image border).

    Args:
        spec: The scene.

    Returns:
        The uint8 BGR image and one :class:`PersonResult` per person of ``spec.persons``, in the
        same order.
    """
    for attempt in range(4):
        # The last attempt draws all clutter behind the people.
        img, results = _render_once(spec, attempt, clutter_in_front=attempt < 3)
        if all(r.visible >= _MIN_VISIBLE for r in results if r.tag >= 0):
            break
    return img, results


def render_to_file(spec: SceneSpec, path: str, quality: int = 92) -> List[PersonResult]:
    """Render ``spec`` and write it as a JPEG at ``path``; returns the person results."""
    img, results = render_scene(spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise IOError(f"could not encode {path}")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return results


def _render_job(job):
    spec, path, quality = job
    return render_to_file(spec, path, quality)


def render_many(
    specs: Sequence[SceneSpec], paths: Sequence[str], quality: int = 92, workers: int = 1
) -> List[List[PersonResult]]:
    """Render and write many scenes, optionally in worker processes.

    The output does not depend on ``workers``: every scene carries its own seed.

    Args:
        specs: The scenes.
        paths: Output JPEG path of each scene.
        quality: JPEG quality.
        workers: Number of processes (1 = in this process).

    Returns:
        The person results of each scene, in order.
    """
    jobs = [(s, p, quality) for s, p in zip(specs, paths)]
    if workers <= 1 or len(jobs) < 2:
        return [_render_job(j) for j in jobs]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        return list(ex.map(_render_job, jobs, chunksize=16))
