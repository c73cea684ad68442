"""BatchNorm1d of the embedding head, with statistics over every process of a distributed run.

Shape shorthand:
    R: number of rows (boxes) on this process
    D: number of channels (embedding dimension)
"""

import logging

import torch
from fvcore.nn.distributed import differentiable_all_reduce
from torch import nn
from torch.nn import functional as F

from ..utils.comm import is_distributed

__all__ = ["SyncBatchNorm1d", "batch_norm_running_stats"]

logger = logging.getLogger(__name__)


def batch_norm_running_stats(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """
    Normalise ``x`` [R, D] with the running statistics of ``bn`` (its affine parameters
    included), leaving the statistics unchanged: what training-mode BatchNorm does here when a
    mini-batch holds fewer than 2 rows (batch statistics undefined). The parameters stay in the
    graph, as DistributedDataParallel requires of every process.
    """
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class SyncBatchNorm1d(nn.BatchNorm1d):
    """
    BatchNorm1d whose training statistics are those of ALL rows of the mini-batch, over every
    process of a distributed run, each row weighted equally: exactly the statistics one process
    would compute over the concatenated rows (up to float rounding; the variance is computed as
    E[x^2] - E[x]^2 in float32). Processes may hold different numbers of rows, none included.

    ``torch.nn.SyncBatchNorm`` needs CUDA and Detectron2's ``NaiveSyncBatchNorm`` is 2-D; this is
    the 1-D form used by :class:`ReIDEmbeddingHead` (``MODEL.REID.EMBED_NORM "SyncBN"``). With one
    process, or in eval mode, it is ``nn.BatchNorm1d``; checkpoints are interchangeable with it.
    In training with fewer than 2 rows in total it normalises with the running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x (Tensor): [R, D].

        Returns:
            Tensor: [R, D] normalised rows.
        """
        if not self.training:
            return super().forward(x)
        if not is_distributed():
            if x.shape[0] < 2:
                return batch_norm_running_stats(self, x)
            return super().forward(x)
        d = x.shape[1]
        xf = x.float()
        count = xf.new_full((1,), float(x.shape[0]))
        vec = differentiable_all_reduce(torch.cat([xf.sum(0), (xf * xf).sum(0), count]))
        total = int(vec[2 * d].item())
        if total < 2:
            return batch_norm_running_stats(self, x)
        mean = vec[:d] / total
        var = (vec[d : 2 * d] / total - mean * mean).clamp(min=0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average
                    factor = 1.0 / float(self.num_batches_tracked)
                else:
                    factor = self.momentum
                unbiased = var * (total / (total - 1))
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                self.running_var.mul_(1 - factor).add_(factor * unbiased.detach())
        out = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out.to(x.dtype)
