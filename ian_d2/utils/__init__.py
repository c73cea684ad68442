"""Utilities: collectives of the identity memories under torch.distributed."""

from .comm import all_gather_rows, broadcast_from_main, is_distributed

__all__ = ["all_gather_rows", "broadcast_from_main", "is_distributed"]
