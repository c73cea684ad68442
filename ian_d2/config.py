"""Config keys of the IAN person-search model (a leaf: keys only, no model or dataset code).

Call :func:`add_ian_config` on a config returned by ``detectron2.config.get_cfg()`` before merging a
YAML file from ``configs/``. Detectron2's global defaults are never modified. Both functions call
:func:`ian_d2.register_all`, so that the names a config uses (meta-architectures, heads, losses,
datasets) are in Detectron2's registries before the config is used.
"""

from typing import Sequence

from . import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from . import register_all
from .adapt.config import add_adapt_config
from .evaluation.config import add_person_search_eval_config

__all__ = ["add_ian_config", "get_ian_cfg"]


def add_ian_config(cfg):
    """
    Add the IAN keys (``MODEL.REID``, ``MODEL.CENTER_LOSS``, ``TEST.PERSON_SEARCH``,
    ``ADAPT``) to ``cfg`` in place.

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
    # registered (docs/EXTENDING.md).
    _C.MODEL.REID.LOSS_TYPE = "RSS"
    # Embedding head, a name in ian_d2.modeling.REID_HEAD_REGISTRY (case-insensitive).
    _C.MODEL.REID.HEAD_NAME = "ReIDEmbeddingHead"
    # Number of labeled training identities. 0 = resolved once, before the losses are built
    # (ian_d2.modeling.resolve_num_pids: `num_train_pids` of DATASETS.TRAIN[0] when that training
    # set can be read, else the checkpoint MODEL.WEIGHTS) by train_net.py, which writes it into
    # OUTPUT_DIR/config.yaml, or by build_model (the meta-architecture's from_config).
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

    # Test time: which box a detection's embedding is pooled on. "proposals" (the paper's test
    # code, and the default): the proposal that produced the detection, before box regression.
    # "final": the regressed box kept by NMS (one more ROIAlign + res5 pass on the kept boxes, as
    # SeqNet does), so that a stored detection queried with its own box gets similarity ~1.
    # Training is unchanged; not part of the model fingerprint (a search index and an export
    # record it separately, see docs/EXPORT.md).
    _C.MODEL.ROI_HEADS.EMBED_BOXES = "proposals"

    # Training only: per-channel gains, brightness and contrast drawn in [1 - s, 1 + s] per
    # image (the white balance and exposure that differ between cameras; ian_d2/data/color.py);
    # 0 = none (the default; not part of the model fingerprint).
    _C.INPUT.COLOR_JITTER = 0.0

    # Person-search evaluation settings (TEST.PERSON_SEARCH).
    add_person_search_eval_config(_C)
    # Adaptation to unlabeled footage (ADAPT, python -m ian_d2.adapt).
    add_adapt_config(_C)

    register_all()


def get_ian_cfg(config_file: str, opts: Sequence = ()):
    """
    Detectron2's default config with the IAN keys, merged with ``config_file`` and the
    command-line ``opts`` (KEY VALUE ...); not frozen. ``MODEL.REID.NUM_PIDS`` is left as the
    file sets it (see :mod:`ian_d2.modeling.num_pids`).
    """
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg
