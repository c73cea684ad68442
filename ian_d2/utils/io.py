"""Files that appear whole or not at all."""

import os
from typing import IO, Callable

__all__ = ["atomic_write", "pid_of_temporary_file", "process_alive", "write_new_file"]


def _write_then_commit(
    path: str, write: Callable[[IO], None], mode: str, commit: Callable[[str, str], None]
) -> None:
    """``write(f)`` on ``<path>.tmp.<pid>``, flushed to disk, then ``commit(tmp, path)``; the
    temporary file is gone afterwards, whether ``write`` or ``commit`` failed or not."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, write: Callable[[IO], None], mode: str = "wb") -> None:
    """
    Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it to
    ``path`` (``os.replace``, atomic on POSIX): a reader or a process restarted after a crash
    sees the old file or the new one, never a truncated one. The temporary file
    (``<path>.tmp.<pid>``) is removed if ``write`` fails.
    """
    _write_then_commit(path, write, mode, os.replace)


def write_new_file(path: str, write: Callable[[IO], None], mode: str = "wb") -> None:
    """
    Like :func:`atomic_write`, but never replaces an existing file: the complete temporary file
    is hard-linked to ``path`` (atomic, and refused by the file system when ``path`` exists),
    then removed. Two processes that pick the same name cannot overwrite each other's file.

    Raises:
        FileExistsError: ``path`` exists (nothing written there; the temporary file is removed).
    """
    _write_then_commit(path, write, mode, os.link)


def pid_of_temporary_file(path: str) -> int:
    """The process id in the name of a temporary file of :func:`atomic_write` (-1 if none)."""
    suffix = path.rpartition(".tmp.")[2]
    return int(suffix) if suffix.isdigit() else -1


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True
