"""Person-search evaluation: search scoring (mAP / top-k) and detection AP / recall."""

from .detection_metrics import (
    DetectionResult,
    average_precision,
    box_iou,
    evaluate_detections,
    mutual_best_matches,
)
from .search_metrics import (
    DUPLICATE_MODES,
    GalleryTable,
    SearchGalleries,
    SearchResult,
    add_pool_negatives,
    build_prw_galleries,
    evaluate_search,
    paired_iou,
    quantize_embeddings,
    similarity,
    small_box_iou_threshold,
)

__all__ = [
    "DUPLICATE_MODES",
    "DetectionResult",
    "GalleryTable",
    "SearchGalleries",
    "SearchResult",
    "add_pool_negatives",
    "average_precision",
    "box_iou",
    "build_prw_galleries",
    "evaluate_detections",
    "evaluate_search",
    "mutual_best_matches",
    "paired_iou",
    "quantize_embeddings",
    "similarity",
    "small_box_iou_threshold",
]
