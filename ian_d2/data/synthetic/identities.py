"""Appearance sampling for synthetic pedestrians.

An identity is carried entirely by its :class:`Appearance`: clothing colours and pattern,
skin and hair, body proportions and accessories. Every attribute is drawn from a small finite
palette, so different identities often share some attributes (two people in navy trousers),
while the full combination of the discrete attributes is unique per labeled identity.

The clothing colours come from a :class:`ClothingPalette`: by default the one of every training
generator (:data:`UPPER_COLORS`, :data:`LOWER_COLORS`); another site's population can wear
another palette (see :mod:`.video_site`).
"""

from dataclasses import dataclass
from typing import List, Optional, Set, Tuple

import numpy as np

__all__ = [
    "Appearance",
    "UPPER_COLORS",
    "LOWER_COLORS",
    "PATTERNS",
    "ClothingPalette",
    "SOURCE_PALETTE",
    "sample_appearance",
    "sample_identities",
]

Color = Tuple[int, int, int]

# Named clothing colours in BGR (OpenCV order).
UPPER_COLORS: Tuple[Color, ...] = (
    (30, 30, 30),  # black
    (235, 235, 235),  # white
    (128, 128, 128),  # grey
    (90, 40, 20),  # navy
    (200, 110, 40),  # blue
    (230, 190, 130),  # light blue
    (40, 40, 200),  # red
    (40, 20, 110),  # maroon
    (60, 140, 40),  # green
    (40, 110, 110),  # olive
    (40, 210, 230),  # yellow
    (30, 130, 240),  # orange
    (180, 130, 240),  # pink
    (140, 50, 110),  # purple
    (40, 70, 120),  # brown
    (160, 200, 220),  # beige
)
LOWER_COLORS: Tuple[Color, ...] = (
    (25, 25, 25),  # black
    (80, 40, 25),  # navy
    (150, 100, 60),  # denim
    (110, 110, 110),  # grey
    (140, 180, 200),  # beige
    (40, 65, 100),  # brown
    (225, 225, 225),  # white
    (50, 90, 80),  # olive
    (40, 80, 30),  # dark green
)
SKIN_TONES: Tuple[Color, ...] = (
    (190, 210, 240),
    (150, 180, 225),
    (110, 150, 200),
    (80, 110, 160),
    (50, 75, 110),
)
HAIR_COLORS: Tuple[Color, ...] = (
    (20, 20, 20),
    (30, 45, 70),
    (60, 90, 130),
    (120, 170, 210),
    (160, 160, 160),
)
ACCESSORY_COLORS: Tuple[Color, ...] = (
    (20, 20, 20),
    (50, 50, 160),
    (150, 80, 30),
    (60, 120, 60),
    (60, 90, 140),
    (200, 200, 200),
)
SHOE_COLORS: Tuple[Color, ...] = ((20, 20, 20), (230, 230, 230), (40, 60, 100))

PATTERNS: Tuple[str, ...] = ("plain", "stripes", "checks", "two_tone")
LOWER_STYLES: Tuple[str, ...] = ("trousers", "shorts", "skirt")
HAIR_STYLES: Tuple[str, ...] = ("short", "long", "bald")
SLEEVES: Tuple[str, ...] = ("long", "short")
ACCESSORIES: Tuple[Tuple[str, ...], ...] = (
    (),
    ("backpack",),
    ("hat",),
    ("bag",),
    ("backpack", "hat"),
    ("bag", "hat"),
)


@dataclass(frozen=True)
class ClothingPalette:
    """The named clothing colours (BGR) a population wears.

    Attributes:
        upper: Colours of the upper clothing (main and pattern colour).
        lower: Colours of the lower clothing.
    """

    upper: Tuple[Color, ...]
    lower: Tuple[Color, ...]


SOURCE_PALETTE = ClothingPalette(UPPER_COLORS, LOWER_COLORS)
"""The palette of the training generators (CUHK-SYSU, PRW, the source-site video)."""


@dataclass(frozen=True)
class Appearance:
    """The look of one person; everything the renderer needs to draw them.

    Attributes:
        upper: Main colour of the upper clothing (BGR).
        upper2: Secondary colour used by the pattern (BGR).
        pattern: One of :data:`PATTERNS`.
        stripe: Stripe / check period relative to the person height.
        sleeves: "long" or "short".
        lower: Colour of the lower clothing (BGR).
        lower_style: One of "trousers", "shorts", "skirt".
        skin: Skin tone (BGR).
        hair: Hair colour (BGR).
        hair_style: One of "short", "long", "bald".
        shoes: Shoe colour (BGR).
        height: Body height factor (about 0.88 to 1.08).
        width: Body width factor (about 0.85 to 1.2).
        accessories: Tuple with any of "backpack", "hat", "bag".
        accessory_color: Colour of the accessories (BGR).
        signature: Palette indices of the discrete attributes; two labeled identities never
            share all of them.
    """

    upper: Color
    upper2: Color
    pattern: str
    stripe: float
    sleeves: str
    lower: Color
    lower_style: str
    skin: Color
    hair: Color
    hair_style: str
    shoes: Color
    height: float
    width: float
    accessories: Tuple[str, ...]
    accessory_color: Color
    signature: Tuple[int, ...] = ()


def _jitter(rng: np.random.Generator, color: Color, amount: int) -> Color:
    """Return ``color`` moved by up to ``amount`` per channel, clipped to [0, 255]."""
    c = np.asarray(color, dtype=np.int64) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _index(rng: np.random.Generator, n: int, p=None) -> int:
    return int(rng.choice(n, p=p)) if p is not None else int(rng.integers(n))


def sample_appearance(
    rng: np.random.Generator, palette: Optional[ClothingPalette] = None
) -> Appearance:
    """Sample one random appearance from the palettes.

    Args:
        rng: Random generator.
        palette: Clothing colours (None: :data:`SOURCE_PALETTE`; the draws are then those of
            a sampler without the option).

    Returns:
        A new :class:`Appearance`. Colours are palette colours with a small per-identity jitter,
        so identities sharing a palette entry look alike but are not pixel-identical.
    """
    pal = SOURCE_PALETTE if palette is None else palette
    upper_colors, lower_colors = pal.upper, pal.lower
    ui = _index(rng, len(upper_colors))
    u2 = (ui + 1 + _index(rng, len(upper_colors) - 1)) % len(upper_colors)
    pi = _index(rng, len(PATTERNS))
    si = _index(rng, len(SLEEVES))
    li = _index(rng, len(lower_colors))
    lsi = _index(rng, len(LOWER_STYLES), p=[0.65, 0.2, 0.15])
    ai = _index(rng, len(ACCESSORIES), p=[0.4, 0.2, 0.12, 0.12, 0.08, 0.08])
    signature = (ui, u2 if pi else -1, pi, si, li, lsi, ai)
    return Appearance(
        upper=_jitter(rng, upper_colors[ui], 10),
        upper2=_jitter(rng, upper_colors[u2], 10),
        pattern=PATTERNS[pi],
        stripe=float(rng.uniform(0.035, 0.07)),
        sleeves=SLEEVES[si],
        lower=_jitter(rng, lower_colors[li], 10),
        lower_style=LOWER_STYLES[lsi],
        skin=_jitter(rng, SKIN_TONES[_index(rng, len(SKIN_TONES))], 6),
        hair=_jitter(rng, HAIR_COLORS[_index(rng, len(HAIR_COLORS))], 6),
        hair_style=HAIR_STYLES[_index(rng, len(HAIR_STYLES), p=[0.55, 0.35, 0.1])],
        shoes=SHOE_COLORS[_index(rng, len(SHOE_COLORS))],
        height=float(rng.uniform(0.88, 1.08)),
        width=float(rng.uniform(0.85, 1.2)),
        accessories=ACCESSORIES[ai],
        accessory_color=_jitter(rng, ACCESSORY_COLORS[_index(rng, len(ACCESSORY_COLORS))], 8),
        signature=signature,
    )


def sample_identities(
    rng: np.random.Generator,
    n: int,
    taken: Optional[Set[Tuple]] = None,
    palette: Optional[ClothingPalette] = None,
) -> List[Appearance]:
    """Sample ``n`` appearances whose discrete attribute combinations are pairwise distinct.

    Args:
        rng: Random generator.
        n: Number of identities.
        taken: Signatures already used (updated in place), to keep several calls mutually distinct.
        palette: Clothing colours (None: :data:`SOURCE_PALETTE`).

    Returns:
        A list of ``n`` appearances.
    """
    taken = set() if taken is None else taken
    out: List[Appearance] = []
    while len(out) < n:
        app = sample_appearance(rng, palette)
        if app.signature in taken:
            continue
        taken.add(app.signature)
        out.append(app)
    return out
