"""Settings of a person-search evaluation as plain Python (:class:`EvalOptions`), shared by the
evaluator and the rescore CLI: one place for the defaults. No torch, no Detectron2 import (the
config keys that fill it are added by :mod:`.config`).
"""

from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

from .search_metrics import DUPLICATE_MODES

__all__ = ["EvalOptions", "DET_LABELED_MODES"]

DET_LABELED_MODES = ("reference", "all_gt")
"""How "labeled persons only" detection results (key ``detection_labeled``) are computed.

``"reference"`` (default; SeqNet's ``eval_detection(labeled_only=True)``): unlabeled ground-truth
boxes are removed BEFORE matching, so a detection on an unlabeled person is a false positive;
images without a labeled person are skipped with their detections; AP and recall.
``"all_gt"``: detections are matched against every ground-truth box, then recall is counted over
the labeled boxes only (no AP); about 0.1 point above the reference's recall.
"""


@dataclass(frozen=True)
class EvalOptions:
    """Settings of a person-search evaluation (see ``docs/protocols.md``).

    Attributes:
        det_thresh: gallery detections with ``score >= det_thresh`` enter the search ranking.
        det_eval_thresh: detections with ``score >= det_eval_thresh`` enter detection AP/recall.
        gallery_sizes: CUHK-SYSU gallery sizes to report; empty = every TestG{N}.mat present.
        full_pool: CUHK-SYSU: also report the full-pool gallery (gallery size -1).
        subsets: CUHK-SYSU: also report the occlusion / resolution query subsets when present.
        multi_view: PRW: also report the multi-view protocol (other cameras only).
        all_camera: PRW: report the all-camera protocol (the SeqNet/COAT default).
        duplicates: "first" (reference behaviour) or "per_entry" for duplicate gallery entries.
        det_labeled: how ``detection_labeled`` is computed, see :data:`DET_LABELED_MODES`.
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
    det_labeled: str = "reference"
    save_predictions: bool = True
    embed_dim: Optional[int] = None

    def __post_init__(self):
        if self.duplicates not in DUPLICATE_MODES:
            raise ValueError(
                f"duplicates must be one of {DUPLICATE_MODES}, not {self.duplicates!r}"
            )
        if self.det_labeled not in DET_LABELED_MODES:
            raise ValueError(
                f"det_labeled must be one of {DET_LABELED_MODES}, not {self.det_labeled!r}"
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
                det_labeled=str(node.get("DET_LABELED", "reference")),
                save_predictions=bool(node.SAVE_PREDICTIONS),
            )
        opts = replace(opts, **{k: v for k, v in overrides.items() if v is not None})
        return replace(opts, gallery_sizes=tuple(int(s) for s in opts.gallery_sizes))
