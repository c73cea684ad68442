"""Person-search evaluation: search scoring (mAP / top-k), detection AP / recall, the
Detectron2 evaluator, saved predictions and their re-scoring."""

from .config import EvalOptions, add_person_search_eval_config
from .detection_metrics import (
    DetectionResult,
    average_precision,
    box_iou,
    evaluate_detections,
    mutual_best_matches,
)
from .evaluator import PersonSearchEvaluator, evaluate_person_search
from .predictions import (
    PREDICTIONS_FILE,
    PersonSearchPredictions,
    load_predictions,
    save_predictions,
)
from .protocols import SearchProtocol, cuhk_sysu_protocols, prw_protocols
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
    "EvalOptions",
    "GalleryTable",
    "PREDICTIONS_FILE",
    "PersonSearchEvaluator",
    "PersonSearchPredictions",
    "SearchGalleries",
    "SearchProtocol",
    "SearchResult",
    "add_person_search_eval_config",
    "add_pool_negatives",
    "average_precision",
    "box_iou",
    "build_prw_galleries",
    "cuhk_sysu_protocols",
    "evaluate_detections",
    "evaluate_person_search",
    "evaluate_search",
    "load_predictions",
    "mutual_best_matches",
    "paired_iou",
    "prw_protocols",
    "quantize_embeddings",
    "save_predictions",
    "similarity",
    "small_box_iou_threshold",
]
