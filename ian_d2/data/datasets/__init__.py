"""Person-search datasets: readers of the original CUHK-SYSU / PRW files (:mod:`.cuhk_sysu`,
:mod:`.prw`; no torch), COCO-format person-search JSONs, your own data
(:mod:`.coco_person_search`, format: ``docs/COCO_PERSON_SEARCH_FORMAT.md``), the test split of a
built-in root (:mod:`.eval_split`), and their registration in Detectron2's catalog
(:mod:`.builtin`, which registers the built-in names and the COCO dataset lists when imported).
The names below load their module on first use.
"""

from ..._lazy import lazy_names

_EXPORTS = {
    ".builtin": (
        "BUILTIN_ROOTS",
        "datasets_root",
        "get_num_train_pids",
        "register_all_person_search",
        "register_person_search_dataset",
    ),
    ".coco_person_search": (
        "COCO_FAMILY",
        "load_person_search_coco_test",
        "load_person_search_coco_train",
        "read_person_search_protocol",
        "register_coco_dataset_list",
        "register_coco_dataset_lists",
        "register_person_search_coco",
    ),
    ".cuhk_sysu": ("CuhkSysuProtocol", "load_cuhk_sysu_protocol"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
