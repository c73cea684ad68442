"""Files that appear whole or not at all."""

import os
from typing import IO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str, write: Callable[[IO], None], mode: str = "wb") -> None:
    """
    Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it to
    ``path`` (``os.replace``, atomic on POSIX): a reader or a process restarted after a crash
    sees the old file or the new one, never a truncated one. The temporary file
    (``<path>.tmp.<pid>``) is removed if ``write`` fails.
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
