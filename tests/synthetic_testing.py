"""Helpers of the tests that register tiny generated datasets in Detectron2's catalogs.

The tiny synthetic CUHK-SYSU itself is generated once per session by the ``synthetic_cuhk_sysu``
fixture of ``tests/conftest.py``.
"""

import contextlib
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog

from ian_d2.data import register_person_search_dataset

__all__ = ["registered", "unregister"]


def unregister(names: Dict[str, str]) -> None:
    """Remove the splits ``names`` (split -> registered name) from both catalogs."""
    for n in names.values():
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


@contextlib.contextmanager
def registered(family: str, prefix: str, root: str):
    """
    Register the splits of the ``family`` dataset ("cuhk_sysu" or "prw") under ``root`` as
    ``{prefix}_{split}`` and yield their names (split -> registered name); unregistered on exit.
    """
    names = register_person_search_dataset(family, prefix, root)
    try:
        yield names
    finally:
        unregister(names)
