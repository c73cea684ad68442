"""Helpers of the tests that register tiny generated datasets in Detectron2's catalogs."""

import contextlib
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog

from ian_d2.data import register_person_search_dataset
from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw

__all__ = ["registered_synthetic", "unregister"]


def unregister(names: Dict[str, str]) -> None:
    """Remove the splits ``names`` (split -> registered name) from both catalogs."""
    for n in names.values():
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


@contextlib.contextmanager
def registered_synthetic(family: str, prefix: str, root: str, size="tiny", seed=0):
    """
    Generate a synthetic ``family`` dataset ("cuhk_sysu" or "prw") under ``root``, register its
    splits as ``{prefix}_{split}`` and yield ``(names, summary)``; unregistered on exit.
    """
    generate = generate_cuhk_sysu if family == "cuhk_sysu" else generate_prw
    summary = generate(root, size=size, seed=seed)
    names = register_person_search_dataset(family, prefix, root)
    try:
        yield names, summary
    finally:
        unregister(names)
