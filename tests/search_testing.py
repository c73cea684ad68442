"""Helpers of the search tests: a small saved model and its config. The tiny image gallery is
the session's synthetic CUHK-SYSU (``@pytest.mark.synthetic_cuhk_sysu``, tests/conftest.py)."""

import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from ian_d2.utils.testing import NUM_PIDS, quick_cfg

__all__ = ["SMALL_OPTS", "make_cfg", "save_model"]

# R-18-GN at 96x128 with 20 proposals and 8 detections per image: indexing costs ~0.05 s/image.
SMALL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.REID.NUM_PIDS", NUM_PIDS,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 20,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "TEST.DETECTIONS_PER_IMAGE", 8,
    "INPUT.MIN_SIZE_TEST", 96,
    "INPUT.MAX_SIZE_TEST", 128,
]  # fmt: skip


def make_cfg(weights: str, *opts):
    """The quick config shrunk by ``SMALL_OPTS`` (not ``TINY_OPTS``), with ``weights``."""
    return quick_cfg(opts=SMALL_OPTS + ["MODEL.WEIGHTS", weights] + list(opts), tiny=False)


def save_model(path: str, seed: int = 0, *opts) -> str:
    """A randomly initialised model of :func:`make_cfg` saved to ``path`` (.pth)."""
    cfg = make_cfg("", *opts)
    torch.manual_seed(seed)
    model = build_model(cfg)
    folder, name = os.path.split(path)
    DetectionCheckpointer(model, save_dir=folder).save(os.path.splitext(name)[0])
    return path
