"""Identity losses of the IAN model and their builders.

Label convention shared by every loss in this package (one label per box, int64):

- ``>= 0``: a labeled identity, index in ``[0, num_pids)``;
- ``UNLABELED_PID`` (-1): a person without an identity label;
- ``BACKGROUND_PID`` (-2): a background proposal;
- ``IGNORE_PID`` (-3): a box that no identity loss may use (matcher "ignore" label).
"""

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
    "build_reid_loss",
    "build_center_loss",
]


def build_reid_loss(cfg):
    """
    Build the identity loss named by ``MODEL.REID.LOSS_TYPE``.

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        nn.Module: :class:`RandomSamplingSoftmaxLoss` or :class:`OIMLoss`.
    """
    loss_type = cfg.MODEL.REID.LOSS_TYPE.upper()
    if loss_type == "RSS":
        return RandomSamplingSoftmaxLoss(cfg)
    if loss_type == "OIM":
        return OIMLoss(cfg)
    raise ValueError(f"Unknown MODEL.REID.LOSS_TYPE: {cfg.MODEL.REID.LOSS_TYPE}")


def build_center_loss(cfg):
    """
    Build the center loss, or return None when ``MODEL.CENTER_LOSS.WEIGHT`` is 0.

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        CenterLoss or None
    """
    if cfg.MODEL.CENTER_LOSS.WEIGHT <= 0:
        return None
    return CenterLoss(cfg)
