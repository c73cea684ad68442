"""Identity losses of the IAN model and their builders.

Label convention shared by every loss in this package (one label per box, int64):

- ``>= 0``: a labeled identity, index in ``[0, num_pids)``;
- ``UNLABELED_PID`` (-1): a person without an identity label;
- ``BACKGROUND_PID`` (-2): a background proposal;
- ``IGNORE_PID`` (-3): a box that no identity loss may use (matcher "ignore" label).

Losses are chosen by name from two registries (see :mod:`.build` for the interface a registered
loss implements): :data:`REID_LOSS_REGISTRY` (``MODEL.REID.LOSS_TYPE``: "RSS" =
:class:`RandomSamplingSoftmaxLoss`, "OIM" = :class:`OIMLoss`, or any registered name) and
:data:`CENTER_LOSS_REGISTRY` (``MODEL.CENTER_LOSS.NAME``, default :class:`CenterLoss`).
"""

from .build import (
    CENTER_LOSS_REGISTRY,
    REID_LOSS_ALIASES,
    REID_LOSS_REGISTRY,
    build_center_loss,
    build_reid_loss,
    named_losses,
)
from .constants import BACKGROUND_PID, IGNORE_PID, UNLABELED_PID
from .center import CenterLoss
from .oim import OIMLoss
from .rss import RandomSamplingSoftmaxLoss

__all__ = [
    "BACKGROUND_PID",
    "IGNORE_PID",
    "UNLABELED_PID",
    "CenterLoss",
    "OIMLoss",
    "RandomSamplingSoftmaxLoss",
    "CENTER_LOSS_REGISTRY",
    "REID_LOSS_ALIASES",
    "REID_LOSS_REGISTRY",
    "build_reid_loss",
    "build_center_loss",
    "named_losses",
]
