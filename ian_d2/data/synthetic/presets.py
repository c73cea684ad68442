"""Size presets and the settings of the synthetic generators."""

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

__all__ = ["GeneratorConfig", "SIZES", "make_config", "resolve_workers"]

SIZES = ("tiny", "small", "default")  # every format; CUHK-SYSU also has "ablation"


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of one generation run.

    Attributes:
        num_images: Number of scene images (CUHK-SYSU) or frames (PRW).
        num_identities: Number of labeled identities, train and test together.
        test_id_fraction: Fraction of the labeled identities that are test identities.
        test_image_fraction: Fraction of the images that are test images (CUHK-SYSU pool / PRW
            test frames).
        image_size: (width, height) of the images.
        gallery_sizes: CUHK-SYSU gallery sizes to write (those that do not fit are skipped).
        zero_size_boxes: Number of zero-width / zero-height boxes to add to CUHK-SYSU
            ``Images.mat`` (the real file has some; loaders must drop them).
        appearances: (min, max) appearances of a labeled identity (CUHK-SYSU), or (min, max)
            frames per camera tracklet (PRW).
        test_appearances: CUHK-SYSU: (min, max) appearances of a test identity (its query and
            the gallery entries that contain it); None = ``appearances``.
        unlabeled: (min, max) unlabeled persons per image.
        max_labeled: Most labeled persons in one image.
        clutter: (min, max) random clutter objects per image.
        occluder_prob: Probability that a person gets a clutter object right in front of them.
        min_person_frac: Smallest person height as a fraction of the image height.
        sequences: PRW sequences per camera.
        resolution_height: CUHK-SYSU query boxes lower than this go to the Resolution subset.
        occlusion_threshold: CUHK-SYSU queries with at least this hidden fraction go to the
            Occlusion subset.
        jpeg_quality: JPEG quality of the written images.
        workers: Worker processes for rendering (0 = automatic).
    """

    num_images: int
    num_identities: int
    test_id_fraction: float
    test_image_fraction: float
    image_size: Tuple[int, int] = (400, 300)
    gallery_sizes: Tuple[int, ...] = (50, 100)
    zero_size_boxes: int = 0
    appearances: Tuple[int, int] = (2, 4)
    test_appearances: Optional[Tuple[int, int]] = None
    unlabeled: Tuple[int, int] = (0, 2)
    max_labeled: int = 4
    clutter: Tuple[int, int] = (1, 4)
    occluder_prob: float = 0.15
    min_person_frac: float = 0.14
    sequences: int = 2
    resolution_height: int = 60
    occlusion_threshold: float = 0.3
    jpeg_quality: int = 92
    workers: int = 0

    @property
    def num_test_identities(self) -> int:
        """Number of test identities (at least 1, leaving at least 1 train identity)."""
        n = int(round(self.num_identities * self.test_id_fraction))
        return min(max(1, n), self.num_identities - 1)


_PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "cuhk_sysu": {
        "tiny": dict(
            num_images=30,
            num_identities=15,
            test_id_fraction=0.4,
            test_image_fraction=0.47,
            gallery_sizes=(5, 10),
            zero_size_boxes=2,
        ),
        "small": dict(
            num_images=200,
            num_identities=80,
            test_id_fraction=0.3,
            test_image_fraction=0.4,
            gallery_sizes=(20, 50),
        ),
        # Sized for the CPU demo (make demo): few identities seen many times each, persons at
        # least 30% of the image height, so that a small network learns identities in minutes.
        "default": dict(
            num_images=1200,
            num_identities=100,
            test_id_fraction=0.4,
            test_image_fraction=0.4,
            gallery_sizes=(50, 100),
            appearances=(8, 14),
            min_person_frac=0.3,
            resolution_height=100,
        ),
        # The ablations' data (projects/ablations/run.py, make ablations): a training set like the demo's
        # (60 identities, each seen 8-14 times, in 780 images) and 300 test identities, hence
        # 300 queries, each in 3-5 of the 520 pool images (galleries 50, 100, 200, 400, pool).
        "ablation": dict(
            num_images=1300,
            num_identities=360,
            test_id_fraction=300 / 360,
            test_image_fraction=0.4,
            gallery_sizes=(50, 100, 200, 400),
            appearances=(8, 14),
            test_appearances=(3, 5),
            min_person_frac=0.3,
            resolution_height=100,
        ),
    },
    "prw": {
        "tiny": dict(
            num_images=36,
            num_identities=12,
            test_id_fraction=0.42,
            test_image_fraction=0.5,
            image_size=(480, 270),
            appearances=(1, 3),
            sequences=2,
        ),
        "small": dict(
            num_images=240,
            num_identities=60,
            test_id_fraction=0.45,
            test_image_fraction=0.5,
            image_size=(480, 270),
            appearances=(1, 3),
            sequences=2,
        ),
        "default": dict(
            num_images=2400,
            num_identities=500,
            test_id_fraction=0.45,
            test_image_fraction=0.5,
            image_size=(480, 270),
            appearances=(1, 3),
            sequences=4,
        ),
    },
}


def make_config(fmt: str, size: str = "small", **overrides: Any) -> GeneratorConfig:
    """Build the settings of a run from a preset and overrides.

    Args:
        fmt: "cuhk_sysu" or "prw".
        size: One of :data:`SIZES`, or "ablation" (CUHK-SYSU only).
        **overrides: Any :class:`GeneratorConfig` field; None values are ignored.

    Returns:
        The settings.

    Raises:
        ValueError: For an unknown format, size or field.
    """
    if fmt not in _PRESETS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(_PRESETS)}")
    if size not in _PRESETS[fmt]:
        raise ValueError(f"unknown {fmt} size {size!r}; expected one of {tuple(_PRESETS[fmt])}")
    params = dict(_PRESETS[fmt][size])
    names = {f.name for f in dataclasses.fields(GeneratorConfig)}
    for k, v in overrides.items():
        if k not in names:
            raise ValueError(f"unknown setting {k!r}; expected one of {sorted(names)}")
        if v is not None:
            params[k] = tuple(v) if isinstance(v, list) else v
    cfg = GeneratorConfig(**params)
    if cfg.num_identities < 2:
        raise ValueError("num_identities must be at least 2 (one train and one test identity)")
    if cfg.num_images < 4:
        raise ValueError("num_images must be at least 4")
    return cfg


def resolve_workers(cfg: GeneratorConfig) -> int:
    """Number of rendering processes: ``cfg.workers``, or automatic (1 for small runs)."""
    if cfg.workers > 0:
        return cfg.workers
    if cfg.num_images < 150:
        return 1
    return max(1, min(4, os.cpu_count() or 1))
