"""Identity embedding head: pooled res5 feature -> L2-normalised embedding ("feat").

Heads are looked up by ``MODEL.REID.HEAD_NAME`` in :data:`REID_HEAD_REGISTRY` (default
``ReIDEmbeddingHead``), like Detectron2's ``ROI_BOX_HEAD_REGISTRY``. A registered head is called
as ``cls(cfg, input_shape)`` (``input_shape.channels`` = C), maps [R, C] (or [R, C, H, W]) pooled
features to [R, D] L2-normalised embeddings, must accept R = 0, and has an ``embed_dim``
attribute (D). The ROI heads and the step-1 crop classifier build it under the same name
(``roi_heads.reid_head``), so a step-1 checkpoint loads into the detector.

Shape shorthand:
    R: number of boxes
    C: channels of the pooled res5 feature (2048 for R-50/101)
    D: embedding dimension (256)
"""

import logging

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry

from ..utils.registry import lookup
from .batch_norm import SyncBatchNorm1d, batch_norm_running_stats

__all__ = ["REID_HEAD_REGISTRY", "ReIDEmbeddingHead", "build_reid_head"]

logger = logging.getLogger(__name__)

REID_HEAD_REGISTRY = Registry("REID_HEAD")
REID_HEAD_REGISTRY.__doc__ = """
Registry of identity embedding heads, selected by ``MODEL.REID.HEAD_NAME``. A registered object
is called with ``(cfg, input_shape)`` and returns an ``nn.Module`` (see this module's docstring).
"""


def build_reid_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """
    Build the embedding head named by ``MODEL.REID.HEAD_NAME`` (case-insensitive).

    Args:
        cfg (CfgNode): a config with the IAN keys.
        input_shape (ShapeSpec): shape of the pooled res5 feature (``channels`` = C).

    Returns:
        nn.Module: [R, C] -> [R, D], with an ``embed_dim`` attribute.
    """
    cls = lookup(
        REID_HEAD_REGISTRY,
        cfg.MODEL.REID.HEAD_NAME,
        "MODEL.REID.HEAD_NAME",
        "ian_d2.modeling.REID_HEAD_REGISTRY",
    )
    return cls(cfg, input_shape)


@REID_HEAD_REGISTRY.register()
class ReIDEmbeddingHead(nn.Module):
    """
    Optional dropout, linear C -> D, optional BatchNorm1d, then L2 normalisation.

    Dropout (``MODEL.REID.DROPOUT``, an ablation; IAN uses none) acts on the pooled feature
    right before the projection, in training mode only. With ``dropout == 0`` the head has no
    dropout module, so its state dict and outputs are those of a head without the option.

    Normalisation: "SyncBN" (statistics over the boxes of every process: identical to "BN" with
    one process), "BN" (statistics of each process's own boxes) or "" (none). In training, a
    mini-batch of fewer than 2 boxes is normalised with the running statistics.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        embed_dim: int = 256,
        norm: str = "SyncBN",
        dropout: float = 0.0,
    ):
        """
        Args:
            input_shape (ShapeSpec): shape of the pooled input feature (``channels`` = C).
            embed_dim (int): D.
            norm (str): "SyncBN" or "BN" for a BatchNorm1d before the L2 normalisation (over
                all processes, or per process), "" for none.
            dropout (float): probability p of ``nn.Dropout(p)`` on the pooled [R, C] feature
                before the projection; 0 = no dropout module at all.
        """
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MODEL.REID.DROPOUT must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        # None (not nn.Identity) when off: no entry in the module tree, nothing to load
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.proj = nn.Linear(input_shape.channels, embed_dim)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.constant_(self.proj.bias, 0.0)
        if norm == "SyncBN":
            self.norm = SyncBatchNorm1d(embed_dim)
        elif norm == "BN":
            self.norm = nn.BatchNorm1d(embed_dim)
        elif norm == "":
            self.norm = None
        else:
            raise ValueError(f"Unknown MODEL.REID.EMBED_NORM: {norm}")

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "input_shape": input_shape,
            "embed_dim": cfg.MODEL.REID.EMBED_DIM,
            "norm": cfg.MODEL.REID.EMBED_NORM,
            "dropout": cfg.MODEL.REID.DROPOUT,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor): [R, C] pooled box features (or [R, C, H, W], averaged over H and W).

        Returns:
            Tensor: [R, D] L2-normalised embeddings.
        """
        if x.dim() > 2:
            x = x.mean(dim=[2, 3])
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.proj(x)
        if isinstance(self.norm, SyncBatchNorm1d):  # handles small batches over all processes
            x = self.norm(x)
        elif self.norm is not None:
            # no batch statistics from fewer than 2 boxes: the running ones
            small = self.training and x.shape[0] < 2
            x = batch_norm_running_stats(self.norm, x) if small else self.norm(x)
        return F.normalize(x, dim=1)
