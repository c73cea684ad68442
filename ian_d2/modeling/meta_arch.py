"""PersonSearchRCNN: GeneralizedRCNN whose inference also serves person-search queries.

A person-search test set (the registered ``*_test`` splits) holds gallery records and query
records; query records carry ``query_index`` and, after
:class:`ian_d2.data.PersonSearchDatasetMapper`, their GIVEN query box as ``instances.gt_boxes``
in the resized input's coordinates. In one inference pass:

* gallery inputs get detections as usual (``pred_boxes``, ``scores``, ``pred_classes``) plus
  ``pred_embeds`` [R, D];
* query inputs get no detection: their output Instances hold the given box as ``pred_boxes``
  (in original image coordinates after post-processing), score 1, and its ``pred_embeds``,
  computed by ``PersonSearchROIHeads.forward_with_given_boxes`` exactly as the gallery path
  computes a proposal's embedding.

Training and plain images (``DefaultPredictor``) behave exactly as GeneralizedRCNN. Building
from a config resolves ``MODEL.REID.NUM_PIDS`` once when it is 0 (:mod:`.num_pids`), before the
ROI heads build their losses.
"""

from typing import Dict, List

import torch
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances

from .num_pids import with_num_pids

__all__ = ["PersonSearchRCNN", "is_query_input"]


def is_query_input(inp: Dict) -> bool:
    """Whether a model input is a person-search query (a record with ``query_index``)."""
    return "query_index" in inp


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """GeneralizedRCNN + query inference from given boxes (see the module docstring)."""

    @classmethod
    def from_config(cls, cfg):
        # the number of identities, resolved once for every loss of the ROI heads
        return super().from_config(with_num_pids(cfg))

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances=None,
        do_postprocess: bool = True,
    ):
        if detected_instances is not None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        query_idx = [i for i, x in enumerate(batched_inputs) if is_query_input(x)]
        if not query_idx:
            return super().inference(batched_inputs, None, do_postprocess)
        gallery_idx = [i for i, x in enumerate(batched_inputs) if not is_query_input(x)]
        outputs = [None] * len(batched_inputs)
        if gallery_idx:
            res = super().inference([batched_inputs[i] for i in gallery_idx], None, do_postprocess)
            for i, r in zip(gallery_idx, res):
                outputs[i] = r
        queries = [batched_inputs[i] for i in query_idx]
        given = []
        for x in queries:
            if "instances" not in x:
                raise ValueError(
                    f"query input {x.get('image_id', '')!r} (query_index={x['query_index']}) has "
                    "no 'instances' holding its query box: map it with "
                    "PersonSearchDatasetMapper(keep_test_annotations=True)"
                )
            gt = x["instances"]
            inst = Instances(gt.image_size)
            # a copy: post-processing rescales pred_boxes in place
            inst.pred_boxes = Boxes(gt.gt_boxes.tensor.to(self.device, copy=True))
            inst.pred_classes = torch.zeros(len(gt), dtype=torch.int64, device=self.device)
            inst.scores = torch.ones(len(gt), device=self.device)
            given.append(inst)
        res = super().inference(queries, given, do_postprocess)
        for i, r in zip(query_idx, res):
            outputs[i] = r
        return outputs
