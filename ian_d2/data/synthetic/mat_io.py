"""Helpers that build MATLAB structs / cells the way the real dataset files store them.

``scipy.io.savemat`` writes a numpy structured array of object fields as a MATLAB struct array
and an object array as a cell array. Loaded back with ``scipy.io.loadmat`` (default arguments)
the result has the same nesting and dtypes as the real files: struct arrays of shape (1, n),
strings as arrays of '<U..', boxes as (1, 4) uint16, flags as (1, 1) uint8, and "empty"
entries as (1, 0) float64.

The .mat header normally embeds the creation time; :func:`save_mat` writes a fixed header so
that identical content gives identical bytes.
"""

import io
import os
from typing import Any, Dict, Sequence

import numpy as np
import scipy.io as sio

__all__ = ["struct_array", "cell_column", "box_u16", "flag_u8", "empty_field", "save_mat"]

_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: ian_d2.data.synthetic"


def struct_array(records: Sequence[Dict[str, Any]], fields: Sequence[str]) -> np.ndarray:
    """Build a 1×n MATLAB struct array.

    Args:
        records: One dict per element, with a value for every field.
        fields: Field names, in order.

    Returns:
        A (1, n) structured array with object fields.
    """
    arr = np.empty((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, rec in enumerate(records):
        for f in fields:
            arr[f][0, i] = rec[f]
    return arr


def cell_column(items: Sequence[Any]) -> np.ndarray:
    """Build an n×1 MATLAB cell array."""
    arr = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        arr[i, 0] = v
    return arr


def box_u16(box: Sequence[int]) -> np.ndarray:
    """A [x, y, w, h] box as the 1×4 uint16 array of the real files."""
    return np.asarray([[int(v) for v in box]], dtype=np.uint16)


def flag_u8(value: int) -> np.ndarray:
    """A 1×1 uint8 flag (``ishard``)."""
    return np.asarray([[int(value)]], dtype=np.uint8)


def empty_field() -> np.ndarray:
    """The empty 1×0 double used by the real gallery entries without the query person."""
    return np.zeros((1, 0), dtype=np.float64)


def save_mat(path: str, variables: Dict[str, Any]) -> None:
    """Write a MATLAB 5 .mat file with a reproducible header.

    Args:
        path: Output file (parent folders are created).
        variables: Variable name -> value.
    """
    buf = io.BytesIO()
    sio.savemat(buf, variables, do_compression=False, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER.ljust(116, b" ")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(data))
