"""CUHK-SYSU person search dataset, read from its ORIGINAL annotation files (no torch).

Expected tree (see datasets/README.md and docs/protocols.md)::

    ROOT/Image/SSM/s1.jpg ...
    ROOT/annotation/Images.mat                        Img: all boxes [x y w h] per image
    ROOT/annotation/pool.mat                          pool: test image names
    ROOT/annotation/test/train_test/Train.mat         Train: the 5,532 train identities
    ROOT/annotation/test/train_test/TestG{N}.mat      TestG{N}: queries and their N-image galleries
    ROOT/annotation/test/subset/{Occlusion,Resolution}.mat   query subsets (optional)

Modules: :mod:`.paths` (file locations), :mod:`.protocol` (the protocol files),
:mod:`.annotations` (Images.mat, pool.mat, Train.mat) and :mod:`.splits` (the train, gallery and
query records). Boxes are converted once, on reading, from uint16 [x, y, w, h] to float64
XYXY_ABS.
"""

from .annotations import cuhk_sysu_num_train_pids, load_cuhk_sysu_images
from .paths import (
    cuhk_sysu_paths,
    default_gallery_size,
    find_cuhk_sysu_protocols,
    find_cuhk_sysu_subsets,
)
from .protocol import (
    CuhkSysuProtocol,
    load_cuhk_sysu_protocol,
    load_cuhk_sysu_subset_indices,
)
from .splits import load_cuhk_sysu_gallery, load_cuhk_sysu_query, load_cuhk_sysu_train

__all__ = [
    "CuhkSysuProtocol",
    "cuhk_sysu_paths",
    "find_cuhk_sysu_protocols",
    "find_cuhk_sysu_subsets",
    "load_cuhk_sysu_protocol",
    "load_cuhk_sysu_subset_indices",
    "load_cuhk_sysu_images",
    "cuhk_sysu_num_train_pids",
    "load_cuhk_sysu_train",
    "load_cuhk_sysu_gallery",
    "load_cuhk_sysu_query",
    "default_gallery_size",
]
