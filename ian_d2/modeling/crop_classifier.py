"""Step 1 of the IAN training: identity classification of person crops and background crops.

Shape shorthand:
    N: number of images in the mini-batch
    K: number of crops, combined over all images
    D: embedding dimension
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ROIAlign, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.poolers import convert_boxes_to_pooler_format
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from .losses import BACKGROUND_PID, UNLABELED_PID, build_reid_loss, named_losses
from .num_pids import with_num_pids
from .reid_head import build_reid_head
from .roi_heads import PersonSearchROIHeads

__all__ = ["CropClassifier"]

logger = logging.getLogger(__name__)


class _CropHeads(nn.Module):
    """
    Holds res5 and the identity branch under the names that :class:`PersonSearchROIHeads` uses
    (``res5``, ``reid_head``, ``reid_loss``), so that a CropClassifier checkpoint loads into the
    detector by name (``roi_heads.res5.*``, ``roi_heads.reid_head.*``, ``roi_heads.reid_loss.*``).
    """

    def __init__(self, res5: nn.Module, reid_head: nn.Module, reid_loss: nn.Module):
        super().__init__()
        self.res5 = res5
        self.reid_head = reid_head
        self.reid_loss = reid_loss


@META_ARCH_REGISTRY.register()
class CropClassifier(nn.Module):
    """
    Crops the ground-truth persons and random background boxes out of the (normalised, resized)
    input image with ROIAlign, resizes each crop to ``crop_size``, runs the whole ResNet on it
    (stem, res2-res4 of the C4 backbone, then res5 exactly as built by the detector's ROI heads),
    mean-pools, embeds with the configured head (``MODEL.REID.HEAD_NAME``, default
    :class:`ReIDEmbeddingHead`) and classifies the identity with the configured identity loss
    (``MODEL.REID.LOSS_TYPE``; RSS: labeled identities + background; OIM: labeled identities,
    background crops unused).

    Parameter names match the detector's (``backbone.*``, ``roi_heads.res5.*``,
    ``roi_heads.reid_head.*``, ``roi_heads.reid_loss.*``): set the detector's MODEL.WEIGHTS to this
    model's checkpoint (the RPN and box predictor start from scratch).

    Training returns ``{"loss_reid": ...}`` (or the ``loss_*`` names a registered identity loss
    returns). Inference returns, per image, ``{"pred_embeds":
    [M, D]}`` for the input's ``instances.gt_boxes`` (resized input coordinates).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        res5: nn.Module,
        reid_head: nn.Module,
        reid_loss: nn.Module,
        pixel_mean: Tuple[float],
        pixel_std: Tuple[float],
        in_feature: str = "res4",
        crop_size: Tuple[int, int] = (224, 224),
        persons_per_image: int = 0,
        num_bg_per_image: int = 4,
        bg_iou_thresh: float = 0.3,
        include_unlabeled: bool = False,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            backbone (Backbone): C4 ResNet backbone (output ``in_feature``).
            res5 (nn.Module): the res5 stage, as built by ``Res5ROIHeads``.
            reid_head (nn.Module): pooled res5 feature -> embedding.
            reid_loss (nn.Module): identity loss, ``(feats, labels) -> (loss, stats)``.
            pixel_mean, pixel_std (tuple[float]): input normalisation, as GeneralizedRCNN.
            in_feature (str): backbone output fed to res5.
            crop_size (tuple[int, int]): (height, width) of the crops.
            persons_per_image (int): person crops per image: 0 = every labeled person (and
                unlabeled one with ``include_unlabeled``), k > 0 = k of them drawn at random.
            num_bg_per_image (int): background crops per image; -1 = as many as person crops.
            bg_iou_thresh (float): maximum IoU of a background crop with any ground-truth box.
            include_unlabeled (bool): crop unlabeled persons too.
            loss_weight (float): weight of ``loss_reid`` (of every ``loss_*`` of the identity
                loss).
        """
        super().__init__()
        self.backbone = backbone
        self.roi_heads = _CropHeads(res5, reid_head, reid_loss)
        self.in_feature = in_feature
        if persons_per_image < 0:
            raise ValueError(f"PRETRAIN_CROPS.PERSONS_PER_IMAGE={persons_per_image} must be >= 0")
        if num_bg_per_image < -1:
            raise ValueError(f"PRETRAIN_CROPS.NUM_BG_PER_IMAGE={num_bg_per_image} must be >= -1")
        self.crop_size = tuple(crop_size)
        self.persons_per_image = persons_per_image
        self.num_bg_per_image = num_bg_per_image
        self.bg_iou_thresh = bg_iou_thresh
        self.include_unlabeled = include_unlabeled
        self.loss_weight = loss_weight
        self.cropper = ROIAlign(self.crop_size, 1.0, sampling_ratio=2, aligned=True)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        cfg = with_num_pids(cfg)  # the number of identities, resolved once for the loss
        backbone = build_backbone(cfg)
        in_feature = cfg.MODEL.ROI_HEADS.IN_FEATURES[0]
        # The detector's own res5 builder keeps the architectures (and names) identical.
        res5, out_channels = PersonSearchROIHeads._build_res5_block(cfg)
        crops = cfg.MODEL.REID.PRETRAIN_CROPS
        # fmt: off
        return {
            "backbone":          backbone,
            "res5":              res5,
            "reid_head":         build_reid_head(cfg, ShapeSpec(channels=out_channels)),
            "reid_loss":         build_reid_loss(cfg),
            "pixel_mean":        cfg.MODEL.PIXEL_MEAN,
            "pixel_std":         cfg.MODEL.PIXEL_STD,
            "in_feature":        in_feature,
            "crop_size":         tuple(crops.CROP_SIZE),
            "persons_per_image": crops.PERSONS_PER_IMAGE,
            "num_bg_per_image":  crops.NUM_BG_PER_IMAGE,
            "bg_iou_thresh":     crops.BG_IOU_THRESH,
            "include_unlabeled": crops.INCLUDE_UNLABELED,
            "loss_weight":       cfg.MODEL.REID.LOSS_WEIGHT,
        }
        # fmt: on

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        """
        Normalise and batch the input images (as ``GeneralizedRCNN.preprocess_image``).
        """
        images = [x["image"].to(self.device) for x in batched_inputs]
        images = [(x - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def _sample_background(
        self, gt_boxes: Boxes, image_size: Tuple[int, int], n: int
    ) -> torch.Tensor:
        """
        Random boxes shaped like the image's ground-truth boxes (or 1/2-height, 0.4-aspect boxes
        when there is none), inside the image, overlapping every ground-truth box by less than
        ``bg_iou_thresh``.

        Returns:
            Tensor: [k, 4] boxes (XYXY), k <= n (fewer when few random boxes avoid the persons).
        """
        device = gt_boxes.device
        h, w = image_size
        if n <= 0:
            return torch.zeros(0, 4, device=device)
        num_cand = 4 * n
        if len(gt_boxes) > 0:
            sizes = gt_boxes.tensor[:, 2:] - gt_boxes.tensor[:, :2]
            sizes = sizes[torch.randint(len(gt_boxes), (num_cand,), device=device)]
        else:
            sizes = torch.tensor([[0.2 * h, 0.5 * h]], device=device).expand(num_cand, 2)
        bw = sizes[:, 0].clamp(min=2.0, max=float(w))
        bh = sizes[:, 1].clamp(min=2.0, max=float(h))
        x0 = torch.rand(num_cand, device=device) * (w - bw)
        y0 = torch.rand(num_cand, device=device) * (h - bh)
        cand = torch.stack([x0, y0, x0 + bw, y0 + bh], dim=1)
        if len(gt_boxes) > 0:
            max_iou = pairwise_iou(Boxes(cand), gt_boxes).max(dim=1)[0]
            cand = cand[max_iou < self.bg_iou_thresh]
        return cand[:n]

    def _crop_targets(
        self, instances: List[Instances], image_sizes: List[Tuple[int, int]]
    ) -> Tuple[List[Boxes], torch.Tensor]:
        """
        Returns:
            list[Boxes]: N lists of crop boxes.
            Tensor: [K] labels (pid, ``UNLABELED_PID`` or ``BACKGROUND_PID``).
        """
        boxes, labels = [], []
        for inst, size in zip(instances, image_sizes):
            pids = inst.gt_pids.to(torch.long)
            keep = pids >= 0
            if self.include_unlabeled:
                keep |= pids == UNLABELED_PID
            idx = keep.nonzero()[:, 0]
            if 0 < self.persons_per_image < idx.numel():
                perm = torch.randperm(idx.numel(), device=idx.device)[: self.persons_per_image]
                idx = idx[perm.sort()[0]]
            person_boxes = inst.gt_boxes.tensor[idx]
            num_bg = idx.numel() if self.num_bg_per_image < 0 else self.num_bg_per_image
            bg_boxes = self._sample_background(inst.gt_boxes, size, num_bg)
            boxes.append(Boxes(torch.cat([person_boxes, bg_boxes], dim=0)))
            labels.append(pids[idx])
            labels.append(torch.full((len(bg_boxes),), BACKGROUND_PID, device=pids.device))
        return boxes, torch.cat(labels, dim=0)

    def embed_crops(self, images: ImageList, boxes: List[Boxes]) -> torch.Tensor:
        """
        Args:
            images (ImageList): normalised images.
            boxes (list[Boxes]): N lists of boxes in input coordinates.

        Returns:
            Tensor: [K, D] L2-normalised embeddings.
        """
        crops = self.cropper(images.tensor, convert_boxes_to_pooler_format(boxes))
        x = self.backbone(crops)[self.in_feature]
        x = self.roi_heads.res5(x).mean(dim=[2, 3])
        return self.roi_heads.reid_head(x)

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """
        Args:
            batched_inputs (list[dict]): Detectron2 inputs; ``instances`` with ``gt_boxes`` and
                ``gt_pids`` is needed in training (and read, if present, in inference).

        Returns:
            dict[str, Tensor] in training (``loss_reid``, or the names the identity loss
            returns); list[dict] with ``pred_embeds`` [M, D] in inference.
        """
        images = self.preprocess_image(batched_inputs)
        if not self.training:
            return self.inference(batched_inputs, images)
        instances = [x["instances"].to(self.device) for x in batched_inputs]
        boxes, labels = self._crop_targets(instances, images.image_sizes)
        if labels.numel() == 0:
            # every parameter in the graph (DistributedDataParallel expects gradients for all),
            # and the embedding head (SyncBN) and identity loss still called on an empty batch:
            # under torch.distributed they are collectives that every process must join
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            channels = self.roi_heads.res5[-1].out_channels
            embeds = self.roi_heads.reid_head(self.pixel_mean.new_zeros((0, channels)))
            loss, _ = self.roi_heads.reid_loss(embeds, labels)
            losses = named_losses(loss, "loss_reid")
            return {k: zero + v * self.loss_weight for k, v in losses.items()}
        embeds = self.embed_crops(images, boxes)
        loss, stats = self.roi_heads.reid_loss(embeds, labels)
        storage = get_event_storage()
        for k, v in stats.items():
            storage.put_scalar(f"reid/{k}", v)
        storage.put_scalar("reid/num_crops", float(labels.numel()))
        return {k: v * self.loss_weight for k, v in named_losses(loss, "loss_reid").items()}

    def inference(
        self, batched_inputs: List[Dict[str, torch.Tensor]], images: Optional[ImageList] = None
    ) -> List[Dict[str, torch.Tensor]]:
        """
        Embeddings of the ground-truth boxes of each input (none if it has no ``instances``).
        """
        if images is None:
            images = self.preprocess_image(batched_inputs)
        boxes = []
        for x in batched_inputs:
            if "instances" in x:
                boxes.append(x["instances"].gt_boxes.to(self.device))
            else:
                boxes.append(Boxes(torch.zeros(0, 4, device=self.device)))
        num = [len(b) for b in boxes]
        if sum(num) == 0:
            embeds = torch.zeros(0, self.roi_heads.reid_head.embed_dim, device=self.device)
        else:
            embeds = self.embed_crops(images, boxes)
        return [{"pred_embeds": e} for e in embeds.split(num)]
