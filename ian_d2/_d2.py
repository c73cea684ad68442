"""Detectron2, imported once for ian_d2's torch-side modules.

Detectron2 0.7.2 scripts helpers with torch.jit when its modules are first imported, which torch
2.14 deprecates: the warning is about Detectron2's code, not the user's, so it is silenced for
that first import only (``catch_warnings`` restores the process-wide filters afterwards).
Modules of ian_d2 that import Detectron2 import this module first.
"""

import warnings

import torch  # noqa: F401  (first, outside the block below: its own import-time filters stay)

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning
    )
    import detectron2.engine  # noqa: F401  (and with it .modeling, .data, .layers, .structures)
