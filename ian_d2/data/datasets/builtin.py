"""Registration of CUHK-SYSU, PRW and their synthetic stand-ins into Detectron2's catalogs.

Registered names (root = ``$DETECTRON2_DATASETS``, default ``./datasets``):

===========================  ===============================  ==================================
name                         root                             content
===========================  ===============================  ==================================
cuhk_sysu_train              ROOT/cuhk_sysu                   11,206 train images, ids 0..5531
cuhk_sysu_gallery            ROOT/cuhk_sysu                   6,978 test (pool) images
cuhk_sysu_query              ROOT/cuhk_sysu                   2,900 queries (given boxes)
cuhk_sysu_test               ROOT/cuhk_sysu                   gallery + queries (evaluation)
prw_train                    ROOT/PRW                         5,704 frames, ids remapped 0..481
prw_gallery                  ROOT/PRW                         6,112 test frames
prw_query                    ROOT/PRW                         2,057 queries
prw_test                     ROOT/PRW                         gallery + queries (evaluation)
cuhk_sysu_synth_*            ROOT/cuhk_sysu_synth             synthetic data, CUHK-SYSU format
prw_synth_*                  ROOT/PRW_synth                   synthetic data, PRW format
===========================  ===============================  ==================================

Every split's metadata has ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
``dataset_family`` ("cuhk_sysu" or "prw"), ``dataset_root``, ``image_root`` and the names of the
sibling splits (``train_dataset``, ``gallery_dataset``, ``query_dataset``, ``test_dataset``).
Protocol data (the CUHK-SYSU gallery lists, the PRW cameras) is read from the annotation files
on demand: see :func:`ian_d2.data.datasets.cuhk_sysu.load_cuhk_sysu_protocol`. The number of
train identities is read with :func:`get_num_train_pids` (cheap, cached in the metadata).
"""

import logging
import os
from typing import Dict, List

from ... import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_person_search import COCO_FAMILY, coco_train_pid_map, register_coco_dataset_lists
from .cuhk_sysu import (
    cuhk_sysu_num_train_pids,
    load_cuhk_sysu_gallery,
    load_cuhk_sysu_query,
    load_cuhk_sysu_train,
)
from .prw import load_prw_gallery, load_prw_query, load_prw_train, prw_train_pid_map
from .eval_split import FAMILIES, load_test_split

__all__ = [
    "register_person_search_dataset",
    "register_all_person_search",
    "get_num_train_pids",
    "load_test_split",
    "datasets_root",
    "BUILTIN_ROOTS",
]

logger = logging.getLogger(__name__)

#: prefix -> (dataset family, folder under $DETECTRON2_DATASETS)
BUILTIN_ROOTS = {
    "cuhk_sysu": ("cuhk_sysu", "cuhk_sysu"),
    "prw": ("prw", "PRW"),
    "cuhk_sysu_synth": ("cuhk_sysu", "cuhk_sysu_synth"),
    "prw_synth": ("prw", "PRW_synth"),
}


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS``, default ``datasets`` (relative to the working directory)."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def _load_test_records(family: str, root: str) -> List[dict]:
    gallery, queries = load_test_split(family, root)
    return gallery + queries


def _load_prw_train_and_record_map(name: str, root: str):
    records, pid_map = load_prw_train(root)
    MetadataCatalog.get(name).set(num_train_pids=len(pid_map), pid_map=pid_map)
    return records


def register_person_search_dataset(family: str, prefix: str, root: str) -> Dict[str, str]:
    """Register ``{prefix}_train``, ``_gallery``, ``_query`` and ``_test`` for a root.

    ``{prefix}_test`` is the gallery records followed by the query records (those have a
    ``query_index``): the set that the person-search evaluator runs on, in one pass.

    Args:
        family: "cuhk_sysu" or "prw" (the on-disk format).
        prefix: name prefix, e.g. "cuhk_sysu" or "my_copy".
        root: the dataset folder (read lazily, when a split is first loaded).

    Returns:
        {"train": name, "gallery": name, "query": name, "test": name}
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown dataset family '{family}'; expected one of {FAMILIES}")
    names = {split: f"{prefix}_{split}" for split in ("train", "gallery", "query", "test")}
    if family == "cuhk_sysu":
        loaders = {
            "train": lambda r=root: load_cuhk_sysu_train(r),
            "gallery": lambda r=root: load_cuhk_sysu_gallery(r),
            "query": lambda r=root: load_cuhk_sysu_query(r),
        }
        image_root = os.path.join(root, "Image", "SSM")
    else:
        loaders = {
            "train": lambda n=names["train"], r=root: _load_prw_train_and_record_map(n, r),
            "gallery": lambda r=root: load_prw_gallery(r),
            "query": lambda r=root: load_prw_query(r),
        }
        image_root = os.path.join(root, "frames")
    loaders["test"] = lambda f=family, r=root: _load_test_records(f, r)
    for split, name in names.items():
        DatasetCatalog.register(name, loaders[split])
        MetadataCatalog.get(name).set(
            thing_classes=["person"],
            evaluator_type="person_search",
            dataset_family=family,
            dataset_root=root,
            image_root=image_root,
            split=split,
            train_dataset=names["train"],
            gallery_dataset=names["gallery"],
            query_dataset=names["query"],
            test_dataset=names["test"],
        )
    return names


def get_num_train_pids(dataset_name: str) -> int:
    """Number of train identities of a registered person-search train split.

    Read from the annotation files the first time (CUHK-SYSU: Train.mat; PRW: the labeled ids
    of the train frames; COCO person search: the labeled ids of the JSON) and cached in the
    split's metadata as ``num_train_pids``.
    """
    meta = MetadataCatalog.get(dataset_name)
    if hasattr(meta, "num_train_pids"):
        return meta.num_train_pids
    family = getattr(meta, "dataset_family", None)
    if family == "cuhk_sysu":
        n = cuhk_sysu_num_train_pids(meta.dataset_root)
        meta.set(num_train_pids=n)
    elif family == "prw":
        pid_map = prw_train_pid_map(meta.dataset_root)
        meta.set(num_train_pids=len(pid_map), pid_map=pid_map)
    elif family == COCO_FAMILY:
        if meta.get("split", None) != "train":
            raise ValueError(
                f"'{dataset_name}' is a COCO person-search {meta.get('split', None)} split; "
                "the number of train identities comes from a split registered as 'train'"
            )
        pid_map = coco_train_pid_map(meta.json_file, meta.image_root)
        meta.set(num_train_pids=len(pid_map), pid_map=pid_map)
    else:
        raise KeyError(
            f"'{dataset_name}' is not a registered person-search dataset "
            f"(its metadata has no 'dataset_family'); registered: {DatasetCatalog.list()}"
        )
    return meta.num_train_pids


def register_all_person_search(root: str = None) -> None:
    """Register the built-in names of the table above under ``root`` (default: env variable)."""
    root = datasets_root() if root is None else root
    for prefix, (family, folder) in BUILTIN_ROOTS.items():
        if f"{prefix}_train" in DatasetCatalog.list():
            continue
        register_person_search_dataset(family, prefix, os.path.join(root, folder))


# Importing this module registers the built-in names (and the COCO dataset lists of
# $IAN_D2_COCO_DATASETS and $DETECTRON2_DATASETS/coco_person_search.json).
register_all_person_search()
register_coco_dataset_lists(datasets_root())
