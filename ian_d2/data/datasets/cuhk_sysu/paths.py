"""The file locations of a CUHK-SYSU root, and the protocol and query-subset files present."""

import os
import re
from typing import Dict, Optional

__all__ = [
    "SUBSET_FILES",
    "TESTG_RE",
    "cuhk_sysu_paths",
    "find_cuhk_sysu_protocols",
    "find_cuhk_sysu_subsets",
    "default_gallery_size",
]

TESTG_RE = re.compile(r"^TestG(\d+)\.mat$")
"""The name of a protocol file, TestG<N>.mat (N: gallery size)."""

SUBSET_FILES = {"occlusion": "Occlusion.mat", "resolution": "Resolution.mat"}
"""{query subset: its file name in the subset folder}."""


def cuhk_sysu_paths(root: str) -> Dict[str, str]:
    """The standard file locations under a CUHK-SYSU root."""
    ann = os.path.join(root, "annotation")
    return {
        "image_root": os.path.join(root, "Image", "SSM"),
        "images_mat": os.path.join(ann, "Images.mat"),
        "pool_mat": os.path.join(ann, "pool.mat"),
        "train_mat": os.path.join(ann, "test", "train_test", "Train.mat"),
        "protocol_dir": os.path.join(ann, "test", "train_test"),
        "subset_dir": os.path.join(ann, "test", "subset"),
    }


def find_cuhk_sysu_protocols(root: str) -> Dict[int, str]:
    """All TestG{N}.mat files present under ``root``: {N: path}, sorted by N."""
    pdir = cuhk_sysu_paths(root)["protocol_dir"]
    if not os.path.isdir(pdir):
        return {}
    found = {}
    for name in os.listdir(pdir):
        m = TESTG_RE.match(name)
        if m:
            found[int(m.group(1))] = os.path.join(pdir, name)
    return dict(sorted(found.items()))


def find_cuhk_sysu_subsets(root: str) -> Dict[str, str]:
    """The query-subset files present under ``root``: {'occlusion'|'resolution': path}."""
    sdir = cuhk_sysu_paths(root)["subset_dir"]
    return {
        k: os.path.join(sdir, f)
        for k, f in SUBSET_FILES.items()
        if os.path.isfile(os.path.join(sdir, f))
    }


def default_gallery_size(root: str) -> Optional[int]:
    """The gallery size used by default: 100 when TestG100.mat exists, else the smallest found."""
    sizes = list(find_cuhk_sysu_protocols(root))
    if not sizes:
        return None
    return 100 if 100 in sizes else sizes[0]
