"""The test split of a built-in dataset root (gallery records, query records) from its
annotation files: shared by the dataset registration and the rescore CLI. No torch.
"""

from typing import Dict, List, Optional, Tuple

from .cuhk_sysu import load_cuhk_sysu_gallery, load_cuhk_sysu_query
from .prw import load_prw_gallery, load_prw_query

__all__ = ["FAMILIES", "load_test_split"]

FAMILIES = ("cuhk_sysu", "prw")
"""On-disk formats of the built-in datasets."""


def load_test_split(
    family: str, root: str, image_sizes: Optional[Dict[str, Tuple[int, int]]] = None
) -> Tuple[List[dict], List[dict]]:
    """The gallery records and the query records of a dataset root (``{prefix}_test``).

    Args:
        family: "cuhk_sysu" or "prw".
        root: the dataset folder.
        image_sizes: {image_id: (height, width)}; when given, no image is read (see the
            loaders), e.g. to re-score saved predictions from the annotation files alone.
    """
    if family == "cuhk_sysu":
        return (
            load_cuhk_sysu_gallery(root, image_sizes=image_sizes),
            load_cuhk_sysu_query(root, image_sizes=image_sizes),
        )
    if family == "prw":
        return load_prw_gallery(root, image_sizes), load_prw_query(root, image_sizes)
    raise ValueError(f"unknown dataset family '{family}'; expected one of {FAMILIES}")
