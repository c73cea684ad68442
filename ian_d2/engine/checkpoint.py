"""A DetectionCheckpointer whose files appear whole or not at all.

Detectron2 writes ``model_XXXXXXX.pth`` and then ``last_checkpoint`` in place: a process killed
while writing leaves a truncated file, and a truncated ``last_checkpoint`` makes ``--resume``
fail. Here both are written to a temporary file beside the target, flushed to disk, then renamed
over it (``os.replace`` is atomic on POSIX), so that ``--resume`` after a crash always finds the
last checkpoint that was completely written.
"""

import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..utils.io import atomic_write

__all__ = ["PersonSearchCheckpointer"]

logger = logging.getLogger(__name__)


class PersonSearchCheckpointer(DetectionCheckpointer):
    """
    :class:`DetectionCheckpointer` with atomic writes of the checkpoint files and of
    ``last_checkpoint`` (local directories; other storage goes through Detectron2's own path).
    The file format is Detectron2's: any DetectionCheckpointer reads these checkpoints.
    """

    def _is_local(self) -> bool:
        return bool(self.save_dir) and os.path.isdir(self.save_dir)

    def save(self, name: str, **kwargs) -> None:
        if not self._is_local() or not self.save_to_disk:
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self._is_local():
            return super().tag_last_checkpoint(last_filename_basename)
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), "w")
