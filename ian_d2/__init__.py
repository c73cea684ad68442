"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

``import ian_d2`` is light: it imports neither torch nor Detectron2, so that the tools that need
neither (``python -m ian_d2.evaluation.rescore``) start in a fraction of a second. ian_d2's
parts enter Detectron2's registries and catalogs when they are first needed:

* ``ian_d2.modeling`` registers the meta-architectures, ROI heads, embedding heads and losses;
* ``ian_d2.data.datasets.builtin`` registers the built-in datasets and the COCO person-search
  dataset lists;
* ``ian_d2.config`` (``add_ian_config``, ``get_ian_cfg``: every config-driven script) imports
  both, and so does :func:`register_all` or the first access to a name of this package
  (``ian_d2.add_ian_config``, ``ian_d2.modeling``, ...).

Importing ian_d2 installs no process-wide warning filter.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("config", "data", "engine", "evaluation", "export", "modeling", "search", "utils")
_FROM_CONFIG = ("add_ian_config", "get_ian_cfg")

__all__ = ["register_all", "__version__", *_FROM_CONFIG]


def register_all() -> None:
    """Register ian_d2's model parts and datasets in Detectron2 (idempotent)."""
    importlib.import_module(".config", __name__)


def __getattr__(name: str):
    if name in _FROM_CONFIG:
        register_all()
        return getattr(importlib.import_module(".config", __name__), name)
    if name in _SUBPACKAGES:
        register_all()
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
