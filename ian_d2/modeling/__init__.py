"""IAN modeling: ROI heads with identity embeddings, identity losses, step-1 crop classifier.

Importing this package registers ``PersonSearchROIHeads`` (ROI_HEADS_REGISTRY) and
``PersonSearchRCNN`` and ``CropClassifier`` (META_ARCH_REGISTRY).

Registries of this package, for plugging in your own parts by name from a config:

- ``REID_LOSS_REGISTRY`` (``MODEL.REID.LOSS_TYPE``): identity losses, "RSS" and "OIM" built in;
- ``CENTER_LOSS_REGISTRY`` (``MODEL.CENTER_LOSS.NAME``): the center loss, "CenterLoss" built in;
- ``REID_HEAD_REGISTRY`` (``MODEL.REID.HEAD_NAME``): the embedding head, "ReIDEmbeddingHead".

The number of training identities the losses are built with is resolved once, in
:mod:`.num_pids` (``resolve_num_pids``, ``with_num_pids``).
"""

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from . import losses
from .crop_classifier import CropClassifier
from .losses import (
    CENTER_LOSS_REGISTRY,
    REID_LOSS_REGISTRY,
    CenterLoss,
    OIMLoss,
    RandomSamplingSoftmaxLoss,
)
from .meta_arch import PersonSearchRCNN
from .num_pids import num_pids_in_checkpoint, resolve_num_pids, with_num_pids
from .query import extract_query_embeddings
from .reid_head import REID_HEAD_REGISTRY, ReIDEmbeddingHead, build_reid_head
from .roi_heads import PersonSearchROIHeads

__all__ = [
    "losses",
    "CENTER_LOSS_REGISTRY",
    "REID_HEAD_REGISTRY",
    "REID_LOSS_REGISTRY",
    "CenterLoss",
    "CropClassifier",
    "OIMLoss",
    "PersonSearchRCNN",
    "PersonSearchROIHeads",
    "RandomSamplingSoftmaxLoss",
    "ReIDEmbeddingHead",
    "build_reid_head",
    "extract_query_embeddings",
    "num_pids_in_checkpoint",
    "resolve_num_pids",
    "with_num_pids",
]
