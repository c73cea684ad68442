"""Collectives that keep the identity memories of IAN identical on every process.

Under ``torch.distributed`` (Detectron2's ``launch``), every process sees its own slice of the
mini-batch. The identity memories (center-loss centers, OIM lookup table and queue) are buffers
that each process updates itself (``DistributedDataParallel`` only averages gradients), so each
update must be computed from the boxes of ALL processes, in the same order everywhere:

* :func:`all_gather_rows` concatenates a variable number of rows per process in rank order;
* :func:`broadcast_from_main` makes every process use rank 0's random draw.

:func:`launch` is Detectron2's ``launch`` whose processes leave ``torch.distributed`` cleanly
(:func:`destroy_process_groups`) when their function returns: a gloo process group left alive at
interpreter exit is torn down by the C++ runtime with its threads still joinable, and the process
may abort ("terminate called without an active exception", SIGABRT) after its work succeeded.

With one process both return their input and run no collective, so single-process training is
unchanged. Every process must call them the same number of times, in the same order (they are
collectives): callers never skip them on a process whose slice happens to be empty.

Shape shorthand:
    n_r: number of rows held by process r (may be 0, may differ across processes)
    n: sum of n_r over the processes
"""

import logging
from datetime import timedelta
from typing import Callable, Optional, Sequence, Tuple

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
import torch.distributed as dist

from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.engine.launch import launch as _d2_launch
from detectron2.utils import comm

__all__ = [
    "all_gather_rows",
    "broadcast_from_main",
    "destroy_process_groups",
    "is_distributed",
    "launch",
]

logger = logging.getLogger(__name__)


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """
    Detectron2's :func:`detectron2.engine.launch` (same arguments), with each process's process
    groups destroyed when ``main_func`` returns (:func:`destroy_process_groups`). With one
    process in all, ``main_func(*args)`` runs in this process, as in Detectron2.

    ``main_func`` must be importable by name (a module-level function): the processes are
    spawned.
    """
    _d2_launch(
        _run_then_leave,
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=(main_func, tuple(args)),
        timeout=timeout,
    )


def _run_then_leave(main_func: Callable, args: Tuple) -> None:
    """One process of :func:`launch`: ``main_func(*args)``, then leave the process groups (not
    on an exception: the process ends with it, and another process may wait in a collective)."""
    main_func(*args)
    destroy_process_groups()


def destroy_process_groups() -> None:
    """
    Leave ``torch.distributed``: wait for every process (a barrier, so that no process tears
    down its end while another still exchanges with it), then destroy every process group
    (joins the gloo / NCCL threads while the interpreter is whole). A no-op when
    ``torch.distributed`` is not initialised.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    comm.synchronize()
    dist.destroy_process_group()


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
