"""Person-search datasets: loaders of the original CUHK-SYSU / PRW files and their registration."""

from . import builtin as _builtin  # noqa: F401
from .builtin import (  # noqa: F401
    BUILTIN_ROOTS,
    datasets_root,
    get_num_train_pids,
    register_all_person_search,
    register_person_search_dataset,
)
from .cuhk_sysu import CuhkSysuProtocol, load_cuhk_sysu_protocol  # noqa: F401

register_all_person_search()
