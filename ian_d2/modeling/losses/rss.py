"""Random sampling softmax (RSS), the identity loss of E2E-PS (Xiao et al., 2016) and IAN.

Shape shorthand:
    B: number of boxes given to the loss
    D: embedding dimension
    L: number of labeled identities; class L is the background class
    S: number of sampled classes
"""

import logging
from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from ...utils.comm import all_gather_rows, broadcast_from_main, is_distributed
from .build import REID_LOSS_REGISTRY, configured_num_pids
from .constants import BACKGROUND_PID

__all__ = ["RandomSamplingSoftmaxLoss"]

logger = logging.getLogger(__name__)


@REID_LOSS_REGISTRY.register()
class RandomSamplingSoftmaxLoss(nn.Module):
    """
    Softmax cross-entropy over L labeled identities + 1 background class, where each mini-batch
    computes the softmax on a random subset of the classes. The subset always contains every
    target class of the batch and is filled up to ``sample_size`` classes with classes drawn
    uniformly at random without replacement from the others.

    Inputs per box: labeled identity (label >= 0) -> its class; background (``BACKGROUND_PID``)
    -> class L if ``use_background``, else ignored; unlabeled persons and ignored boxes (other
    negative labels) never enter the loss. The loss is the mean over the boxes that enter.

    The classifier acts on ``scalar * x`` (x is the L2-normalised embedding).

    Several processes (torch.distributed): the class subset is drawn once per iteration for the
    whole mini-batch and shared by every process (see :meth:`sample_classes`); the classifier is
    a parameter, so DistributedDataParallel keeps it identical.
    """

    @configurable
    def __init__(
        self,
        *,
        num_pids: int,
        embed_dim: int,
        sample_size: int,
        scalar: float = 10.0,
        use_background: bool = True,
    ):
        """
        Args:
            num_pids (int): L, number of labeled identities.
            embed_dim (int): D, embedding dimension.
            sample_size (int): S, number of classes in the sampled softmax (it grows to the number
                of distinct targets when the batch has more).
            scalar (float): scale applied to the features before the classifier.
            use_background (bool): whether background boxes are samples of the background class.
        """
        super().__init__()
        self.num_pids = num_pids
        self.embed_dim = embed_dim
        self.sample_size = sample_size
        self.scalar = scalar
        self.use_background = use_background
        # Rows [0, L) are the identities, row L the background class.
        self.classifier = nn.Linear(embed_dim, num_pids + 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.constant_(self.classifier.bias, 0.0)

    @classmethod
    def from_config(cls, cfg):
        return {
            "num_pids": configured_num_pids(cfg),
            "embed_dim": cfg.MODEL.REID.EMBED_DIM,
            "sample_size": cfg.MODEL.REID.RSS.SAMPLE_SIZE,
            "scalar": cfg.MODEL.REID.RSS.SCALAR,
            "use_background": cfg.MODEL.REID.RSS.USE_BACKGROUND,
        }

    @property
    def num_classes(self) -> int:
        """L + 1 (identities and background)."""
        return self.num_pids + 1

    def targets_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """
        Args:
            labels (Tensor): [B] int64 labels (see ``ian_d2.modeling.losses``).

        Returns:
            Tensor: [B] class indices in [0, L] and -1 for the boxes that do not enter the loss.
        """
        targets = labels.clone()
        bg = labels == BACKGROUND_PID
        targets[labels < 0] = -1
        if self.use_background:
            targets[bg] = self.num_pids
        return targets

    @torch.no_grad()
    def sample_classes(self, targets: torch.Tensor) -> torch.Tensor:
        """
        Draw the class subset of one mini-batch.

        Several processes (torch.distributed, training mode): ONE subset for the whole
        mini-batch, the same on every process: the union of the targets of all processes, filled
        up with classes drawn by rank 0 and broadcast. Each process's loss is then a softmax over
        the same classes, as one process would compute over the whole mini-batch, and the
        gradients that DistributedDataParallel averages belong to one sampled softmax. Every
        process must call this in every training iteration (a collective), even with no target.

        Args:
            targets (Tensor): [n] class indices in [0, L] (n may be 0).

        Returns:
            Tensor: [S] sorted, distinct class indices; a superset of ``targets`` (of every
            process's targets when distributed).
        """
        present = torch.unique(targets)
        sync = self.training and is_distributed()
        if sync:
            present = torch.unique(all_gather_rows(present)[0])
        num_extra = min(self.sample_size, self.num_classes) - present.numel()
        if num_extra <= 0:
            return present
        candidates = torch.ones(self.num_classes, dtype=torch.bool, device=targets.device)
        candidates[present] = False
        candidates = candidates.nonzero().squeeze(1)
        perm = torch.randperm(candidates.numel(), device=targets.device)[:num_extra]
        if sync:  # every process knows num_extra (same union): rank 0's draw for all
            perm = broadcast_from_main(perm.contiguous())
        return torch.sort(torch.cat([present, candidates[perm]]))[0]

    def forward(
        self, feats: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """
        Args:
            feats (Tensor): [B, D] embeddings.
            labels (Tensor): [B] int64 labels (see ``ian_d2.modeling.losses``).

        Returns:
            Tensor: scalar loss (zero, connected to the inputs and the classifier, when no box
            enters the loss).
            dict[str, float]: ``accuracy`` of the labeled boxes (argmax over the sampled identity
            classes, background excluded), when any.
        """
        if labels.numel() > 0 and int(labels.max()) >= self.num_pids:
            raise ValueError(f"Identity label {int(labels.max())} >= num_pids={self.num_pids}")
        targets = self.targets_from_labels(labels)
        keep = targets >= 0
        x = feats[keep]
        t = targets[keep]
        if keep.any() or (self.training and is_distributed()):  # a collective: never skipped
            classes = self.sample_classes(t)
        if not keep.any():
            zero = feats.sum() * 0.0 + self.classifier.weight.sum() * 0.0
            return zero + self.classifier.bias.sum() * 0.0, {}
        # Map every class index to its column in the sampled logits.
        column = torch.full((self.num_classes,), -1, dtype=torch.long, device=t.device)
        column[classes] = torch.arange(classes.numel(), device=t.device)
        logits = F.linear(
            x * self.scalar, self.classifier.weight[classes], self.classifier.bias[classes]
        )
        t_col = column[t]
        loss = F.cross_entropy(logits, t_col)

        stats = {}
        with torch.no_grad():
            labeled = t < self.num_pids
            if labeled.any():
                # identity accuracy: argmax over the sampled identity classes (background, the
                # last sampled column when present, left out: it says nothing about identities)
                num_id_cols = int((classes < self.num_pids).sum())
                pred = logits[labeled][:, :num_id_cols].argmax(dim=1)
                stats["accuracy"] = (pred == t_col[labeled]).float().mean().item()
        return loss, stats

    def extra_repr(self) -> str:
        return (
            f"num_pids={self.num_pids}, sample_size={self.sample_size}, scalar={self.scalar}, "
            f"use_background={self.use_background}"
        )
