"""IAN modeling: ROI heads with identity embeddings, identity losses, step-1 crop classifier.

Importing this package registers ``PersonSearchROIHeads`` (ROI_HEADS_REGISTRY) and
``PersonSearchRCNN`` and ``CropClassifier`` (META_ARCH_REGISTRY).
"""

from . import losses
from .crop_classifier import CropClassifier
from .losses import CenterLoss, OIMLoss, RandomSamplingSoftmaxLoss
from .meta_arch import PersonSearchRCNN
from .query import extract_query_embeddings
from .reid_head import ReIDEmbeddingHead
from .roi_heads import PersonSearchROIHeads

__all__ = [
    "losses",
    "CenterLoss",
    "CropClassifier",
    "OIMLoss",
    "PersonSearchRCNN",
    "PersonSearchROIHeads",
    "RandomSamplingSoftmaxLoss",
    "ReIDEmbeddingHead",
    "extract_query_embeddings",
]
