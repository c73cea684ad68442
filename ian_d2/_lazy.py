"""Lazy package names (PEP 562), so that importing a package imports none of its modules."""

import importlib
from typing import Callable, Dict, List, Tuple

__all__ = ["lazy_names"]


def lazy_names(
    package: str, module_of: Dict[str, str]
) -> Tuple[Callable[[str], object], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load their module on use.

    Args:
        package: the package's ``__name__``.
        module_of: {public name: relative module (".structures", ".datasets.builtin", ...)}.
    """

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(module, package)
        value = getattr(mod, name)
        setattr(importlib.import_module(package), name, value)  # later lookups skip this
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(module_of))

    return __getattr__, __dir__
