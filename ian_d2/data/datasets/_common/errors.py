"""The error of a malformed dataset file, and the checks that a dataset file or folder exists.

Every message names the file (and the variable or image) and says what was expected, so that a
user pointing the code at a half-downloaded dataset knows what to fix.
"""

import os

__all__ = ["ENV_HINT", "DatasetFormatError", "require_dir", "require_file"]

ENV_HINT = (
    "Set $DETECTRON2_DATASETS to the folder that holds the datasets (default: ./datasets); "
    "see datasets/README.md for the expected tree."
)


class DatasetFormatError(ValueError):
    """A dataset file exists but does not hold what the loader expects (variable, field, box)."""


def require_dir(path: str, what: str) -> str:
    """Return ``path`` if it is a directory, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what}: directory '{path}' does not exist. {ENV_HINT}")
    return path


def require_file(path: str, what: str) -> str:
    """Return ``path`` if it is a file, else raise FileNotFoundError naming it and ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: file '{path}' does not exist. {ENV_HINT}")
    return path
