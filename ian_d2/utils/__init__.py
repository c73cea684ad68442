"""Utilities: collectives of the identity memories under torch.distributed, atomic files."""

from .comm import all_gather_rows, broadcast_from_main, is_distributed
from .io import atomic_write

__all__ = ["all_gather_rows", "atomic_write", "broadcast_from_main", "is_distributed"]
