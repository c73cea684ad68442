"""Training engine: the person-search trainer (any number of processes) and its checkpointer."""

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from .checkpoint import PersonSearchCheckpointer
from .trainer import PersonSearchTrainer, check_batch_size, create_ddp_model, per_process_batch

__all__ = [
    "PersonSearchCheckpointer",
    "PersonSearchTrainer",
    "check_batch_size",
    "create_ddp_model",
    "per_process_batch",
]
