"""ROI heads of the IAN person-search model (Faster R-CNN C4 + identity embedding).

Shape shorthand:
    N: number of images in the mini-batch
    R: number of ROIs, combined over all images
    Ri: number of ROIs in image i
    M: number of ground-truth boxes of an image
    C: channels of the res5 output (2048 for R-50/101)
    D: embedding dimension (256)
"""

import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage

from .losses import (
    BACKGROUND_PID,
    IGNORE_PID,
    UNLABELED_PID,
    build_center_loss,
    build_reid_loss,
    named_losses,
)
from .reid_head import build_reid_head

__all__ = ["EMBED_BOXES", "PersonSearchROIHeads", "GT_INDEX_FIELD"]

logger = logging.getLogger(__name__)

# Field of the sampled proposals (training only): index of the ground-truth box of the image that
# the proposal *is* (an appended ground-truth box), -1 for RPN proposals.
GT_INDEX_FIELD = "proposal_gt_index"

# Values of MODEL.ROI_HEADS.EMBED_BOXES: which box a detection's embedding is pooled on.
EMBED_BOXES = ("proposals", "final")

# Objectness logit Detectron2 gives the appended ground-truth boxes (P(object) ~= 1).
_GT_LOGIT = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))


@ROI_HEADS_REGISTRY.register()
class PersonSearchROIHeads(Res5ROIHeads):
    """
    C4 ROI heads for person search: res5 on ROIAlign-pooled res4 features, mean pooling, then
    (a) the person/background classifier and class-agnostic box regression of
    :class:`Res5ROIHeads` and (b) a sibling embedding head (``MODEL.REID.HEAD_NAME`` in
    ``REID_HEAD_REGISTRY``, default :class:`ReIDEmbeddingHead`) that gives every box an
    L2-normalised embedding.

    Training losses: ``loss_cls``, ``loss_box_reg`` (Fast R-CNN), ``loss_reid`` (the identity loss
    of ``MODEL.REID.LOSS_TYPE`` in ``REID_LOSS_REGISTRY``: RSS or OIM, over
    every sampled box of a labeled identity: the proposals matched to it and its ground-truth box;
    background boxes too for RSS) and ``loss_center`` (center loss over the ground-truth boxes of
    labeled identities, or all positive labeled boxes).

    Ground-truth boxes among the sampled proposals: before Detectron2 appends the ground truth to
    the proposals (``ROI_HEADS.PROPOSAL_APPEND_GT``), the proposals get a field
    ``proposal_gt_index`` = -1 and a copy of the targets the same field = arange(M). Detectron2
    builds the appended rows from the targets' fields and keeps the proposals' fields through
    ``Instances.cat`` and the sampling, so after sampling ``proposal_gt_index >= 0`` marks exactly
    the ground-truth boxes (objectness values or positions are not relied on). With
    ``keep_all_gt``, ground-truth boxes that the fg/bg sampler dropped are added back.

    Inference: every detection carries ``pred_embeds`` [D]: with ``embed_boxes="proposals"``
    (the paper's test code) the embedding of the proposal that produced it (gathered with the
    kept indices of ``fast_rcnn_inference``); with ``embed_boxes="final"`` the embedding of its
    own regressed box, pooled again after NMS (one more res5 pass on the kept boxes).
    :meth:`forward_with_given_boxes` computes the embeddings of given boxes (the query path) with
    the same code, so a box gets the same embedding on both paths.
    """

    @configurable
    def __init__(
        self,
        *,
        reid_head: nn.Module,
        reid_loss: nn.Module,
        center_loss: Optional[nn.Module] = None,
        center_loss_input: str = "gt",
        keep_all_gt: bool = True,
        loss_weight: Optional[Dict[str, float]] = None,
        embed_boxes: str = "proposals",
        **kwargs,
    ):
        """
        Args:
            reid_head (nn.Module): pooled res5 feature [R, C] -> embedding [R, D], with an
                ``embed_dim`` attribute (D); from ``REID_HEAD_REGISTRY`` with a config.
            reid_loss (nn.Module): identity loss, ``(feats, labels) -> (loss, stats)``; from
                ``REID_LOSS_REGISTRY`` (``MODEL.REID.LOSS_TYPE``) with a config.
            center_loss (nn.Module or None): center loss with the same interface, from
                ``CENTER_LOSS_REGISTRY`` (``MODEL.CENTER_LOSS.NAME``); None disables.
            center_loss_input (str): "gt" or "all_pos", which labeled boxes feed the center loss.
            keep_all_gt (bool): add back ground-truth boxes dropped by the proposal sampler.
            loss_weight (dict[str, float]): weights of the identity loss (key ``loss_reid``) and
                of the center loss (key ``loss_center``), applied to every ``loss_*`` they return.
            embed_boxes (str): test time: "proposals" or "final", the box a detection's
                embedding is pooled on (see the class docstring).
            kwargs: arguments of :class:`Res5ROIHeads`.
        """
        super().__init__(**kwargs)
        if self.mask_on:
            raise ValueError("PersonSearchROIHeads does not support MODEL.MASK_ON.")
        if center_loss_input not in ("gt", "all_pos"):
            raise ValueError(f"Unknown MODEL.CENTER_LOSS.INPUT: {center_loss_input}")
        if center_loss is not None and center_loss_input == "gt" and not self.proposal_append_gt:
            logger.warning(
                "Center loss on ground-truth boxes needs ROI_HEADS.PROPOSAL_APPEND_GT: "
                "it will see no box."
            )
        if embed_boxes not in EMBED_BOXES:
            raise ValueError(
                f"MODEL.ROI_HEADS.EMBED_BOXES {embed_boxes!r}: expected one of {EMBED_BOXES}"
            )
        self.embed_boxes = embed_boxes
        self.reid_head = reid_head
        self.reid_loss = reid_loss
        self.center_loss = center_loss
        self.center_loss_input = center_loss_input
        self.keep_all_gt = keep_all_gt
        self.loss_weight = dict(loss_weight or {})

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        # Channels of the res5 output, as computed by Res5ROIHeads._build_res5_block.
        res5_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8
        # fmt: off
        ret["reid_head"]         = build_reid_head(cfg, ShapeSpec(channels=res5_channels))
        ret["reid_loss"]         = build_reid_loss(cfg)
        ret["center_loss"]       = build_center_loss(cfg)
        ret["center_loss_input"] = cfg.MODEL.CENTER_LOSS.INPUT
        ret["keep_all_gt"]       = cfg.MODEL.REID.KEEP_ALL_GT
        ret["embed_boxes"]       = cfg.MODEL.ROI_HEADS.EMBED_BOXES
        ret["loss_weight"]       = {
            "loss_reid": cfg.MODEL.REID.LOSS_WEIGHT,
            "loss_center": cfg.MODEL.CENTER_LOSS.WEIGHT,
        }
        # fmt: on
        return ret

    # ------------------------------------------------------------------------------------------ #
    # Training targets
    # ------------------------------------------------------------------------------------------ #
    def _sample_proposals(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        :meth:`ROIHeads._sample_proposals` (the same random subset), returned in the order of
        the proposals (RPN proposals by objectness, then the appended ground-truth boxes)
        instead of a random order. The losses do not depend on the order; the OIM lookup table
        and queue, updated box after box, do: in this order, the same images give the same
        updates, in one process or gathered from several (``ian_d2.utils.comm``).
        """
        sampled_idxs, sampled_classes = super()._sample_proposals(
            matched_idxs, matched_labels, gt_classes
        )
        sampled_idxs, order = torch.sort(sampled_idxs)
        return sampled_idxs, sampled_classes[order]

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[Instances]:
        """
        :meth:`ROIHeads.label_and_sample_proposals`, plus the ``proposal_gt_index`` field that
        marks the appended ground-truth boxes, plus (``keep_all_gt``) the ground-truth boxes that
        the sampler dropped.

        Args:
            proposals (list[Instances]): N proposals, with ``proposal_boxes`` and
                ``objectness_logits``.
            targets (list[Instances]): N targets, with ``gt_boxes``, ``gt_classes`` and
                ``gt_pids``.

        Returns:
            list[Instances]: N sampled proposals with ``gt_*`` fields and ``proposal_gt_index``.
        """
        marked_proposals = []
        for p in proposals:
            p = Instances(p.image_size, **p.get_fields())
            p.set(
                GT_INDEX_FIELD,
                torch.full((len(p),), -1, dtype=torch.long, device=p.proposal_boxes.device),
            )
            marked_proposals.append(p)
        marked_targets = []
        for t in targets:
            t = Instances(t.image_size, **t.get_fields())
            t.set(GT_INDEX_FIELD, torch.arange(len(t), dtype=torch.long, device=t.gt_boxes.device))
            marked_targets.append(t)

        sampled = super().label_and_sample_proposals(marked_proposals, marked_targets)

        out = []
        for p, t in zip(sampled, targets):
            if self.proposal_append_gt and len(t) > 0:
                gt_index = p.get(GT_INDEX_FIELD)
                is_gt = gt_index >= 0
                # A ground-truth box is its own match, except for exact duplicates: use its own id.
                if p.has("gt_pids") and is_gt.any():
                    p.gt_pids[is_gt] = t.gt_pids[gt_index[is_gt]]
                if self.keep_all_gt:
                    missing = torch.ones(len(t), dtype=torch.bool, device=gt_index.device)
                    missing[gt_index[is_gt]] = False
                    if missing.any():
                        p = Instances.cat([p, self._gt_as_proposals(t, p, missing.nonzero()[:, 0])])
            out.append(p)
        return out

    def _gt_as_proposals(self, t: Instances, like: Instances, idx: torch.Tensor) -> Instances:
        """
        Ground-truth boxes ``idx`` of ``t`` as sampled proposals with the fields of ``like``.
        """
        extra = Instances(t.image_size)
        for name in like.get_fields().keys():
            if name == "proposal_boxes":
                extra.proposal_boxes = t.gt_boxes[idx]
            elif name == "objectness_logits":
                extra.objectness_logits = torch.full(
                    (idx.numel(),), _GT_LOGIT, device=idx.device, dtype=like.objectness_logits.dtype
                )
            elif name == GT_INDEX_FIELD:
                extra.set(name, idx)
            elif t.has(name):
                extra.set(name, t.get(name)[idx])
            else:
                raise ValueError(f"Cannot build field '{name}' for a ground-truth proposal")
        return extra

    def _identity_labels(self, proposals: List[Instances]) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            proposals (list[Instances]): sampled proposals (see label_and_sample_proposals).

        Returns:
            Tensor: [R] int64 labels: pid >= 0, ``UNLABELED_PID``, ``BACKGROUND_PID`` or
            ``IGNORE_PID``.
            Tensor: [R] bool, True for ground-truth boxes.
        """
        labels, is_gt = [], []
        for p in proposals:
            gt_classes = p.gt_classes
            if p.has("gt_pids"):
                pids = p.gt_pids.to(torch.long).clone()
            else:  # image without ground truth: every proposal is background
                pids = torch.full_like(gt_classes, UNLABELED_PID)
            pids[gt_classes == self.num_classes] = BACKGROUND_PID
            pids[gt_classes < 0] = IGNORE_PID
            labels.append(pids)
            if p.has(GT_INDEX_FIELD):
                is_gt.append(p.get(GT_INDEX_FIELD) >= 0)
            else:
                is_gt.append(torch.zeros_like(gt_classes, dtype=torch.bool))
        return cat(labels, dim=0), cat(is_gt, dim=0)

    def _reid_losses(
        self, embeds: torch.Tensor, proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            embeds (Tensor): [R, D] embeddings of the sampled proposals.
            proposals (list[Instances]): the sampled proposals.

        Returns:
            dict[str, Tensor]: ``loss_reid`` and, if enabled, ``loss_center`` (weighted), or the
            ``loss_*`` names that the configured losses return (see
            :mod:`ian_d2.modeling.losses.build`). Every ``stats`` entry of the losses is logged
            as ``reid/<name>``.
        """
        labels, is_gt = self._identity_labels(proposals)
        storage = get_event_storage()
        loss_reid, stats = self.reid_loss(embeds, labels)
        w = self.loss_weight.get("loss_reid", 1.0)
        losses = {k: v * w for k, v in named_losses(loss_reid, "loss_reid").items()}
        for k, v in stats.items():
            storage.put_scalar(f"reid/{k}", v)
        storage.put_scalar("reid/num_labeled_boxes", float((labels >= 0).sum()))
        if self.center_loss is not None:
            center_labels = labels.clone()
            if self.center_loss_input == "gt":
                center_labels[~is_gt] = IGNORE_PID
            loss_center, stats = self.center_loss(embeds, center_labels)
            w = self.loss_weight.get("loss_center", 1.0)
            for k, v in named_losses(loss_center, "loss_center").items():
                if k in losses:
                    raise ValueError(f"The identity and center losses both return '{k}'")
                losses[k] = v * w
            for k, v in stats.items():
                storage.put_scalar(f"reid/{k}", v)
            storage.put_scalar("reid/num_center_boxes", float((center_labels >= 0).sum()))
        return losses

    # ------------------------------------------------------------------------------------------ #
    # Forward
    # ------------------------------------------------------------------------------------------ #
    def _pooled_features(self, features: Dict[str, torch.Tensor], boxes) -> torch.Tensor:
        """
        Args:
            features (dict[str, Tensor]): backbone features, [N, C4, H, W] for ``in_features``.
            boxes (list[Boxes]): N lists of boxes in input-image coordinates.

        Returns:
            Tensor: [R, C] mean-pooled res5 features.
        """
        box_features = self._shared_roi_transform([features[f] for f in self.in_features], boxes)
        return box_features.mean(dim=[2, 3])

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ):
        """
        See :meth:`ROIHeads.forward`. Targets carry ``gt_pids`` (int64, -1 = unlabeled person).

        Returns:
            In training, ``([], losses)``; in inference, ``(instances, {})`` where each Instances
            has ``pred_boxes``, ``scores``, ``pred_classes`` and ``pred_embeds`` [Ri', D].
        """
        del images
        if self.training:
            assert targets, "PersonSearchROIHeads needs targets in training"
            proposals = self.label_and_sample_proposals(proposals, targets)
        del targets

        pooled = self._pooled_features(features, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(pooled)
        final = self.embed_boxes == "final" and not self.training
        embeds = None if final else self.reid_head(pooled)

        if self.training:
            del features
            losses = self.box_predictor.losses(predictions, proposals)
            reid_losses = self._reid_losses(embeds, proposals)
            clash = set(losses) & set(reid_losses)
            if clash:
                raise ValueError(f"Identity/center loss names clash with the box losses: {clash}")
            losses.update(reid_losses)
            return [], losses

        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        scores = self.box_predictor.predict_probs(predictions, proposals)
        image_shapes = [x.image_size for x in proposals]
        pred_instances, kept_indices = fast_rcnn_inference(
            boxes,
            scores,
            image_shapes,
            self.box_predictor.test_score_thresh,
            self.box_predictor.test_nms_thresh,
            self.box_predictor.test_topk_per_image,
        )
        if final:
            # the kept, regressed boxes (input-image coordinates), pooled and embedded again
            pooled = self._pooled_features(features, [x.pred_boxes for x in pred_instances])
            embeds = self.reid_head(pooled)
            for inst, e in zip(pred_instances, embeds.split([len(x) for x in pred_instances])):
                inst.pred_embeds = e
            return pred_instances, {}
        embeds_per_image = embeds.split([len(p) for p in proposals])
        for inst, kept, b, s, e in zip(
            pred_instances, kept_indices, boxes, scores, embeds_per_image
        ):
            # fast_rcnn_inference indexes the rows left after dropping non-finite boxes/scores.
            valid = torch.isfinite(b).all(dim=1) & torch.isfinite(s).all(dim=1)
            inst.pred_embeds = e[valid][kept]
        return pred_instances, {}

    def forward_with_given_boxes(
        self, features: Dict[str, torch.Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """
        Embeddings of given boxes (the query path of person search), computed exactly as the
        gallery path computes them for proposals.

        Args:
            features (dict[str, Tensor]): backbone features, as in :meth:`forward`.
            instances (list[Instances]): N Instances with ``pred_boxes`` in the coordinates of
                the resized network input (``pred_classes`` is not needed).

        Returns:
            list[Instances]: the same Instances with ``pred_embeds`` [Ri, D] added.
        """
        assert not self.training
        assert instances[0].has("pred_boxes")
        num_boxes = [len(x) for x in instances]
        if sum(num_boxes) == 0:
            device = features[self.in_features[0]].device
            for x in instances:
                x.pred_embeds = torch.zeros(0, self.reid_head.embed_dim, device=device)
            return instances
        pooled = self._pooled_features(features, [x.pred_boxes for x in instances])
        embeds = self.reid_head(pooled)
        for x, e in zip(instances, embeds.split(num_boxes)):
            x.pred_embeds = e
        return instances
