"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

Importing this package registers its datasets into Detectron2's catalogs.
"""

import warnings

__version__ = "0.1.0"

# Detectron2 0.7.2 scripts a helper with torch.jit at import, which torch 2.14 deprecates: the
# warning is about Detectron2's code, not the user's, so it is silenced here.
warnings.filterwarnings(
    "ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning
)

from . import data  # noqa: F401,E402  (registers the datasets)
from . import modeling  # noqa: F401,E402  (registers heads and meta-architectures)
from .config import add_ian_config  # noqa: F401,E402
