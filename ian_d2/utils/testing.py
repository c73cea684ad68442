"""Helpers of the tests and benchmarks, after Detectron2's ``detectron2/utils/testing.py``: a tiny
CPU config built from the repository's ``configs/`` and random inputs (no dataset needed).

The configs are read from the repository checkout (``CONFIG_DIR``, the ``configs/`` folder next
to the ``ian_d2`` package): an installed package without its repository raises a clear error
on first use.

Example::

    from ian_d2.utils.testing import quick_cfg, synthetic_inputs

    cfg = quick_cfg(MODEL__REID__LOSS_TYPE="OIM")  # R-18-GN, CPU, random init, 8 identities
    losses = build_model(cfg)(synthetic_inputs())
"""

import os
from typing import Dict, List, Optional, Sequence

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
from detectron2.structures import Boxes, Instances

from ..config import get_ian_cfg

__all__ = [
    "CONFIG_DIR",
    "NUM_PIDS",
    "QUICK_CONFIG",
    "SMALL_OPTS",
    "TINY_OPTS",
    "config_file",
    "quick_cfg",
    "save_small_model",
    "small_cfg",
    "synthetic_inputs",
]

#: The repository's ``configs/`` folder (it exists only in a checkout of the repository).
CONFIG_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
)
#: The quick-schedule config: ResNet-18 with GroupNorm, random initialisation.
QUICK_CONFIG = "quick_schedules/IAN_R18_GN_instant_test.yaml"
#: Identities of the tiny configs and of :func:`synthetic_inputs` (no dataset metadata needed).
NUM_PIDS = 8

#: What :func:`quick_cfg` merges first (``tiny=True``): CPU, no weights, ``NUM_PIDS`` identities,
#: small samplers, proposals, pooler and inputs.
TINY_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.REID.NUM_PIDS", NUM_PIDS,
    "MODEL.REID.RSS.SAMPLE_SIZE", 4,
    "MODEL.REID.OIM.CQ_SIZE", 16,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 200,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4,
    "MODEL.REID.PRETRAIN_CROPS.CROP_SIZE", (32, 16),
    "INPUT.MIN_SIZE_TEST", 96,
    "INPUT.MAX_SIZE_TEST", 128,
]  # fmt: skip


# The search tests' and benchmarks' small model: the quick config (not TINY_OPTS) at 96x128 with
# 20 proposals and up to 8 detections per image, every score kept (indexing ~0.05 s/image).
SMALL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.REID.NUM_PIDS", NUM_PIDS,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 20,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "TEST.DETECTIONS_PER_IMAGE", 8,
    "INPUT.MIN_SIZE_TEST", 96,
    "INPUT.MAX_SIZE_TEST", 128,
]  # fmt: skip


def config_file(config: str = QUICK_CONFIG) -> str:
    """
    The path of a config: ``config`` relative to ``CONFIG_DIR``, or an absolute path as it is.

    Raises:
        FileNotFoundError: the config does not exist; with a hint when ``CONFIG_DIR`` itself is
            missing (ian_d2 installed without its repository).
    """
    path = os.path.join(CONFIG_DIR, config)
    if not os.path.isfile(path):
        if not os.path.isabs(config) and not os.path.isdir(CONFIG_DIR):
            raise FileNotFoundError(
                f"ian_d2.utils.testing reads the configs of a repository checkout, but "
                f"{CONFIG_DIR} does not exist: ian_d2 is installed without its repository. "
                f"Clone the repository and install it with `pip install -e .`, or pass an "
                f"absolute config path."
            )
        raise FileNotFoundError(f"config {config!r} not found (looked for {path})")
    return path


def quick_cfg(
    config: str = QUICK_CONFIG, opts: Optional[Sequence] = None, *, tiny: bool = True, **overrides
):
    """
    A config for tests and benchmarks: ``config`` merged with, in this order, ``TINY_OPTS``
    (unless ``tiny=False``), ``opts`` and the keyword ``overrides``.

    Args:
        config: a config relative to ``CONFIG_DIR`` (default: the quick schedule, R-18-GN) or an
            absolute path.
        opts: overrides as on the command line: ``[KEY, VALUE, ...]``, dotted keys.
        tiny: merge ``TINY_OPTS`` first (CPU, random init, explicit ``NUM_PIDS``, tiny sizes);
            False: the config file as it is.
        **overrides: one keyword per key, dots written as double underscores:
            ``quick_cfg(MODEL__REID__LOSS_TYPE="OIM")`` sets ``MODEL.REID.LOSS_TYPE``. Values
            are Python values (``(32, 16)``, ``0.0``) or strings as in ``opts``.

    Returns:
        CfgNode: Detectron2's default config with the IAN keys; not frozen.
    """
    keyword_opts: List = []
    for key, value in overrides.items():
        keyword_opts += [key.replace("__", "."), value]
    return get_ian_cfg(
        config_file(config), (TINY_OPTS if tiny else []) + list(opts or []) + keyword_opts
    )


def small_cfg(weights: str, *opts):
    """The quick config shrunk by ``SMALL_OPTS`` (not ``TINY_OPTS``), with ``weights``."""
    return quick_cfg(opts=SMALL_OPTS + ["MODEL.WEIGHTS", weights] + list(opts), tiny=False)


def save_small_model(path: str, seed: int = 0, *opts) -> str:
    """A randomly initialised model of :func:`small_cfg` saved to ``path`` (.pth); returns it."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    cfg = small_cfg("", *opts)
    torch.manual_seed(seed)
    model = build_model(cfg)
    folder, name = os.path.split(path)
    DetectionCheckpointer(model, save_dir=folder).save(os.path.splitext(name)[0])
    return path


def synthetic_inputs(
    num_images: int = 2,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
    with_original_size: bool = True,
) -> List[Dict]:
    """
    Random images with 3-4 person boxes each; pids mix labeled ids (< ``NUM_PIDS``) and -1
    (one unlabeled person per image).

    Args:
        num_images: how many inputs.
        height: image height.
        width: image width.
        seed: the generator's seed (the same seed gives the same inputs).
        with_original_size: set ``height``/``width`` of each input (2x the image size).

    Returns:
        list[dict]: Detectron2 inputs with ``image`` [3, H, W] (float, 0-255) and ``instances``
        (``gt_boxes``, ``gt_classes``, ``gt_pids``).
    """
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i in range(num_images):
        image = torch.rand(3, height, width, generator=g) * 255
        n = 3 + i % 2
        x0 = torch.rand(n, generator=g) * (width - 30)
        y0 = torch.rand(n, generator=g) * (height - 60)
        bw = 15 + torch.rand(n, generator=g) * 15
        bh = 40 + torch.rand(n, generator=g) * 20
        boxes = torch.stack([x0, y0, x0 + bw, (y0 + bh).clamp(max=height - 1)], dim=1)
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.zeros(n, dtype=torch.long)
        pids = torch.randint(0, NUM_PIDS, (n,), generator=g)
        pids[-1] = -1  # one unlabeled person per image
        inst.gt_pids = pids
        inp = {"image": image, "instances": inst}
        if with_original_size:
            inp["height"], inp["width"] = 2 * height, 2 * width
        inputs.append(inp)
    return inputs
