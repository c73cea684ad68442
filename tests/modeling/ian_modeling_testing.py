"""Helpers of the modeling tests: a tiny CPU config and synthetic inputs (no dataset needed)."""

import os

import torch

from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

import ian_d2.modeling  # noqa: F401  (registers PersonSearchROIHeads and CropClassifier)
from ian_d2.config import add_ian_config

__all__ = ["CONFIG_DIR", "get_tiny_cfg", "synthetic_inputs", "NUM_PIDS"]

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
NUM_PIDS = 8


def get_tiny_cfg(config="quick_schedules/IAN_R18_GN_instant_test.yaml", opts=None):
    """
    The quick-schedule config (R-18, GN, random init) shrunk further for unit tests: CPU, tiny
    inputs, explicit NUM_PIDS (no dataset metadata needed).
    """
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIG_DIR, config))
    cfg.merge_from_list(
        [
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
        ]
        + list(opts or [])
    )  # fmt: skip
    return cfg


def synthetic_inputs(num_images=2, height=96, width=128, seed=0, with_original_size=True):
    """
    Random images with 3-4 person boxes each; pids mix labeled ids and -1 (unlabeled).

    Returns:
        list[dict]: Detectron2 inputs with ``image`` [3, H, W] (float, 0-255) and ``instances``
        (``gt_boxes``, ``gt_classes``, ``gt_pids``); ``height``/``width`` = 2x the input size.
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
