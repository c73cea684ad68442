"""Registration of COCO person-search splits in Detectron2's catalog, one by one or from
dataset list files (``$IAN_D2_COCO_DATASETS``, ``$DETECTRON2_DATASETS/coco_person_search.json``).
Detectron2 is imported when a function is called, not with this module."""

import logging
import os
from typing import List, Optional

from .._common import DatasetFormatError
from .derived import derived_protocol_path
from .eval_split import load_person_search_coco_test
from .jsonio import load_json
from .train import load_person_search_coco_train

__all__ = [
    "COCO_FAMILY",
    "DATASET_LIST_ENV",
    "DEFAULT_DATASET_LIST",
    "register_person_search_coco",
    "register_coco_dataset_list",
    "register_coco_dataset_lists",
]

logger = logging.getLogger(__name__)

COCO_FAMILY = "coco"
"""``dataset_family`` of the registered splits."""
DATASET_LIST_ENV = "IAN_D2_COCO_DATASETS"
DEFAULT_DATASET_LIST = "coco_person_search.json"


def _load_train_and_record_map(name: str, json_file: str, image_root: Optional[str]):
    from detectron2.data import MetadataCatalog

    records, pid_map = load_person_search_coco_train(json_file, image_root)
    MetadataCatalog.get(name).set(num_train_pids=len(pid_map), pid_map=pid_map)
    return records


def _load_test(json_file, image_root, protocol_file, derived: bool) -> List[dict]:
    gallery, queries, _ = load_person_search_coco_test(
        json_file,
        image_root,
        None if derived else protocol_file,
        derived_path=protocol_file if derived else None,
    )
    return gallery + queries


def register_person_search_coco(
    name: str,
    json_file: str,
    image_root: Optional[str],
    protocol_file: Optional[str] = None,
    *,
    split: Optional[str] = None,
) -> str:
    """Register a COCO person-search split under ``name`` (files are read on first use).

    Train vs test: ``split`` ("train" or "test"); when None, "test" if a ``protocol_file`` is
    given, else "train" if ``name`` ends with "train", else "test".

    Metadata: ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
    ``dataset_family="coco"``, ``split``, ``json_file``, ``image_root``, ``dataset_root`` (the
    JSON's folder) and ``train_dataset`` or ``test_dataset`` (= name). A test split also has
    ``protocol_file`` (the given file, or where the derived one is saved) and
    ``protocol_derived``; a train split gets ``num_train_pids`` and ``pid_map`` once read (see
    :func:`ian_d2.data.get_num_train_pids`).

    Args:
        name: the dataset name (``DATASETS.TRAIN`` / ``DATASETS.TEST``).
        json_file: the COCO JSON with ``person_id`` per person box.
        image_root: the folder that ``file_name`` is relative to.
        protocol_file: test splits: the protocol JSON; None = derived
            (``docs/COCO_PERSON_SEARCH_FORMAT.md``).
        split: "train" or "test" (default: see above).

    Returns:
        name.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if split is None:
        if protocol_file is not None:
            split = "test"
        else:
            split = "train" if name.endswith("train") else "test"
        logger.debug("COCO person search '%s': split %s (inferred)", name, split)
    if split not in ("train", "test"):
        raise ValueError(
            f"register_person_search_coco('{name}'): split must be 'train' or "
            f"'test', got {split!r}"
        )
    if split == "train" and protocol_file is not None:
        raise ValueError(
            f"register_person_search_coco('{name}'): a protocol file belongs to a test split, "
            f"not to split='train' (got protocol_file='{protocol_file}')"
        )
    json_file = os.fspath(json_file)
    meta = dict(
        thing_classes=["person"],
        evaluator_type="person_search",
        dataset_family=COCO_FAMILY,
        dataset_root=os.path.dirname(os.path.abspath(json_file)),
        json_file=json_file,
        image_root=image_root,
        split=split,
    )
    if split == "train":
        DatasetCatalog.register(
            name, lambda n=name, j=json_file, r=image_root: _load_train_and_record_map(n, j, r)
        )
        meta["train_dataset"] = name
    else:
        derived = protocol_file is None
        path = derived_protocol_path(json_file) if derived else os.fspath(protocol_file)
        DatasetCatalog.register(
            name,
            lambda j=json_file, r=image_root, p=path, d=derived: _load_test(j, r, p, d),
        )
        meta.update(test_dataset=name, protocol_file=path, protocol_derived=derived)
    MetadataCatalog.get(name).set(**meta)
    return name


def register_coco_dataset_list(path: str) -> List[str]:
    """Register the datasets of a list file ``{name: {"json_file", "image_root",
    "protocol_file"?, "split"?}}``; relative paths are relative to the file's folder. A name
    registered before with the same JSON is left as it is.

    Returns:
        the names listed.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    obj = load_json(path, "COCO person-search dataset list")
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"'{path}': expected an object {{name: {{json_file, ...}}}}")
    base = os.path.dirname(os.path.abspath(path))
    allowed = {"json_file", "image_root", "protocol_file", "split"}

    def resolve(p):
        return p if p is None or os.path.isabs(p) else os.path.join(base, os.path.expanduser(p))

    for name, e in obj.items():
        if not isinstance(e, dict) or not isinstance(e.get("json_file"), str):
            raise DatasetFormatError(f"'{path}': dataset {name!r} needs a 'json_file' (a path)")
        unknown = sorted(set(e) - allowed)
        if unknown:
            raise DatasetFormatError(
                f"'{path}': dataset {name!r} has unknown key(s) {unknown}; expected "
                f"{sorted(allowed)}"
            )
        json_file = resolve(e["json_file"])
        if name in DatasetCatalog.list():
            old = MetadataCatalog.get(name).get("json_file", None)
            if old == json_file:
                continue
            raise ValueError(
                f"'{path}': dataset name {name!r} is already registered (json_file={old!r})"
            )
        register_person_search_coco(
            name,
            json_file,
            resolve(e.get("image_root")),
            resolve(e.get("protocol_file")),
            split=e.get("split"),
        )
    logger.info("Registered COCO person-search datasets %s from '%s'", list(obj), path)
    return list(obj)


def register_coco_dataset_lists(datasets_root: Optional[str] = None) -> List[str]:
    """Register the list files of ``$IAN_D2_COCO_DATASETS`` (``os.pathsep``-separated) and
    ``<datasets_root>/coco_person_search.json`` when it exists. Returns the names."""
    paths = [p for p in os.getenv(DATASET_LIST_ENV, "").split(os.pathsep) if p]
    if datasets_root is not None:
        default = os.path.join(datasets_root, DEFAULT_DATASET_LIST)
        if os.path.isfile(default) and default not in paths:
            paths.insert(0, default)
    names = []
    for p in paths:
        names += register_coco_dataset_list(os.path.expanduser(p))
    return names
