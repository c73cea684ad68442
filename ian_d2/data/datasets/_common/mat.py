"""MATLAB (.mat) annotation files: loading a variable, and its strings and boxes (scipy is
imported when a file is really read)."""

from typing import List, Sequence, Tuple

import numpy as np

from .boxes import xywh_to_xyxy
from .errors import DatasetFormatError, require_file

__all__ = ["load_mat_var", "mat_string", "mat_cell_strings", "mat_box_or_nan"]


def load_mat_var(path: str, names: Sequence[str], what: str) -> Tuple[str, np.ndarray]:
    """Load the first of ``names`` present in the MATLAB file ``path``.

    The file is read with ``squeeze_me=False`` so that a 1-element struct array keeps its shape
    (1, 1) and behaves like the real, larger files.

    Args:
        path: the .mat file.
        names: variable names to look for, in order of preference.
        what: a short description of the file for error messages.

    Returns:
        (the variable name found, its array)
    """
    import scipy.io

    require_file(path, what)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=False)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DatasetFormatError(f"{what}: could not read MATLAB file '{path}': {e}") from e
    for name in names:
        if name in mat:
            return name, mat[name]
    found = sorted(k for k in mat if not k.startswith("__"))
    raise DatasetFormatError(
        f"{what}: '{path}' has no variable {' / '.join(repr(n) for n in names)} "
        f"(variables found: {found})"
    )


def mat_string(value) -> str:
    """Turn a loadmat string (``array(['s1.jpg'], dtype='<U6')`` or a plain str) into a str."""
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        arr = np.asarray(arr.reshape(-1)[0]) if arr.size else np.asarray("")
    if arr.dtype.kind in "US":
        return str(arr.reshape(-1)[0]) if arr.size else ""
    raise DatasetFormatError(f"expected a MATLAB string, got an array of dtype {arr.dtype}")


def mat_cell_strings(cell: np.ndarray) -> List[str]:
    """Flatten a MATLAB cell array of strings (any shape) into a list of str."""
    return [mat_string(c) for c in np.asarray(cell, dtype=object).reshape(-1)]


def mat_box_or_nan(idlocate, where: str) -> np.ndarray:
    """[x y w h] (e.g. uint16 1x4, or empty 1x0 when absent) -> float64 XYXY, NaN when absent.

    Args:
        idlocate: the loadmat value of the box.
        where: file and entry, for the error message.
    """
    arr = np.asarray(idlocate)
    if arr.size == 0:
        return np.full(4, np.nan)
    if arr.size != 4:
        raise DatasetFormatError(f"{where}: expected an [x y w h] box of 4 values, got {arr}")
    return xywh_to_xyxy(arr.reshape(4))
