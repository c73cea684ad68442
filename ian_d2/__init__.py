"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

``import ian_d2`` is light: it imports neither torch nor Detectron2, so that the tools that need
neither (``python -m ian_d2.evaluation.rescore``) start in a fraction of a second.

Registration happens in one place, :func:`register_all`: it puts ian_d2's parts into
Detectron2's registries and catalogs. ``add_ian_config`` / ``get_ian_cfg`` (every config-driven
script, ``train_net.py``) call it, and so does the first access to a name of this package
(``ian_d2.add_ian_config``, ``ian_d2.modeling``, ...).

Importing ian_d2 installs no process-wide warning filter.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "adapt",
    "config",
    "data",
    "engine",
    "evaluation",
    "export",
    "modeling",
    "search",
    "utils",
)
_FROM_CONFIG = ("add_ian_config", "get_ian_cfg")

__all__ = ["register_all", "__version__", *_FROM_CONFIG]


def register_all() -> None:
    """
    Register ian_d2's parts in Detectron2 (idempotent; imports torch and Detectron2):

    * the meta-architectures ``PersonSearchRCNN`` and ``CropClassifier`` (META_ARCH_REGISTRY),
      the ROI heads ``PersonSearchROIHeads`` (ROI_HEADS_REGISTRY), and ian_d2's own registries
      of embedding heads, identity losses and center losses with their built-in entries
      (``ian_d2.modeling``: classes register when their module is imported);
    * the built-in person-search datasets under ``$DETECTRON2_DATASETS`` (``cuhk_sysu_*``,
      ``prw_*``, their synthetic twins) and the COCO person-search dataset lists
      (``$IAN_D2_COCO_DATASETS``, ``$DETECTRON2_DATASETS/coco_person_search.json``) in
      ``DatasetCatalog`` / ``MetadataCatalog`` (``ian_d2.data.datasets.builtin``).
    """
    importlib.import_module(".modeling", __name__)
    importlib.import_module(".data.datasets.builtin", __name__)


def __getattr__(name: str):
    if name in _FROM_CONFIG:
        return getattr(importlib.import_module(".config", __name__), name)
    if name in _SUBPACKAGES:
        register_all()
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
