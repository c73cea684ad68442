"""Config keys of the IAN person-search model.

Call :func:`add_ian_config` on a config returned by ``detectron2.config.get_cfg()`` before merging a
YAML file from ``configs/``. Detectron2's global defaults are never modified.
"""

import logging
import os
from typing import Optional, Sequence

from . import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.utils.file_io import PathManager

from .data.datasets.builtin import get_num_train_pids
from .evaluation.config import add_person_search_eval_config

__all__ = ["add_ian_config", "get_ian_cfg", "num_pids_in_checkpoint", "resolve_num_pids"]

logger = logging.getLogger(__name__)


def add_ian_config(cfg):
    """
    Add the IAN keys (``MODEL.REID``, ``MODEL.CENTER_LOSS``, ``TEST.PERSON_SEARCH``) to ``cfg``
    in place.

    Args:
        cfg (CfgNode): a config, typically from ``detectron2.config.get_cfg()``.
    """
    _C = cfg

    # ---------------------------------------------------------------------------------------- #
    # Identity (re-id) embedding branch, a sibling of the box predictor on the pooled res5 output
    # ---------------------------------------------------------------------------------------- #
    _C.MODEL.REID = CN()
    # Dimension of the L2-normalised identity embedding ("feat") of every box.
    _C.MODEL.REID.EMBED_DIM = 256
    # Normalisation between the 2048 -> EMBED_DIM linear layer and the L2 normalisation:
    # "SyncBN" (BatchNorm1d with the statistics of the boxes of ALL processes of a distributed
    # run, so that N GPUs compute what one GPU computes over the same mini-batch; identical to
    # "BN" with one process), "BN" (statistics of each process's own boxes) or "" (none).
    _C.MODEL.REID.EMBED_NORM = "SyncBN"
    # Dropout probability p on the pooled res5 feature right before the 2048 -> EMBED_DIM
    # projection (training only). 0.0 = off, as in IAN (no dropout); an ablation knob for the
    # paper's Tables III/IV. With 0 the head has no dropout module (checkpoints are unchanged).
    _C.MODEL.REID.DROPOUT = 0.0
    # Identity loss, a name in ian_d2.modeling.REID_LOSS_REGISTRY (case-insensitive): "RSS"
    # (random sampling softmax, E2E-PS / IAN), "OIM" (online instance matching), or a loss you
    # registered (README: "Plugging in your own loss").
    _C.MODEL.REID.LOSS_TYPE = "RSS"
    # Embedding head, a name in ian_d2.modeling.REID_HEAD_REGISTRY (case-insensitive).
    _C.MODEL.REID.HEAD_NAME = "ReIDEmbeddingHead"
    # Number of labeled training identities. 0 = `num_train_pids` from the metadata of
    # DATASETS.TRAIN[0] when that training set can be read, else the checkpoint MODEL.WEIGHTS
    # (see `resolve_num_pids`). train_net.py writes the resolved number into OUTPUT_DIR/config.yaml.
    _C.MODEL.REID.NUM_PIDS = 0
    # Weight of `loss_reid` in the total loss.
    _C.MODEL.REID.LOSS_WEIGHT = 1.0
    # When ROI_HEADS.PROPOSAL_APPEND_GT is on, add back the ground-truth boxes that the fg/bg
    # sampler of the ROI heads dropped, so that the identity and center losses see every
    # ground-truth box of every image (the sampled proposals matched to it are kept as well).
    _C.MODEL.REID.KEEP_ALL_GT = True

    # Random sampling softmax: softmax over (NUM_PIDS labeled identities + 1 background class),
    # computed on a random subset of the classes that always holds the batch's targets.
    _C.MODEL.REID.RSS = CN()
    # Number of classes in the sampled subset (at least the number of distinct targets).
    _C.MODEL.REID.RSS.SAMPLE_SIZE = 1000
    # The classifier sees SCALAR * feat (feat is L2-normalised, so logits stay small otherwise).
    _C.MODEL.REID.RSS.SCALAR = 10.0
    # Background proposals are samples of the extra background class (as in E2E-PS).
    # False: background proposals do not enter the identity loss.
    _C.MODEL.REID.RSS.USE_BACKGROUND = True

    # Online instance matching (Xiao et al., CVPR 2017).
    _C.MODEL.REID.OIM = CN()
    # Size of the circular queue of unlabeled-person features (5000 CUHK-SYSU, 500 PRW).
    _C.MODEL.REID.OIM.CQ_SIZE = 5000
    # Momentum of the lookup-table update: v <- MOMENTUM * v + (1 - MOMENTUM) * x, then L2-norm.
    _C.MODEL.REID.OIM.MOMENTUM = 0.5
    # Scale (inverse temperature) of the cosine logits.
    _C.MODEL.REID.OIM.SCALAR = 30.0

    # Step 1 of the IAN training (META_ARCHITECTURE "CropClassifier"): identity classification of
    # ground-truth crops and background crops, to pre-train the ResNet for person search.
    _C.MODEL.REID.PRETRAIN_CROPS = CN()
    # (height, width) of every crop, cut from the input image with ROIAlign.
    _C.MODEL.REID.PRETRAIN_CROPS.CROP_SIZE = (224, 224)
    # Person crops per image: 0 = every labeled person of the image; k > 0 = k of them, drawn
    # at random each time the image is used (the paper's batch of 8 crops = 4 images x (1 person
    # + 1 background) with PERSONS_PER_IMAGE 1 and NUM_BG_PER_IMAGE -1).
    _C.MODEL.REID.PRETRAIN_CROPS.PERSONS_PER_IMAGE = 0
    # Background crops per image: random boxes shaped like the image's persons. -1 = as many as
    # the image's person crops (the paper: as many background crops as person crops).
    _C.MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE = 4
    # A background crop overlaps every ground-truth box of its image by less than this IoU.
    _C.MODEL.REID.PRETRAIN_CROPS.BG_IOU_THRESH = 0.3
    # Unlabeled persons (pid -1) are cropped too (the OIM queue uses them; RSS ignores them).
    _C.MODEL.REID.PRETRAIN_CROPS.INCLUDE_UNLABELED = False

    # ---------------------------------------------------------------------------------------- #
    # Center loss (IAN): L_c = 1/2 sum_i ||x_i - c_{y_i}||^2 over the selected boxes
    # ---------------------------------------------------------------------------------------- #
    _C.MODEL.CENTER_LOSS = CN()
    # Weight lambda of `loss_center` (0 disables the center loss: the E2E-PS baseline).
    _C.MODEL.CENTER_LOSS.WEIGHT = 0.032
    # The center loss, a name in ian_d2.modeling.CENTER_LOSS_REGISTRY (case-insensitive); not
    # looked up when WEIGHT is 0.
    _C.MODEL.CENTER_LOSS.NAME = "CenterLoss"
    # Center learning rate alpha: c_j <- c_j - ALPHA * delta_c_j (centers are buffers, not
    # parameters: the optimizer never touches them).
    _C.MODEL.CENTER_LOSS.ALPHA = 0.5
    # Which boxes feed the center loss: "gt" (the ground-truth boxes of labeled identities, the
    # paper's setting) or "all_pos" (every positive box of a labeled identity: the matched
    # proposals and the ground-truth boxes; paper Table II ablation).
    _C.MODEL.CENTER_LOSS.INPUT = "gt"

    # Person-search evaluation settings (TEST.PERSON_SEARCH).
    add_person_search_eval_config(_C)


def get_ian_cfg(config_file: str, opts: Sequence = ()):
    """
    Detectron2's default config with the IAN keys, merged with ``config_file`` and the
    command-line ``opts`` (KEY VALUE ...); not frozen.
    """
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


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
    (``DefaultPredictor``, ``--eval-only``). ``train_net.py`` writes the resolved value into the
    config it saves beside the checkpoints.

    Args:
        cfg (CfgNode): a config with the IAN keys.

    Returns:
        int: L.
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


# Every config-driven use needs ian_d2's parts in Detectron2's registries and catalogs: importing
# this module registers them (last, as the model modules read the functions above).
from . import modeling  # noqa: F401,E402  (meta-architectures, heads and losses)
from .data.datasets import builtin as _builtin  # noqa: F401,E402  (the built-in datasets)
