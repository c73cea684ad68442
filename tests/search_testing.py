"""Helpers of the search tests: the small saved model and its config, from
:mod:`ian_d2.utils.testing` (shared with ``benchmarks/bench_serve.py``), and the index of the
service's tests (:func:`build_serve_gallery`). The tiny image gallery is the session's synthetic
CUHK-SYSU (``@pytest.mark.synthetic_cuhk_sysu``, tests/conftest.py)."""

import glob
import os
import shutil
from dataclasses import dataclass
from typing import List

from ian_d2.utils.testing import SMALL_OPTS
from ian_d2.utils.testing import save_small_model as save_model
from ian_d2.utils.testing import small_cfg as make_cfg

__all__ = [
    "CrashingModel",
    "Interrupt",
    "SMALL_OPTS",
    "ServeGallery",
    "build_serve_gallery",
    "make_cfg",
    "save_model",
]


@dataclass
class ServeGallery:
    """
    Attributes:
        videos: the folder of the synthetic two-camera video (cam1.avi, cam2.avi).
        images: every image of the synthetic CUHK-SYSU, sorted (the first 4 are indexed).
        weights, cfg, model: the small random model, its config, the model built once.
        index_dir: the index.
    """

    videos: str
    images: List[str]
    weights: str
    cfg: object
    model: object
    index_dir: str


def build_serve_gallery(tmp: str, synthetic_images: str) -> ServeGallery:
    """The index of the service's tests, under ``tmp``: the synthetic two-camera video (5 sampled
    frames per second) and 4 still images of ``synthetic_images`` (the session's synthetic
    CUHK-SYSU), indexed by the small random model with every detection kept (8 per item)."""
    from ian_d2.data.synthetic import generate_video
    from ian_d2.search import index_gallery
    from ian_d2.search.indexer import load_search_model

    videos = os.path.join(tmp, "videos")
    generate_video(videos, size="tiny", seed=0)
    images = sorted(glob.glob(os.path.join(synthetic_images, "*.jpg")))
    photos = os.path.join(tmp, "gallery", "photos")
    os.makedirs(photos)
    for p in images[:4]:
        shutil.copy(p, photos)
    weights = save_model(os.path.join(tmp, "model.pth"))
    cfg = make_cfg(weights)
    model = load_search_model(cfg)
    index_dir = os.path.join(tmp, "index")
    index_gallery(cfg, [videos, photos], index_dir, fps=5, score_thresh=0.0, model=model,
                  num_workers=0, progress=False)  # fmt: skip
    return ServeGallery(videos, images, weights, cfg, model, index_dir)


class Interrupt(Exception):
    """What :class:`CrashingModel` raises: the run killed in the middle."""


class CrashingModel:
    """Wraps a model; raises :class:`Interrupt` after ``n`` calls (a run killed in the middle)."""

    def __init__(self, model, n):
        self.model, self.n = model, n

    def __call__(self, batch):
        if self.n == 0:
            raise Interrupt()
        self.n -= 1
        return self.model(batch)
