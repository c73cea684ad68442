"""Collectives that keep the identity memories of IAN identical on every process.

Under ``torch.distributed`` (Detectron2's ``launch``), every process sees its own slice of the
mini-batch. The identity memories (center-loss centers, OIM lookup table and queue) are buffers
that each process updates itself (``DistributedDataParallel`` only averages gradients), so each
update must be computed from the boxes of ALL processes, in the same order everywhere:

* :func:`all_gather_rows` concatenates a variable number of rows per process in rank order;
* :func:`broadcast_from_main` makes every process use rank 0's random draw.

With one process both return their input and run no collective, so single-process training is
unchanged. Every process must call them the same number of times, in the same order (they are
collectives): callers never skip them on a process whose slice happens to be empty.

Shape shorthand:
    n_r: number of rows held by process r (may be 0, may differ across processes)
    n: sum of n_r over the processes
"""

import logging
from typing import Tuple

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
import torch.distributed as dist

from detectron2.utils import comm

__all__ = ["all_gather_rows", "broadcast_from_main", "is_distributed"]

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    """Whether more than one process takes part (torch.distributed initialised, world size > 1)."""
    return comm.get_world_size() > 1


@torch.no_grad()
def all_gather_rows(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """
    Concatenate, in rank order, the rows that every process holds.

    Args:
        tensors: one or more tensors with the same number of rows n_r on this process; each
            must have the same trailing shape, dtype and device type on every process (the
            device of the collective backend: CPU for gloo, CUDA for NCCL).

    Returns:
        tuple[Tensor]: one tensor [n, ...] per input: the rows of rank 0, then rank 1, ... .
        The inputs themselves with one process.
    """
    if not tensors:
        raise ValueError("all_gather_rows needs at least one tensor")
    num_rows = tensors[0].shape[0]
    for t in tensors[1:]:
        if t.shape[0] != num_rows:
            raise ValueError(
                f"all_gather_rows: tensors hold {num_rows} and {t.shape[0]} rows; every tensor "
                "must hold one row per item"
            )
    if not is_distributed():
        return tuple(tensors)
    world_size = comm.get_world_size()
    device = tensors[0].device
    count = torch.tensor([num_rows], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    max_rows = max(counts)
    gathered = []
    for t in tensors:
        padded = t.new_zeros((max_rows,) + tuple(t.shape[1:]))
        padded[:num_rows] = t
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([p[:c] for p, c in zip(parts, counts)], dim=0))
    return tuple(gathered)


@torch.no_grad()
def broadcast_from_main(tensor: torch.Tensor) -> torch.Tensor:
    """
    Rank 0's value of ``tensor`` on every process (in place; every process passes a tensor of
    the same shape and dtype). With one process, ``tensor`` itself.
    """
    if is_distributed():
        dist.broadcast(tensor, src=0)
    return tensor
