"""Query-side helper: embeddings of given boxes (person-search queries).

Shape shorthand:
    N: number of boxes, combined over all images
    D: embedding dimension
"""

import logging
from typing import Dict, List, Sequence

import numpy as np
import torch

from detectron2.structures import Boxes, Instances

__all__ = ["extract_query_embeddings"]

logger = logging.getLogger(__name__)


def _as_box_tensor(boxes) -> torch.Tensor:
    if isinstance(boxes, Boxes):
        boxes = boxes.tensor
    elif isinstance(boxes, np.ndarray):
        boxes = torch.from_numpy(boxes)
    elif not isinstance(boxes, torch.Tensor):
        boxes = torch.as_tensor(boxes)
    return boxes.to(torch.float32).reshape(-1, 4)


@torch.no_grad()
def extract_query_embeddings(
    model: torch.nn.Module, batched_inputs: List[Dict], boxes: Sequence
) -> torch.Tensor:
    """
    Embeddings of given boxes, e.g. the query persons of a person-search benchmark.

    The boxes are rescaled from the original image coordinates to the resized network input and
    passed to ``GeneralizedRCNN.inference(..., detected_instances=...)``, which runs
    ``PersonSearchROIHeads.forward_with_given_boxes``: the same pooling, res5 and embedding head
    as the gallery path, so a box gets the embedding the gallery path gives to that box.

    Args:
        model (nn.Module): a GeneralizedRCNN with PersonSearchROIHeads (or a wrapper with
            ``.module``), in eval mode.
        batched_inputs (list[dict]): Detectron2 inputs: ``image`` [3, H, W] (resized) and
            optionally the original ``height`` and ``width`` (default: H and W).
        boxes (list): one entry per input, [Ni, 4] boxes (XYXY, absolute, in the original image
            coordinates) as a Tensor, ndarray, list or Boxes.

    Returns:
        Tensor: [N, D] L2-normalised embeddings, in the order of the inputs, then of the boxes.
    """
    model = getattr(model, "module", model)
    assert not model.training, "extract_query_embeddings needs the model in eval mode"
    assert len(batched_inputs) == len(boxes), "one list of boxes per input"
    detected = []
    for inp, b in zip(batched_inputs, boxes):
        h, w = inp["image"].shape[-2:]
        height = inp.get("height", h)
        width = inp.get("width", w)
        b = _as_box_tensor(b)
        scale = torch.tensor([w / width, h / height, w / width, h / height], dtype=b.dtype)
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(b * scale)
        inst.pred_classes = torch.zeros(len(b), dtype=torch.long)
        detected.append(inst)
    results = model.inference(batched_inputs, detected_instances=detected, do_postprocess=False)
    return torch.cat([r.pred_embeds for r in results], dim=0)
