"""Center loss (Wen et al., ECCV 2016), as used by IAN.

Shape shorthand:
    B: number of boxes given to the loss
    D: embedding dimension
    L: number of labeled identities
"""

import logging
from typing import Dict, Tuple

import torch
from torch import nn

from detectron2.config import configurable

from ...utils.comm import all_gather_rows

from .build import CENTER_LOSS_REGISTRY, configured_num_pids

__all__ = ["CenterLoss"]

logger = logging.getLogger(__name__)


@CENTER_LOSS_REGISTRY.register()
class CenterLoss(nn.Module):
    """
    L_c = 1/2 * sum_i ||x_i - c_{y_i}||^2 / max(n, 1), over the n boxes with a label y_i >= 0.

    Normalisation: the sum over the selected boxes is divided by their number n, so
    dL_c/dx_i = (x_i - c_{y_i}) / n (the paper's gradient x_i - c_{y_i}, averaged over the batch).
    Boxes with a negative label (unlabeled persons, background, ignored) never enter.

    The centers are a buffer ``centers`` [L, D] (saved in checkpoints, zeros at start), updated in
    training mode after each forward, with the centers used by that forward:

        delta_c_j = sum_i [y_i = j] (c_j - x_i) / (1 + sum_i [y_i = j])
        c_j <- c_j - alpha * delta_c_j

    The optimizer never sees them (no parameters in this module).

    Several processes (torch.distributed): the loss of each process uses its own boxes, but the
    update uses the boxes of ALL processes of the iteration (gathered in rank order), so the
    centers are identical everywhere and equal to the one-process update over the whole batch.
    """

    @configurable
    def __init__(self, *, num_pids: int, embed_dim: int, alpha: float = 0.5):
        """
        Args:
            num_pids (int): L, number of labeled identities (one center each).
            embed_dim (int): D, feature dimension.
            alpha (float): center learning rate.
        """
        super().__init__()
        self.num_pids = num_pids
        self.embed_dim = embed_dim
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_pids, embed_dim))

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_pids": configured_num_pids(cfg),
            "embed_dim": cfg.MODEL.REID.EMBED_DIM,
            "alpha": cfg.MODEL.CENTER_LOSS.ALPHA,
        }

    def forward(
        self, feats: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """
        Args:
            feats (Tensor): [B, D] features x_i.
            labels (Tensor): [B] int64 identity labels; only labels >= 0 are used.

        Returns:
            Tensor: scalar loss (zero, but connected to ``feats``, when no box is selected).
            dict[str, float]: ``center_dist``, the mean ||x_i - c_{y_i}|| over the selected boxes
            (absent when none is selected).
        """
        keep = labels >= 0
        x = feats[keep]
        y = labels[keep]
        n = y.numel()
        if n > 0 and int(y.max()) >= self.num_pids:
            raise ValueError(f"Identity label {int(y.max())} >= num_pids={self.num_pids}")
        stats = {}
        if n == 0:
            loss = feats.sum() * 0.0
        else:
            centers = self.centers[y].to(dtype=x.dtype)
            diff = x - centers
            loss = 0.5 * (diff * diff).sum() / n
            stats["center_dist"] = diff.detach().norm(dim=1).mean().item()
        if self.training:
            # every process takes part, even with no box: the update is a collective
            self.update_centers(*all_gather_rows(x.detach().to(self.centers.dtype), y))
        return loss, stats

    @torch.no_grad()
    def update_centers(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """
        One mini-batch update of the centers of the identities present in ``y``.

        Under torch.distributed, :meth:`forward` passes the boxes of every process (rank order),
        so the centers stay identical on all processes and equal to one process's update over
        the whole mini-batch.

        Args:
            x (Tensor): [n, D] features.
            y (Tensor): [n] labels in [0, L).
        """
        if y.numel() == 0:
            return
        x = x.to(self.centers.dtype)
        counts = torch.bincount(y, minlength=self.num_pids).to(self.centers.dtype)
        delta = torch.zeros_like(self.centers)
        delta.index_add_(0, y, self.centers[y] - x)
        delta /= (1.0 + counts).unsqueeze(1)
        self.centers.sub_(self.alpha * delta)

    def extra_repr(self) -> str:
        return f"num_pids={self.num_pids}, embed_dim={self.embed_dim}, alpha={self.alpha}"
