"""Data: person-search datasets (registered on import) and the dataset mapper."""

from . import datasets  # noqa: F401  (registers the built-in datasets)
from .dataset_mapper import PersonSearchDatasetMapper  # noqa: F401
from .datasets import (  # noqa: F401
    get_num_train_pids,
    register_person_search_coco,
    register_person_search_dataset,
)
