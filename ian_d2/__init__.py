"""ian_d2: end-to-end person search (IAN) as a Detectron2 extension.

Importing this package registers its datasets into Detectron2's catalogs.
"""

__version__ = "0.1.0"

from . import data  # noqa: F401,E402  (registers the datasets)
from . import modeling  # noqa: F401,E402  (registers heads and meta-architectures)
from .config import add_ian_config  # noqa: F401,E402
