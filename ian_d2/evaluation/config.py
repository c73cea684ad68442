"""Config keys of the person-search evaluation (``cfg.TEST.PERSON_SEARCH``).

:func:`add_person_search_eval_config` adds the keys; :class:`EvalOptions` is the plain-Python
form that the evaluator and the rescore CLI share (one place for the defaults).
"""

import logging
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

from detectron2.config import CfgNode as CN

from .search_metrics import DUPLICATE_MODES

__all__ = ["add_person_search_eval_config", "EvalOptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOptions:
    """Settings of a person-search evaluation (see ``docs/PROTOCOLS.md``).

    Attributes:
        det_thresh: gallery detections with ``score >= det_thresh`` enter the search ranking.
        det_eval_thresh: detections with ``score >= det_eval_thresh`` enter detection AP/recall.
        gallery_sizes: CUHK-SYSU gallery sizes to report; empty = every TestG{N}.mat present.
        full_pool: CUHK-SYSU: also report the full-pool gallery (gallery size -1).
        subsets: CUHK-SYSU: also report the occlusion / resolution query subsets when present.
        multi_view: PRW: also report the multi-view protocol (other cameras only).
        all_camera: PRW: report the all-camera protocol (the SeqNet/COAT default).
        duplicates: "first" (reference behaviour) or "per_entry" for duplicate gallery entries.
        save_predictions: write the predictions file to the output directory.
        embed_dim: expected embedding dimension (None: whatever the predictions have).
    """

    det_thresh: float = 0.5
    det_eval_thresh: float = 0.01
    gallery_sizes: Tuple[int, ...] = field(default_factory=tuple)
    full_pool: bool = True
    subsets: bool = True
    multi_view: bool = True
    all_camera: bool = True
    duplicates: str = "first"
    save_predictions: bool = True
    embed_dim: Optional[int] = None

    def __post_init__(self):
        if self.duplicates not in DUPLICATE_MODES:
            raise ValueError(
                f"duplicates must be one of {DUPLICATE_MODES}, not {self.duplicates!r}"
            )

    @classmethod
    def from_cfg(cls, cfg=None, **overrides) -> "EvalOptions":
        """Options from ``cfg.TEST.PERSON_SEARCH`` (defaults where absent), then ``overrides``.

        Args:
            cfg: a Detectron2 CfgNode or None. ``cfg.MODEL.REID.EMBED_DIM`` sets ``embed_dim``.
            overrides: field values; None values are ignored.
        """
        opts = cls()
        node = None
        if cfg is not None:
            node = cfg.TEST.get("PERSON_SEARCH", None) if "TEST" in cfg else None
            reid = cfg.MODEL.get("REID", None) if "MODEL" in cfg else None
            if reid is not None and reid.get("EMBED_DIM", None):
                opts = replace(opts, embed_dim=int(reid.EMBED_DIM))
        if node is not None:
            opts = replace(
                opts,
                det_thresh=float(node.DET_THRESH),
                det_eval_thresh=float(node.DET_EVAL_THRESH),
                gallery_sizes=tuple(int(s) for s in node.GALLERY_SIZES),
                full_pool=bool(node.FULL_POOL),
                multi_view=bool(node.MULTI_VIEW),
                duplicates=str(node.DUPLICATES),
                save_predictions=bool(node.SAVE_PREDICTIONS),
            )
        opts = replace(opts, **{k: v for k, v in overrides.items() if v is not None})
        return replace(opts, gallery_sizes=tuple(int(s) for s in opts.gallery_sizes))


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
    # Write OUTPUT_DIR/inference/<dataset>/person_search_predictions.npz (for the rescore CLI).
    _C.TEST.PERSON_SEARCH.SAVE_PREDICTIONS = True
