"""Photometric augmentation for training: the casts and lighting that differ between cameras.

A camera's white balance multiplies each colour channel by its own gain, its exposure and
contrast change the levels; an embedding trained on one site's cameras learns their colours.
:func:`build_color_augmentations` draws, per training image, a gain per channel and a
brightness and contrast factor in ``[1 - s, 1 + s]`` (``INPUT.COLOR_JITTER`` = s; 0: none), so
that one person seen under two casts is one identity to the loss. Images only: boxes unchanged.
"""

from typing import List

import numpy as np
from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.data import transforms as T

__all__ = ["RandomChannelGain", "build_color_augmentations"]


class RandomChannelGain(T.Augmentation):
    """Multiply each channel of an image by its own factor drawn from ``[1 - s, 1 + s]``."""

    def __init__(self, strength: float):
        super().__init__()
        if not 0 <= strength < 1:
            raise ValueError(f"INPUT.COLOR_JITTER must be in [0, 1), got {strength}")
        self.strength = float(strength)

    def get_transform(self, image: np.ndarray) -> T.Transform:
        """``image``: uint8 or float (H, W, C); the transform keeps its dtype and range."""
        gains = np.random.uniform(1 - self.strength, 1 + self.strength, size=image.shape[-1])

        def apply(img: np.ndarray) -> np.ndarray:
            out = img.astype(np.float32) * gains.astype(np.float32)
            if img.dtype == np.uint8:
                return np.clip(out, 0, 255).astype(np.uint8)
            return out.astype(img.dtype)

        return T.ColorTransform(apply)


def build_color_augmentations(strength: float) -> List[T.Augmentation]:
    """Channel gains, brightness and contrast of strength ``s`` (none for 0)."""
    if strength <= 0:
        return []
    lo, hi = 1 - strength, 1 + strength
    return [RandomChannelGain(strength), T.RandomBrightness(lo, hi), T.RandomContrast(lo, hi)]
