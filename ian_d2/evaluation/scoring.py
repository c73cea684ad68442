"""Scoring of person-search predictions against a dataset's ground truth, for every protocol:
the driver shared by the evaluator (:mod:`.evaluator`) and the rescore CLI (:mod:`.rescore`), so
that both give the same numbers. No torch, no Detectron2.

Reading order: the protocols and the detection ground truth are built first
(:mod:`.protocols`), then every protocol is scored (:mod:`.search_metrics`), then detection
(:mod:`.detection_metrics`).
"""

import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from .detection_metrics import evaluate_detections
from .options import EvalOptions
from .predictions import PersonSearchPredictions
from .protocols import (
    SearchProtocol,
    build_gallery_table,
    cuhk_sysu_protocols,
    detection_ground_truth,
    prw_protocols,
    query_rows,
)
from .search_metrics import PreparedGallery, evaluate_search

__all__ = ["FAMILIES", "evaluate_person_search", "applied_score_thresh"]

logger = logging.getLogger(__name__)

FAMILIES = ("cuhk_sysu", "prw", "coco")
"""Dataset families with search protocols: the format of their annotation files ("coco": a
COCO person-search JSON with its protocol JSON, see :mod:`ian_d2.data.datasets.coco_person_search`).
"""


def applied_score_thresh(requested: float, score_floor: Optional[float], name: str) -> float:
    """
    The score threshold an evaluation really applies: ``requested``, unless the model output no
    detection below ``score_floor`` (its ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``), which is then
    the threshold (with a warning that says what to set). Results record the applied value.
    """
    if score_floor is None or score_floor <= requested:
        return float(requested)
    logger.warning(
        f"TEST.PERSON_SEARCH.{name}={requested} is below the model's own score threshold "
        f"MODEL.ROI_HEADS.SCORE_THRESH_TEST={score_floor}: no detection with a lower score exists, "
        f"so the evaluation applies score >= {score_floor}. Set MODEL.ROI_HEADS.SCORE_THRESH_TEST "
        f"<= {requested} to evaluate at {requested}."
    )
    return float(score_floor)


def _log_result(key: str, metrics: Dict[str, float], info: Dict[str, object]) -> None:
    """Log one result with the protocol and thresholds that produced it."""
    if not logger.isEnabledFor(logging.INFO):
        return
    shown = {k: v for k, v in info.items() if k not in ("protocol", "protocol_file", "subset_file")}
    table = "  ".join(f"{k}: {v:.2f}" for k, v in metrics.items())
    logger.info(
        "Person search [%s] %s; %s:\n  %s",
        key,
        info["protocol"],
        ", ".join(f"{k}={v}" for k, v in shown.items()),
        table,
    )


def _search_protocols(
    preds: PersonSearchPredictions,
    table,
    gallery_records: Sequence[dict],
    query_records: Sequence[dict],
    family: str,
    root: Optional[str],
    options: EvalOptions,
) -> List[SearchProtocol]:
    """The search protocols of the dataset family, on the detections table."""
    if not query_records:
        logger.warning("No query in the dataset: only detection is evaluated")
        return []
    rows = query_rows(preds, query_records)
    if family == "coco":
        from .coco_protocols import coco_protocols

        if root is None:
            raise ValueError("COCO person-search evaluation needs its protocol file")
        return coco_protocols(root, table, gallery_records, query_records, rows)
    if family == "cuhk_sysu":
        if root is None:
            raise ValueError("CUHK-SYSU evaluation needs the dataset root (protocol files)")
        return cuhk_sysu_protocols(
            root,
            table,
            query_records,
            rows,
            gallery_sizes=options.gallery_sizes,
            full_pool=options.full_pool,
            subsets=options.subsets,
        )
    return prw_protocols(
        table,
        gallery_records,
        query_records,
        rows,
        all_camera=options.all_camera,
        multi_view=options.multi_view,
    )


def evaluate_person_search(
    preds: PersonSearchPredictions,
    gallery_records: Sequence[dict],
    query_records: Sequence[dict],
    family: str,
    root: Optional[str],
    options: EvalOptions,
) -> Tuple["OrderedDict[str, Dict[str, float]]", Dict[str, Dict[str, object]]]:
    """Score predictions against the ground truth of a dataset, for every protocol.

    Args:
        preds: gallery detections and query embeddings (validated here).
        gallery_records: gallery records (GT boxes, person ids, PRW camera ids).
        query_records: query records (``query_index``, the query box and person id).
        family: one of :data:`FAMILIES`.
        root: CUHK-SYSU: the dataset root (protocol and subset files); "coco": the protocol
            file; unused for PRW.
        options: thresholds and protocol selection.

    Returns:
        (results, settings): results is an OrderedDict {key: {metric: float on 0-100}} with
        "search" (default protocol), the other protocols' keys, "detection" (every annotated
        person) and "detection_labeled" (labeled persons, computed as ``options.det_labeled``
        says); settings has, for every key, the protocol and thresholds that produced it.

    Raises:
        ValueError: missing or malformed predictions (naming the image or query), or options.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown dataset family {family!r}; expected one of {FAMILIES}")
    preds.validate(options.embed_dim)
    table = build_gallery_table(preds, gallery_records)
    protocols = _search_protocols(
        preds, table, gallery_records, query_records, family, root, options
    )
    gt_boxes, gt_labeled = detection_ground_truth(gallery_records)

    results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
    settings: Dict[str, Dict[str, object]] = {}
    det_thresh = applied_score_thresh(options.det_thresh, preds.score_floor, "DET_THRESH")
    prepared = PreparedGallery(table, det_thresh) if protocols else None  # shared by protocols
    for proto in protocols:
        res = evaluate_search(
            preds.query_embeddings[proto.query_rows],
            table,
            proto.galleries,
            det_thresh=det_thresh,
            duplicates=options.duplicates,
            on_empty="skip",
            prepared=prepared,
        )
        results[proto.key] = res.metrics()
        info: Dict[str, object] = {"protocol": proto.description}
        info.update(proto.settings)
        info.update(res.settings())
        if preds.embed_boxes is not None:
            info["embed_boxes"] = preds.embed_boxes
        settings[proto.key] = info
        _log_result(proto.key, results[proto.key], info)

    det_eval_thresh = applied_score_thresh(
        options.det_eval_thresh, preds.score_floor, "DET_EVAL_THRESH"
    )
    det_boxes, det_scores = [], []
    for i in range(table.num_images):
        a, b = table.offsets[i], table.offsets[i + 1]
        det_boxes.append(table.boxes[a:b])
        det_scores.append(table.scores[a:b])
    n_images = len(gallery_records)
    reference = options.det_labeled == "reference"
    variants = (
        (
            "detection",
            False,
            f"detection of every annotated person on the {n_images} gallery images",
        ),
        (
            "detection_labeled",
            reference,
            "detection of the labeled persons: "
            + (
                "unlabeled GT removed before matching, images without a labeled person skipped "
                "(SeqNet's labeled_only=True)"
                if reference
                else "matched against every GT, recall counted over the labeled ones (all_gt)"
            ),
        ),
    )
    for key, labeled_only, description in variants:
        det = evaluate_detections(
            det_boxes,
            det_scores,
            gt_boxes,
            gt_labeled=gt_labeled,
            labeled_only=labeled_only,
            score_thresh=det_eval_thresh,
        )
        if key == "detection":
            metrics = {"AP": 100.0 * det.ap, "recall": 100.0 * det.recall}
        elif reference:
            metrics = {"AP": 100.0 * det.ap, "recall": 100.0 * det.recall}
        else:
            metrics = {"recall": 100.0 * det.labeled_recall}
        results[key] = metrics
        info = {"protocol": description}
        if key == "detection_labeled":
            info["det_labeled"] = options.det_labeled
        info.update(det.settings())
        if preds.score_floor is not None:
            info["model_score_thresh"] = preds.score_floor
        settings[key] = info
        _log_result(key, metrics, info)
    return results, settings
