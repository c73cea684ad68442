"""Person-search datasets: loaders of the original CUHK-SYSU / PRW files, COCO-format person-search
JSONs (your own data), and their registration."""

from . import builtin as _builtin  # noqa: F401
from .builtin import (  # noqa: F401
    BUILTIN_ROOTS,
    datasets_root,
    get_num_train_pids,
    register_all_person_search,
    register_person_search_dataset,
)
from .coco_person_search import (  # noqa: F401
    COCO_FAMILY,
    load_person_search_coco_test,
    load_person_search_coco_train,
    read_person_search_protocol,
    register_coco_dataset_list,
    register_coco_dataset_lists,
    register_person_search_coco,
)
from .cuhk_sysu import CuhkSysuProtocol, load_cuhk_sysu_protocol  # noqa: F401

register_all_person_search()
# the list files of $IAN_D2_COCO_DATASETS and $DETECTRON2_DATASETS/coco_person_search.json
register_coco_dataset_lists(datasets_root())
