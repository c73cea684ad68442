"""Utilities: collectives of the identity memories under torch.distributed (:mod:`.comm`),
atomic files (:mod:`.io`, no torch). Names load their module on first use."""

import importlib

_MODULE_OF = {
    "all_gather_rows": "comm",
    "broadcast_from_main": "comm",
    "is_distributed": "comm",
    "atomic_write": "io",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
