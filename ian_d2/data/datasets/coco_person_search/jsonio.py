"""Reading a JSON file with an error that names it, and writing one atomically with one list
item per line."""

import json
import os
from typing import Sequence

from ....utils.io import atomic_write
from .._common import DatasetFormatError, require_file

__all__ = ["load_json", "write_json_lines"]


def load_json(path: str, what: str):
    """The content of a JSON file.

    Args:
        path: the file.
        what: what the file is, for the error messages.

    Raises:
        FileNotFoundError: no such file (naming it and ``what``).
        DatasetFormatError: not valid JSON (naming the file and the position).
    """
    require_file(path, what)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{what}: '{path}' is not valid JSON: {e}") from e


def write_json_lines(obj: dict, path: str, list_keys: Sequence[str]) -> None:
    """Write a JSON object atomically, each item of the lists ``list_keys`` on its own line
    (compact, yet readable and diff-able)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lines = []
    for k, v in obj.items():
        if k in list_keys and isinstance(v, list) and v:
            items = ",\n".join(f"    {json.dumps(x)}" for x in v)
            lines.append(f"  {json.dumps(k)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    atomic_write(path, lambda f: f.write(text), mode="w")
