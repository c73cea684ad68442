"""The target site of the synthetic videos: its cameras' look and its population.

The source site (:mod:`.video_camera`) is what the models are trained on: two street cameras
at about eye level, a mild random colour cast, sharp frames, people of the training palette.
The target site stands for a user's own footage, to adapt to and to measure on. It differs in
every respect a model could lean on:

* **look**: each camera has a :class:`SiteLook`, chosen by its name (``cam1`` .. ``cam4``, then
  variants of these): a white-balance cast, its own lighting (brightness, contrast, gamma: a
  bright warm plaza, a hazy green park, a dim blue station hall, an orange dusk street with a
  vignette), Gaussian optical blur and more sensor noise. Strong enough to move the embeddings,
  mild enough that a detector trained at the source site still finds about half of the people
  (docs/DATASETS.md says how this was measured);
* **places**: backgrounds of another palette and structure (:mod:`.site_backdrop`);
* **viewpoint**: higher cameras, so the horizon is near the top of the frame and the
  perspective is steeper (a person grows slowly towards the bottom), persons smaller on
  average and over a wider range of sizes;
* **occluders**: pillars and sign posts in front of everyone in some cameras, and standing
  objects (the clutter of :mod:`.backdrop`);
* **population**: identities drawn from their own random stream, wearing clothes of a shifted
  palette (:data:`TARGET_PALETTE`, every colour at least 25 grey levels per channel from every
  colour of the training palette, more than its jitter), so none can be a training identity.

:func:`make_site_camera` builds a camera of the site and :func:`finish_frame` turns a
composited frame into what that camera records.
"""

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from .identities import ClothingPalette
from .scene import CameraStyle
from .site_backdrop import front_occluders, make_site_backdrop
from .video_camera import Camera, _static_clutter
from .video_config import VideoConfig

__all__ = [
    "SiteLook",
    "TARGET_LOOKS",
    "TARGET_PALETTE",
    "TARGET_STREAM",
    "site_look",
    "make_site_camera",
    "look_json",
    "finish_frame",
]

TARGET_STREAM = 7919  # added to the seed of the target site's random streams

TARGET_PALETTE = ClothingPalette(
    upper=(
        (70, 70, 62),  # charcoal
        (196, 206, 188),  # ash
        (150, 160, 110),  # teal grey
        (120, 120, 20),  # teal
        (140, 100, 170),  # dusty rose
        (90, 170, 200),  # khaki
        (80, 90, 170),  # brick
        (70, 40, 150),  # crimson
        (170, 120, 150),  # lavender
        (100, 160, 110),  # sage
        (20, 150, 170),  # mustard
        (120, 80, 70),  # slate blue
        (200, 170, 80),  # cyan
        (90, 110, 200),  # salmon
        (60, 90, 60),  # forest
        (130, 150, 170),  # taupe
    ),
    lower=(
        (60, 55, 50),  # charcoal
        (100, 70, 40),  # ink blue
        (170, 130, 90),  # light denim
        (150, 170, 160),  # stone
        (40, 80, 140),  # rust
        (90, 100, 70),  # moss
        (190, 200, 205),  # cream
        (70, 40, 80),  # plum
        (120, 150, 180),  # sand
    ),
)
"""The clothing colours (BGR) of the target site's population."""


@dataclass(frozen=True)
class SiteLook:
    """How one camera of the target site sees its place.

    Attributes:
        name: What the camera watches ("plaza", ...).
        scene: Background kind (:data:`.site_backdrop.SCENES`).
        horizon_frac: Horizon row as a fraction of the frame height (small: a high camera).
        bottom_person_frac: Height of a person on the bottom row, as a fraction of the frame
            height (with ``horizon_frac``, the steepness of the perspective).
        gain: White balance, per-channel (B, G, R) multiplier.
        contrast: Contrast around mid-grey.
        brightness: Offset, in grey levels, added after the contrast.
        gamma: Tone curve exponent on [0, 1] (above 1: darker mid-tones).
        blur: Gaussian optical blur, sigma in pixels at a width of 640 (scaled with the width).
        noise: Sensor noise, standard deviation in grey levels.
        vignette: Darkening of the corners (0: none; 0.5: the corners at about half).
        occluders: Objects in front of everyone: (kind, centre column, width), columns as
            fractions of the frame width; kind "pillar" or "post".
        clutter: (min, max) standing objects (benches, bins, trees...); None: the run's
            ``static_clutter``.
    """

    name: str
    scene: str
    horizon_frac: float
    bottom_person_frac: float
    gain: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0
    blur: float = 0.0
    noise: float = 2.0
    vignette: float = 0.0
    occluders: Tuple[Tuple[str, float, float], ...] = ()
    clutter: Optional[Tuple[int, int]] = None


TARGET_LOOKS: Tuple[SiteLook, ...] = (
    SiteLook(  # cam1: midday plaza, a warm yellow cast, washed-out highlights
        name="plaza",
        scene="plaza",
        horizon_frac=0.14,
        bottom_person_frac=0.6,
        gain=(0.84, 0.97, 1.12),
        contrast=1.05,
        brightness=8.0,
        gamma=0.88,
        blur=0.5,
        noise=2.5,
    ),
    SiteLook(  # cam2: overcast park, green fluorescent tint, hazy and low in contrast
        name="park",
        scene="park",
        horizon_frac=0.2,
        bottom_person_frac=0.62,
        gain=(0.96, 1.07, 0.92),
        contrast=0.92,
        brightness=6.0,
        gamma=1.0,
        blur=0.6,
        noise=3.0,
        occluders=(("post", 0.7, 0.025),),
        clutter=(3, 5),
    ),
    SiteLook(  # cam3: dim station hall, cold blue cast, pillars, a very high camera
        name="hall",
        scene="hall",
        horizon_frac=0.1,
        bottom_person_frac=0.58,
        gain=(1.14, 1.0, 0.88),
        contrast=0.92,
        brightness=-10.0,
        gamma=1.08,
        blur=0.5,
        noise=3.5,
        occluders=(("pillar", 0.3, 0.07), ("pillar", 0.82, 0.05)),
    ),
    SiteLook(  # cam4: street at dusk, sodium-orange light, dark, noisy, soft, vignetted
        name="dusk",
        scene="dusk",
        horizon_frac=0.28,
        bottom_person_frac=0.64,
        gain=(0.78, 0.93, 1.16),
        contrast=0.9,
        brightness=-10.0,
        gamma=1.1,
        blur=0.7,
        noise=3.5,
        vignette=0.3,
        occluders=(("pillar", 0.5, 0.05),),
    ),
)
"""The looks of ``cam1`` .. ``cam4``; camera k > 4 gets a variant of look ``(k - 1) % 4``."""


def site_look(rng: np.random.Generator, index: int) -> SiteLook:
    """The look of the camera number ``index`` (0-based) of the target site.

    Cameras 0-3 get :data:`TARGET_LOOKS`; a further camera a variant of one of them (another
    cast, horizon, blur and occluder place), drawn from ``rng``.
    """
    base = TARGET_LOOKS[index % len(TARGET_LOOKS)]
    if index < len(TARGET_LOOKS):
        return base
    gain = tuple(float(g * rng.uniform(0.88, 1.12)) for g in base.gain)
    occluders = tuple((k, float(rng.uniform(0.2, 0.8)), w) for k, _, w in base.occluders)
    return dataclasses.replace(
        base,
        name=f"{base.name}{index // len(TARGET_LOOKS) + 1}",
        horizon_frac=float(np.clip(base.horizon_frac + rng.uniform(-0.05, 0.05), 0.04, 0.35)),
        gain=gain,
        blur=float(base.blur * rng.uniform(0.8, 1.2)),
        occluders=occluders,
    )


def make_site_camera(rng: np.random.Generator, name: str, index: int, cfg: VideoConfig) -> Camera:
    """A camera of the target site: its look, background, standing objects and occluders.

    Args:
        rng: Random generator of the site's cameras.
        name: Camera name (``cam<index + 1>``).
        index: Camera number, 0-based (picks the look, :func:`site_look`).
        cfg: The run's settings (frame size, ``static_clutter``).

    Returns:
        A :class:`~.video_camera.Camera` with ``look`` (and ``front`` where it has occluders).
    """
    W, H = cfg.frame_size
    look = site_look(rng, index)
    bd = make_site_backdrop(rng, W, H, look.scene, look.horizon_frac, look.bottom_person_frac)
    lo, hi = look.clutter if look.clutter is not None else cfg.static_clutter
    clutter = _static_clutter(rng, bd, int(rng.integers(lo, hi + 1)), W, H)
    return Camera(
        name=name,
        backdrop=bd,
        style=CameraStyle(),
        focal=float(W),
        clutter=clutter,
        look=look,
        front=front_occluders(rng, W, H, look.occluders),
    )


def look_json(cam: Camera) -> Dict[str, Any]:
    """The look of a target-site camera for annotations.json (tuples as lists)."""
    d = dataclasses.asdict(cam.look)
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
    out["occluders"] = [list(o) for o in cam.look.occluders]
    return out


@functools.lru_cache(maxsize=32)
def _tone_lut(look: SiteLook) -> np.ndarray:
    """uint8 (1, 256, 3) table: white balance, contrast, brightness and gamma per channel."""
    x = np.arange(256, dtype=np.float64)[:, None] / 255.0
    y = (x * np.asarray(look.gain)[None, :] - 0.5) * look.contrast + 0.5 + look.brightness / 255.0
    y = np.clip(y, 0.0, 1.0) ** look.gamma
    return np.round(255.0 * y).astype(np.uint8)[None]


@functools.lru_cache(maxsize=32)
def _vignette(strength: float, h: int, w: int) -> Optional[np.ndarray]:
    """float32 (h, w, 1) darkening towards the corners, or None for ``strength`` 0."""
    if strength <= 0:
        return None
    yy = (np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2.0) / (h / 2.0)
    xx = (np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2.0) / (w / 2.0)
    r2 = (xx**2 + yy**2) / 2.0
    return (1.0 - strength * r2)[..., None].astype(np.float32)


_NOISE_FIELDS = 8  # precomputed unit Gaussian noise fields, drawn from at random offsets
_NOISE_PAD = 32


@functools.lru_cache(maxsize=4)
def _noise_bank(h: int, w: int) -> np.ndarray:
    """float32 (_NOISE_FIELDS, h + _NOISE_PAD, w + _NOISE_PAD) unit Gaussian noise (fixed)."""
    rng = np.random.default_rng([TARGET_STREAM, 304, h, w])
    shape = (_NOISE_FIELDS, h + _NOISE_PAD, w + _NOISE_PAD)
    return rng.standard_normal(shape, dtype=np.float32)


def finish_frame(img: np.ndarray, look: SiteLook, noise_rng: np.random.Generator) -> np.ndarray:
    """What a target-site camera records of a composited scene.

    In the order light meets them: optical blur, vignette, sensor noise (a field of a fixed
    bank of Gaussian noise at a random offset: the noise of each frame differs, at a fraction
    of the cost of drawing it), then the camera's tone curve (white balance, contrast,
    brightness, gamma).

    Args:
        img: float32 (H, W, 3) BGR composited frame in [0, 255] (modified in place or not).
        look: The camera's look.
        noise_rng: Random generator of this frame's noise.

    Returns:
        uint8 (H, W, 3) BGR frame.
    """
    H, W = img.shape[:2]
    if look.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), look.blur * W / 640.0)
    vig = _vignette(look.vignette, H, W)
    if vig is not None:
        img *= vig
    if look.noise > 0:
        k = int(noise_rng.integers(_NOISE_FIELDS))
        dy, dx = (int(v) for v in noise_rng.integers(_NOISE_PAD + 1, size=2))
        field = _noise_bank(H, W)[k, dy : dy + H, dx : dx + W]
        img += (field * np.float32(look.noise))[..., None]
    np.clip(img, 0.0, 255.0, out=img)
    img += 0.5
    return cv2.LUT(img.astype(np.uint8), _tone_lut(look))
