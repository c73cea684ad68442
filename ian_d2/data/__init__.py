"""Data: person-search datasets and the dataset mapper.

The names below load their module on first use: the annotation readers import no torch. The
built-in datasets (and the COCO dataset lists) enter Detectron2's catalog when
:mod:`.datasets.builtin` is imported, e.g. by ``ian_d2.config`` or by the names that need the
catalog (``get_num_train_pids``, ``register_person_search_dataset``).
"""

import importlib

_MODULE_OF = {
    "PersonSearchDatasetMapper": ".dataset_mapper",
    "get_num_train_pids": ".datasets.builtin",
    "register_person_search_dataset": ".datasets.builtin",
    "register_person_search_coco": ".datasets.coco_person_search",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
