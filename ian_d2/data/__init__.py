"""Data: person-search datasets and the dataset mapper.

The names below load their module on first use: the annotation readers import no torch. The
built-in datasets (and the COCO dataset lists) enter Detectron2's catalog when
:mod:`.datasets.builtin` is imported, e.g. by ``ian_d2.config`` or by the names that need the
catalog (``get_num_train_pids``, ``register_person_search_dataset``).
"""

from .._lazy import lazy_names

_MODULE_OF = {
    "PersonSearchDatasetMapper": ".dataset_mapper",
    "get_num_train_pids": ".datasets.builtin",
    "register_person_search_dataset": ".datasets.builtin",
    "register_person_search_coco": ".datasets.coco_person_search",
}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
