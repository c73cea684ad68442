"""Person-search datasets in COCO format ("your own data"), with their own query protocol.

A dataset is a COCO instances JSON whose person boxes carry an integer ``person_id``; a test
split's queries and galleries come from a protocol JSON, or from a protocol derived from the
test JSON and saved beside it. The file formats, with a minimal example, are described in
``docs/COCO_PERSON_SEARCH_FORMAT.md``.

Modules, in reading order: :mod:`.values` and :mod:`.jsonio` (value checks, JSON files),
:mod:`.reader` (the dataset JSON), :mod:`.records` (its Detectron2 records), :mod:`.train` (the
train split and its identity map), :mod:`.protocol` (protocol files: parse, check, write),
:mod:`.derived` (derived protocols and where they are saved), :mod:`.eval_split` (the test
split) and :mod:`.register` (registration in Detectron2's catalog, also from dataset list
files). Only the registration imports Detectron2 (when called); the readers import no torch.
"""

from .derived import derive_protocol, derived_protocol_path, ensure_derived_protocol
from .eval_split import load_person_search_coco_test
from .jsonio import write_json_lines
from .protocol import (
    PROTOCOL_FORMAT,
    PROTOCOL_VERSION,
    PersonSearchProtocol,
    ProtocolGallery,
    ProtocolSpec,
    check_protocol,
    read_person_search_protocol,
    write_protocol,
)
from .reader import CocoPersonSearch, read_coco_person_search
from .records import coco_records
from .register import (
    COCO_FAMILY,
    DATASET_LIST_ENV,
    DEFAULT_DATASET_LIST,
    register_coco_dataset_list,
    register_coco_dataset_lists,
    register_person_search_coco,
)
from .train import coco_train_pid_map, load_person_search_coco_train
from .values import xyxy_to_xywh

__all__ = [
    "COCO_FAMILY",
    "PROTOCOL_FORMAT",
    "PROTOCOL_VERSION",
    "DATASET_LIST_ENV",
    "DEFAULT_DATASET_LIST",
    "CocoPersonSearch",
    "ProtocolGallery",
    "ProtocolSpec",
    "PersonSearchProtocol",
    "read_coco_person_search",
    "coco_records",
    "load_person_search_coco_train",
    "load_person_search_coco_test",
    "coco_train_pid_map",
    "read_person_search_protocol",
    "check_protocol",
    "derive_protocol",
    "derived_protocol_path",
    "ensure_derived_protocol",
    "write_protocol",
    "write_json_lines",
    "xyxy_to_xywh",
    "register_person_search_coco",
    "register_coco_dataset_list",
    "register_coco_dataset_lists",
]
