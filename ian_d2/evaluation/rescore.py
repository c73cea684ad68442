"""Re-score saved person-search predictions without images or a model.

Usage::

    python -m ian_d2.evaluation.rescore \\
        OUTPUT_DIR/inference/cuhk_sysu_test/person_search_predictions.npz \\
        --dataset-root datasets/cuhk_sysu --dataset cuhk_sysu [--gallery-size N] \\
        [--det-thresh 0.5] [--duplicates first|per_entry] [--det-eval-thresh 0.01]
    python -m ian_d2.evaluation.rescore PRED.npz --dataset-root datasets/PRW --dataset prw \\
        [--multi-view | --all-camera]
    python -m ian_d2.evaluation.rescore PRED.npz --dataset coco \\
        --dataset-root my_data/test.json [--protocol-file my_data/test_protocol.json]

The ground truth is rebuilt from the annotation files with the image sizes stored in the
predictions file (the images are not needed), by the same code as the evaluator
(:func:`~.scoring.evaluate_person_search`), so the numbers are the evaluator's.

CUHK-SYSU: without ``--gallery-size`` every protocol is reported as by the evaluator
(``search`` = gallery 100, ``search_g{N}``, ``search_full``, ``search_occlusion``,
``search_resolution``); ``--gallery-size N`` (repeatable; -1 = full pool) reports only those,
under the evaluator's keys. PRW: both protocols by default; ``--multi-view`` only the
multi-view one, ``--all-camera`` only the all-camera one. COCO person-search sets (your own
data): ``--dataset-root`` is the test JSON, ``--protocol-file`` its protocol file (default: the
protocol derived from the JSON, the same file as the evaluator used); every protocol of the file.

Prints one JSON object: ``{"predictions", "dataset", "results": {key: {metric: value}},
"settings": {key: {...}}}``; ``results`` is what the evaluator returns for the same settings.
"""

import argparse
import json
import logging
import sys
from typing import Dict, Optional, Sequence, Tuple

from ..data.datasets.eval_split import load_test_split
from .options import DET_LABELED_MODES, EvalOptions
from .predictions import load_predictions
from .scoring import FAMILIES, evaluate_person_search
from .search_metrics import DUPLICATE_MODES

__all__ = ["rescore", "build_parser", "main"]

logger = logging.getLogger(__name__)


def _load_ground_truth(dataset: str, dataset_root: str, protocol_file, image_sizes):
    """(gallery records, query records, protocol root) rebuilt from the annotation files."""
    if dataset == "coco":
        from ..data.datasets.coco_person_search import load_person_search_coco_test

        return load_person_search_coco_test(
            dataset_root, None, protocol_file, image_sizes=image_sizes
        )
    gallery, queries = load_test_split(dataset, dataset_root, image_sizes)
    return gallery, queries, dataset_root


def rescore(
    predictions: str,
    dataset_root: str,
    dataset: str,
    *,
    protocol_file: Optional[str] = None,
    gallery_sizes: Optional[Sequence[int]] = None,
    multi_view: Optional[bool] = None,
    det_thresh: float = 0.5,
    det_eval_thresh: float = 0.01,
    duplicates: str = "first",
    det_labeled: str = "reference",
) -> Tuple[Dict[str, Dict[str, float]], Dict[str, Dict[str, object]]]:
    """Score a predictions file.

    Args:
        predictions: path of a ``person_search_predictions.npz``.
        dataset_root: the dataset folder (annotation files only are read); for "coco", the
            test JSON.
        dataset: "cuhk_sysu", "prw" or "coco"; must match the file's dataset family.
        protocol_file: "coco" only: the protocol JSON (None: the derived one).
        gallery_sizes: CUHK-SYSU gallery sizes (-1 = full pool); None or empty = all.
        multi_view: PRW: None = both protocols, True = multi-view only, False = all-camera only.
        det_thresh: search detection threshold.
        det_eval_thresh: detection-evaluation score threshold.
        duplicates: "first" or "per_entry".
        det_labeled: "reference" or "all_gt" (see :data:`~.options.DET_LABELED_MODES`).

    Returns:
        (results, settings) as :func:`~.scoring.evaluate_person_search`.
    """
    if dataset not in FAMILIES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {FAMILIES}")
    preds = load_predictions(predictions)
    if preds.dataset_family != dataset:
        raise ValueError(
            f"'{predictions}' holds predictions of a {preds.dataset_family} dataset "
            f"('{preds.dataset_name}'), not of {dataset}"
        )
    if gallery_sizes and dataset != "cuhk_sysu":
        raise ValueError("--gallery-size applies to CUHK-SYSU only")
    if multi_view is not None and dataset != "prw":
        raise ValueError("--multi-view / --all-camera apply to PRW only")
    if protocol_file is not None and dataset != "coco":
        raise ValueError("--protocol-file applies to COCO person-search sets only")
    gallery, queries, root = _load_ground_truth(
        dataset, dataset_root, protocol_file, preds.image_sizes()
    )
    options = EvalOptions(
        det_thresh=det_thresh,
        det_eval_thresh=det_eval_thresh,
        gallery_sizes=tuple(int(s) for s in gallery_sizes or ()),
        full_pool=not gallery_sizes,
        subsets=not gallery_sizes,
        multi_view=multi_view is None or multi_view,
        all_camera=multi_view is None or not multi_view,
        duplicates=duplicates,
        det_labeled=det_labeled,
        save_predictions=False,
    )
    return evaluate_person_search(preds, gallery, queries, dataset, root, options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ian_d2.evaluation.rescore",
        description="Re-score saved person-search predictions (no images, no model).",
    )
    p.add_argument("predictions", help="person_search_predictions.npz written by the evaluator")
    p.add_argument(
        "--dataset-root", required=True, help="dataset folder (annotations); coco: the test JSON"
    )
    p.add_argument("--dataset", required=True, choices=FAMILIES, help="dataset family")
    p.add_argument("--protocol-file", help="coco: the protocol JSON (default: the derived one)")
    p.add_argument(
        "--gallery-size",
        type=int,
        action="append",
        help="CUHK-SYSU gallery size (repeatable; -1 = full pool; default: every protocol)",
    )
    mv = p.add_mutually_exclusive_group()
    mv.add_argument(
        "--multi-view",
        dest="multi_view",
        action="store_true",
        default=None,
        help="PRW: only the multi-view protocol (default: both)",
    )
    mv.add_argument(
        "--all-camera",
        dest="multi_view",
        action="store_false",
        help="PRW: only the all-camera protocol (default: both)",
    )
    p.add_argument("--det-thresh", type=float, default=0.5, help="search score threshold")
    p.add_argument(
        "--det-eval-thresh", type=float, default=0.01, help="detection-evaluation threshold"
    )
    p.add_argument("--duplicates", choices=DUPLICATE_MODES, default="first")
    p.add_argument(
        "--det-labeled",
        choices=DET_LABELED_MODES,
        default="reference",
        help="'detection_labeled': 'reference' = SeqNet's labeled_only (unlabeled GT removed "
        "before matching), 'all_gt' = matched against all GT, recall over the labeled",
    )
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="log the protocols to stderr")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; prints the JSON report. Returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        results, settings = rescore(
            args.predictions,
            args.dataset_root,
            args.dataset,
            protocol_file=args.protocol_file,
            gallery_sizes=args.gallery_size,
            multi_view=args.multi_view,
            det_thresh=args.det_thresh,
            det_eval_thresh=args.det_eval_thresh,
            duplicates=args.duplicates,
            det_labeled=args.det_labeled,
        )
    except (ValueError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"rescore: error: {msg}", file=sys.stderr)
        return 1
    report = {
        "predictions": args.predictions,
        "dataset": args.dataset,
        "results": results,
        "settings": settings,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
