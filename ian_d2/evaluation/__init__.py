"""Person-search evaluation: search scoring (mAP / top-k), detection AP / recall, the
Detectron2 evaluator, saved predictions and their re-scoring.

Modules, in reading order: :mod:`.structures` (containers), :mod:`.search_metrics` (the scoring
kernel), :mod:`.detection_metrics`, :mod:`.predictions` (the saved-predictions file),
:mod:`.protocols` (protocol and gallery builders), :mod:`.options` and :mod:`.scoring` (the
driver), then :mod:`.evaluator` (Detectron2's ``DatasetEvaluator``) and :mod:`.rescore` (CLI).
Only the evaluator and :mod:`.config` import torch / Detectron2; the names below load their
module on first use, so that ``python -m ian_d2.evaluation.rescore`` starts without torch.
"""

from .._lazy import lazy_names

_EXPORTS = {
    "structures": ("GalleryTable", "SearchGalleries", "SearchResult"),
    "search_metrics": (
        "DUPLICATE_MODES",
        "PreparedGallery",
        "evaluate_search",
        "normalize_embeddings",
        "paired_iou",
        "similarity",
        "small_box_iou_threshold",
    ),
    "detection_metrics": (
        "DetectionResult",
        "average_precision",
        "box_iou",
        "evaluate_detections",
        "mutual_best_matches",
    ),
    "predictions": (
        "PREDICTIONS_FILE",
        "PersonSearchPredictions",
        "load_predictions",
        "save_predictions",
    ),
    "protocols": (
        "SearchProtocol",
        "add_pool_negatives",
        "build_gallery_table",
        "build_prw_galleries",
        "cuhk_sysu_protocols",
        "prw_protocols",
        "query_rows",
    ),
    "options": ("DET_LABELED_MODES", "EvalOptions"),
    "scoring": ("evaluate_person_search",),
    "config": ("add_person_search_eval_config",),
    "evaluator": ("PersonSearchEvaluator",),
}
_MODULE_OF = {name: f".{module}" for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
