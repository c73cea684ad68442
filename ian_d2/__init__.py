"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

Importing this package registers its datasets into Detectron2's catalogs. It installs no
process-wide warning filter.
"""

import warnings

import torch  # noqa: F401  (first, outside the block below: its own import-time filters stay)

__version__ = "0.1.0"

# Detectron2 0.7.2 scripts helpers with torch.jit when its modules are first imported, which
# torch 2.14 deprecates: the warning is about Detectron2's code, not the user's. It is silenced
# for that first import only; `catch_warnings` restores the process-wide filters afterwards.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning
    )
    import detectron2.modeling  # noqa: F401

from . import data  # noqa: F401,E402  (registers the datasets)
from . import modeling  # noqa: F401,E402  (registers heads and meta-architectures)
from .config import add_ian_config  # noqa: F401,E402
