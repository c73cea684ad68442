"""The number of labeled training identities L, resolved once before the losses are built.

The identity losses (RSS classifier, OIM lookup table) and the center loss hold one row per
labeled training identity; they read L from ``MODEL.REID.NUM_PIDS`` and nothing else. When a
config leaves it at 0, L is resolved at the edge, once:

* ``train_net.py`` resolves it before training or evaluating and writes it into the config it
  saves beside the checkpoints (``OUTPUT_DIR/config.yaml``);
* building a model (``build_model``, ``DefaultPredictor``) goes through the meta-architectures'
  ``from_config`` (:class:`~.meta_arch.PersonSearchRCNN`, :class:`~.crop_classifier.CropClassifier`),
  which call :func:`with_num_pids`, so that a repository config with ``NUM_PIDS 0`` and a trained
  checkpoint in ``MODEL.WEIGHTS`` builds the model the checkpoint was trained as.
"""

import logging
import os
from typing import Optional

import torch
from detectron2.data import MetadataCatalog
from detectron2.utils.file_io import PathManager

from ..data.datasets.builtin import get_num_train_pids

__all__ = ["num_pids_in_checkpoint", "resolve_num_pids", "with_num_pids"]

logger = logging.getLogger(__name__)

# Tensors of a checkpoint whose first dimension gives the number of identities L (minus the
# offset: the RSS classifier has one row per identity plus the background class).
_IDENTITY_TENSORS = (
    ("roi_heads.center_loss.centers", 0),
    ("roi_heads.reid_loss.lut", 0),
    ("roi_heads.reid_loss.classifier.weight", 1),
)


def num_pids_in_checkpoint(path: str) -> Optional[int]:
    """
    Number of identities L recorded by an ian_d2 checkpoint: the first dimension of its center
    loss centers, OIM lookup table or RSS classifier (minus the background row).

    Args:
        path (str): a ``.pth`` file written by Detectron2's checkpointer (or "").

    Returns:
        int or None: None for an empty path, a missing file, a file that is not a ``.pth``
        checkpoint (e.g. ImageNet ``.pkl`` weights) or one without identity tensors.
    """
    if not path:
        return None
    try:
        local = PathManager.get_local_path(path)
    except Exception:  # a URL that cannot be fetched: not an identity source
        return None
    if not os.path.isfile(local) or not local.endswith((".pth", ".pt")):
        return None
    try:  # mmap: only the shapes are read, not the whole file
        state = torch.load(local, map_location="cpu", mmap=True, weights_only=False)
    except Exception as e:
        logger.warning(f"Cannot read '{path}' for its number of identities: {e}")
        return None
    model = state.get("model", state) if isinstance(state, dict) else {}
    for key, offset in _IDENTITY_TENSORS:
        t = model.get(key, None) if isinstance(model, dict) else None
        if t is not None and hasattr(t, "shape") and len(t.shape) == 2:
            return int(t.shape[0]) - offset
    return None


def resolve_num_pids(cfg) -> int:
    """
    Number of labeled training identities of a config.

    Sources, in order: ``MODEL.REID.NUM_PIDS`` if positive; the metadata ``num_train_pids`` of
    ``DATASETS.TRAIN[0]`` (read from its annotations by ``ian_d2.data.get_num_train_pids`` the
    first time) when that training set can be read; else the checkpoint ``MODEL.WEIGHTS``
    (its identity tensors), so that a trained model is built without its training set
    (``DefaultPredictor``, ``--eval-only``).

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        int: L.

    Raises:
        ValueError: when no source gives L (the message names each source and why it failed).
    """
    num_pids = int(cfg.MODEL.REID.NUM_PIDS)
    name = cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None
    meta_pids = None
    if name is not None and name in MetadataCatalog.list():
        meta_pids = MetadataCatalog.get(name).get("num_train_pids", None)
    if num_pids > 0:
        if meta_pids is not None and int(meta_pids) != num_pids:
            logger.warning(
                f"MODEL.REID.NUM_PIDS={num_pids} but '{name}' has num_train_pids={meta_pids}"
            )
        return num_pids
    dataset_error = None
    if meta_pids is None and name is not None:
        try:  # the data package reads the count from the annotations once and caches it
            meta_pids = get_num_train_pids(name)
        except Exception as e:
            dataset_error = f"{type(e).__name__}: {e}"
    if meta_pids is not None:
        logger.info(f"MODEL.REID.NUM_PIDS = {meta_pids} (from the metadata of '{name}')")
        return int(meta_pids)
    ckpt_pids = num_pids_in_checkpoint(cfg.MODEL.WEIGHTS)
    if ckpt_pids is not None:
        logger.info(f"MODEL.REID.NUM_PIDS = {ckpt_pids} (from the checkpoint {cfg.MODEL.WEIGHTS})")
        return ckpt_pids
    where = (
        f"the training set '{name}' cannot be read ({dataset_error})"
        if name
        else ("DATASETS.TRAIN is empty")
    )
    raise ValueError(
        f"MODEL.REID.NUM_PIDS is 0, {where}, and MODEL.WEIGHTS={cfg.MODEL.WEIGHTS!r} is not an "
        "ian_d2 checkpoint recording the number of identities. Set MODEL.REID.NUM_PIDS, register "
        "the training set ($DETECTRON2_DATASETS) or point MODEL.WEIGHTS to a "
        "trained .pth checkpoint."
    )


def with_num_pids(cfg):
    """
    ``cfg`` itself when ``MODEL.REID.NUM_PIDS`` is set, else a copy with it resolved by
    :func:`resolve_num_pids` (the caller's config is never modified).

    Args:
        cfg (CfgNode): a config with the IAN keys, frozen or not.
    """
    if int(cfg.MODEL.REID.NUM_PIDS) > 0:
        return cfg
    resolved = cfg.clone()
    resolved.defrost()
    resolved.MODEL.REID.NUM_PIDS = resolve_num_pids(cfg)
    if cfg.is_frozen():
        resolved.freeze()
    return resolved
