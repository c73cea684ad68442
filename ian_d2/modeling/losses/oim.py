"""Online instance matching (OIM) loss (Xiao et al., "Joint Detection and Identification Feature
Learning for Person Search", CVPR 2017).

Shape shorthand:
    B: number of boxes given to the loss
    D: embedding dimension
    L: number of labeled identities (rows of the lookup table)
    Q: size of the circular queue of unlabeled features
"""

import logging
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from ...utils.comm import all_gather_rows
from .build import REID_LOSS_REGISTRY, configured_num_pids
from .constants import UNLABELED_PID

__all__ = ["OIMLoss"]

logger = logging.getLogger(__name__)


@REID_LOSS_REGISTRY.register()
class OIMLoss(nn.Module):
    """
    Softmax over the cosine similarities (times ``scalar``) between each labeled box's embedding
    and [lookup table; queue]; the target is the box's row of the lookup table.

    - Labeled boxes (label >= 0) enter the loss, then update the lookup table row of their
      identity one box after the other: v <- m v + (1 - m) x, v <- v / ||v||.
    - Unlabeled persons (``UNLABELED_PID``) do not enter the loss; their features are pushed into
      the circular queue (the oldest entries are overwritten).
    - Background and ignored boxes are not used.

    The loss is computed with the table and queue as they were before this mini-batch; both are
    buffers (``lut`` [L, D], ``queue`` [Q, D], ``queue_ptr``), saved in checkpoints and updated
    without gradients, in training mode only.

    Several processes (torch.distributed): the updates use the boxes of ALL processes of the
    iteration, gathered in rank order (rank 0's boxes first, each process's in its own order),
    so table and queue are identical everywhere and equal to one process's update over the
    whole mini-batch.
    """

    @configurable
    def __init__(
        self,
        *,
        num_pids: int,
        embed_dim: int,
        cq_size: int,
        momentum: float = 0.5,
        scalar: float = 30.0,
    ):
        """
        Args:
            num_pids (int): L, number of labeled identities.
            embed_dim (int): D, embedding dimension.
            cq_size (int): Q, queue size (5000 for CUHK-SYSU and 500 for PRW in the paper).
            momentum (float): m, momentum of the lookup-table update.
            scalar (float): scale of the cosine logits.
        """
        super().__init__()
        self.num_pids = num_pids
        self.embed_dim = embed_dim
        self.cq_size = cq_size
        self.momentum = momentum
        self.scalar = scalar
        self.register_buffer("lut", torch.zeros(num_pids, embed_dim))
        self.register_buffer("queue", torch.zeros(cq_size, embed_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_pids": configured_num_pids(cfg),
            "embed_dim": cfg.MODEL.REID.EMBED_DIM,
            "cq_size": cfg.MODEL.REID.OIM.CQ_SIZE,
            "momentum": cfg.MODEL.REID.OIM.MOMENTUM,
            "scalar": cfg.MODEL.REID.OIM.SCALAR,
        }

    def forward(
        self, feats: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """
        Args:
            feats (Tensor): [B, D] L2-normalised embeddings.
            labels (Tensor): [B] int64 labels (see ``ian_d2.modeling.losses``).

        Returns:
            Tensor: scalar loss, the mean over the labeled boxes (zero, connected to ``feats``,
            when there is none).
            dict[str, float]: ``accuracy`` (argmax over table and queue equals the target) when
            any box is labeled.
        """
        labeled = labels >= 0
        unlabeled = labels == UNLABELED_PID
        x = feats[labeled]
        y = labels[labeled]
        stats = {}
        if y.numel() > 0:
            if int(y.max()) >= self.num_pids:
                raise ValueError(f"Identity label {int(y.max())} >= num_pids={self.num_pids}")
            bank = torch.cat([self.lut, self.queue], dim=0).to(dtype=x.dtype)
            logits = self.scalar * x @ bank.t()
            loss = F.cross_entropy(logits, y)
            with torch.no_grad():
                stats["accuracy"] = (logits.argmax(dim=1) == y).float().mean().item()
        else:
            loss = feats.sum() * 0.0
        if self.training:
            # every process takes part, even with no box: the gather is a collective
            used = labeled | unlabeled
            all_x, all_y = all_gather_rows(feats.detach()[used].to(self.lut.dtype), labels[used])
            is_labeled = all_y >= 0
            self.update_lut(all_x[is_labeled], all_y[is_labeled])
            self.update_queue(all_x[~is_labeled])
        return loss, stats

    @torch.no_grad()
    def update_lut(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """
        Momentum update of the lookup table, box by box in the given order.

        Args:
            x (Tensor): [n, D] embeddings of labeled boxes.
            y (Tensor): [n] their identities.
        """
        x = x.to(self.lut.dtype)
        for xi, yi in zip(x, y.tolist()):
            v = self.momentum * self.lut[yi] + (1.0 - self.momentum) * xi
            self.lut[yi] = v / v.norm().clamp(min=1e-12)

    @torch.no_grad()
    def update_queue(self, x: torch.Tensor) -> None:
        """
        Push features into the circular queue (first in, first overwritten).

        Args:
            x (Tensor): [n, D] embeddings of unlabeled persons.
        """
        n = x.shape[0]
        if n == 0 or self.cq_size == 0:
            return
        ptr = int(self.queue_ptr)
        if n > self.cq_size:  # only the last Q entries would survive
            ptr = (ptr + n - self.cq_size) % self.cq_size
            x = x[-self.cq_size :]
            n = self.cq_size
        idx = (ptr + torch.arange(n, device=x.device)) % self.cq_size
        self.queue[idx] = x.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % self.cq_size)

    def extra_repr(self) -> str:
        return (
            f"num_pids={self.num_pids}, cq_size={self.cq_size}, momentum={self.momentum}, "
            f"scalar={self.scalar}"
        )
