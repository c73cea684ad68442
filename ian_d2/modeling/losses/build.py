"""Registries of the identity losses and the center loss, and their builders.

A loss is plugged in from outside the package the way Detectron2's projects plug in heads
(PointRend's ``POINT_HEAD_REGISTRY``): register a class, then name it in the config.

.. code-block:: python

    from ian_d2.modeling.losses import REID_LOSS_REGISTRY

    @REID_LOSS_REGISTRY.register()
    class MyLoss(nn.Module):
        def __init__(self, cfg): ...
        def forward(self, feats, labels):  # [B, D], [B] -> (loss, stats)
            ...

    # MODEL.REID.LOSS_TYPE "MyLoss"

Interface of every registered loss (identity or center):

- built as ``cls(cfg)`` (a ``@configurable`` class with ``from_config(cls, cfg)``, or a plain
  ``__init__(self, cfg)``);
- ``forward(feats, labels)`` with ``feats`` [B, D] L2-normalised embeddings and ``labels`` [B]
  int64 (see the label convention of :mod:`ian_d2.modeling.losses`), returning
  ``(loss, stats)``: ``loss`` is a scalar Tensor (recorded as ``loss_reid``, or ``loss_center``
  for a center loss) or a dict of scalar Tensors named ``loss_*``; ``stats`` is a dict of
  floats (``accuracy`` and ``center_dist`` are logged when present);
- in training, every process of a distributed run calls it every iteration, even with no box
  (the built-in losses gather boxes across processes), so its loss must stay connected to
  ``feats`` (e.g. ``feats.sum() * 0``) when no box enters it;
- state that must be checkpointed (tables, centers) goes into buffers.

The identity-loss weight ``MODEL.REID.LOSS_WEIGHT`` multiplies every ``loss_*`` of the identity
loss, ``MODEL.CENTER_LOSS.WEIGHT`` every ``loss_*`` of the center loss.
"""

from typing import Dict, Optional, Union

import torch
from torch import nn

from detectron2.utils.registry import Registry

from ...utils.registry import lookup

__all__ = [
    "REID_LOSS_REGISTRY",
    "CENTER_LOSS_REGISTRY",
    "REID_LOSS_ALIASES",
    "build_reid_loss",
    "build_center_loss",
    "configured_num_pids",
    "named_losses",
]


def configured_num_pids(cfg) -> int:
    """
    ``MODEL.REID.NUM_PIDS`` as the built-in losses read it: positive, never resolved here (see
    :mod:`ian_d2.modeling.num_pids` for where it is resolved).

    Raises:
        ValueError: when it is 0 or negative (a loss built outside ``build_model`` /
            ``train_net.py`` from a config that was not resolved).
    """
    num_pids = int(cfg.MODEL.REID.NUM_PIDS)
    if num_pids <= 0:
        raise ValueError(
            f"MODEL.REID.NUM_PIDS is {num_pids}: the identity and center losses need the number "
            "of labeled training identities. Build the model with build_model (its "
            "meta-architecture resolves it), or resolve it first with "
            "ian_d2.modeling.with_num_pids(cfg)."
        )
    return num_pids


REID_LOSS_REGISTRY = Registry("REID_LOSS")
REID_LOSS_REGISTRY.__doc__ = """
Registry of identity losses, selected by ``MODEL.REID.LOSS_TYPE``. Built-in:
``RandomSamplingSoftmaxLoss`` (short name "RSS") and ``OIMLoss`` ("OIM"). A registered object is
called with ``cfg`` and returns an ``nn.Module``; see :mod:`ian_d2.modeling.losses.build` for the
interface.
"""

CENTER_LOSS_REGISTRY = Registry("CENTER_LOSS")
CENTER_LOSS_REGISTRY.__doc__ = """
Registry of center losses (losses on the embeddings of selected labeled boxes, weighted by
``MODEL.CENTER_LOSS.WEIGHT``), selected by ``MODEL.CENTER_LOSS.NAME``. Built-in: ``CenterLoss``.
A registered object is called with ``cfg`` and returns an ``nn.Module`` with the interface of the
identity losses (:mod:`ian_d2.modeling.losses.build`).
"""

# Short config names of the built-in identity losses (the values of MODEL.REID.LOSS_TYPE before
# the registry existed): name -> registered name.
REID_LOSS_ALIASES = {"RSS": "RandomSamplingSoftmaxLoss", "OIM": "OIMLoss"}


def build_reid_loss(cfg) -> nn.Module:
    """
    Build the identity loss named by ``MODEL.REID.LOSS_TYPE`` in :data:`REID_LOSS_REGISTRY`
    ("RSS", "OIM" or a registered name; case-insensitive).

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        nn.Module: ``(feats, labels) -> (loss, stats)``.
    """
    cls = lookup(
        REID_LOSS_REGISTRY,
        cfg.MODEL.REID.LOSS_TYPE,
        "MODEL.REID.LOSS_TYPE",
        "ian_d2.modeling.losses.REID_LOSS_REGISTRY",
        aliases=REID_LOSS_ALIASES,
    )
    return cls(cfg)


def build_center_loss(cfg) -> Optional[nn.Module]:
    """
    Build the center loss named by ``MODEL.CENTER_LOSS.NAME`` in :data:`CENTER_LOSS_REGISTRY`,
    or return None when ``MODEL.CENTER_LOSS.WEIGHT`` is 0 (the registry is then not consulted).

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        nn.Module or None
    """
    if cfg.MODEL.CENTER_LOSS.WEIGHT <= 0:
        return None
    cls = lookup(
        CENTER_LOSS_REGISTRY,
        cfg.MODEL.CENTER_LOSS.NAME,
        "MODEL.CENTER_LOSS.NAME",
        "ian_d2.modeling.losses.CENTER_LOSS_REGISTRY",
    )
    return cls(cfg)


def named_losses(
    loss: Union[torch.Tensor, Dict[str, torch.Tensor]], default_name: str
) -> Dict[str, torch.Tensor]:
    """
    The ``loss`` output of a registered loss as a dict of named losses.

    Args:
        loss (Tensor or dict[str, Tensor]): a scalar, or scalars named ``loss_*``.
        default_name (str): the name of a scalar output (``loss_reid`` or ``loss_center``).

    Returns:
        dict[str, Tensor]
    """
    if isinstance(loss, torch.Tensor):
        return {default_name: loss}
    if not isinstance(loss, dict) or not loss:
        raise TypeError(
            f"A loss must return a scalar Tensor or a non-empty dict of them, got {type(loss)}"
        )
    bad = [k for k in loss if not str(k).startswith("loss_")]
    if bad:
        raise ValueError(f"Loss names must start with 'loss_' (Detectron2 sums those): {bad}")
    return dict(loss)
