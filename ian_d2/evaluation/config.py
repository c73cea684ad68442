"""Config keys of the person-search evaluation (``cfg.TEST.PERSON_SEARCH``).

:func:`add_person_search_eval_config` adds the keys; :class:`~.options.EvalOptions` is the
plain-Python form that the evaluator and the rescore CLI share.
"""

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.config import CfgNode as CN

__all__ = ["add_person_search_eval_config"]


def add_person_search_eval_config(cfg) -> None:
    """Add ``cfg.TEST.PERSON_SEARCH`` (evaluation settings) to ``cfg`` in place.

    Args:
        cfg (CfgNode): a config, typically from ``detectron2.config.get_cfg()``.
    """
    _C = cfg
    _C.TEST.PERSON_SEARCH = CN()
    # Search: gallery detections with score >= DET_THRESH are ranked (reference code: 0.5).
    _C.TEST.PERSON_SEARCH.DET_THRESH = 0.5
    # Detection AP / recall: detections with score >= DET_EVAL_THRESH (reference: 0.01). The
    # model outputs none below MODEL.ROI_HEADS.SCORE_THRESH_TEST (0.01 in ian_d2's configs): if
    # that is higher, the evaluation applies it instead, warns, and records the applied value.
    _C.TEST.PERSON_SEARCH.DET_EVAL_THRESH = 0.01
    # CUHK-SYSU gallery sizes to report; [] = every TestG{N}.mat present; -1 = full pool.
    # "search" is gallery 100 (or the smallest size present when there is no TestG100.mat),
    # the others "search_g{N}".
    _C.TEST.PERSON_SEARCH.GALLERY_SIZES = []
    # CUHK-SYSU: also report the full-pool gallery ("search_full": the TestG50 gallery, or the
    # smallest present, plus every other pool image except the query image, as negatives).
    _C.TEST.PERSON_SEARCH.FULL_POOL = True
    # PRW: also report the multi-view protocol ("search_multiview": gallery frames of other
    # cameras only, NAE4PS); "search" is always the all-camera protocol (SeqNet / COAT).
    _C.TEST.PERSON_SEARCH.MULTI_VIEW = True
    # Duplicate gallery entries of a query: "first" (reference) or "per_entry".
    _C.TEST.PERSON_SEARCH.DUPLICATES = "first"
    # "detection_labeled" (detection of the labeled persons): "reference" = SeqNet's
    # labeled_only=True (unlabeled GT removed before matching; AP and recall), or "all_gt"
    # (matched against every GT box, recall counted over the labeled ones).
    _C.TEST.PERSON_SEARCH.DET_LABELED = "reference"
    # Write OUTPUT_DIR/inference/<dataset>/person_search_predictions.npz (for the rescore CLI).
    _C.TEST.PERSON_SEARCH.SAVE_PREDICTIONS = True
