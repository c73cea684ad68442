"""Per-query scores of a model on the target site's cross-camera protocol, from the evaluator's
saved predictions (``person_search_predictions.npz`` of ``train_net.py --eval-only``), the
numbers that the report's paired bootstrap resamples.

The scoring is the evaluator's own, through the ablations' per-query scorer
(:func:`projects.ablations.scoring.protocol_per_query`: means checked against
``python -m ian_d2.evaluation.rescore``'s mAP and top-1).
"""

import json
import subprocess
import sys
from typing import Dict

import numpy as np

from projects.ablations.scoring import protocol_per_query

__all__ = ["per_query", "rescore"]


def rescore(pred: str, coco_json: str, protocol: str, out: str, repo: str) -> Dict:
    """``python -m ian_d2.evaluation.rescore`` of ``pred`` on the COCO test set (its JSON)."""
    cmd = [sys.executable, "-m", "ian_d2.evaluation.rescore", pred, "--dataset", "coco"]
    cmd += ["--dataset-root", coco_json, "--protocol-file", protocol, "--output", out]
    proc = subprocess.run(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"rescore failed for {pred}:\n{proc.stderr.decode()[-2000:]}")
    with open(out) as f:
        return json.load(f)


def per_query(pred: str, coco_json: str, protocol: str, rescored: Dict) -> Dict[str, list]:
    """
    AP and top-1 hit of every query of the main protocol ("search").

    Returns:
        {"query_index": [Q], "ap": [Q] (None: skipped), "top1": [Q]}.

    Raises:
        RuntimeError: the per-query means differ from the rescore CLI's.
    """
    from ian_d2.data.datasets.coco_person_search import load_person_search_coco_test
    from ian_d2.evaluation import build_gallery_table, load_predictions
    from ian_d2.evaluation import query_rows
    from ian_d2.evaluation.coco_protocols import coco_protocols

    preds = load_predictions(pred)
    gallery, queries, root = load_person_search_coco_test(
        coco_json, None, protocol, image_sizes=preds.image_sizes()
    )
    table = build_gallery_table(preds, gallery)
    rows = query_rows(preds, queries)
    proto = coco_protocols(root, table, gallery, queries, rows, keys=["search"])[0]
    ap, top1 = protocol_per_query(
        pred, preds, table, proto, rescored["settings"]["search"], rescored
    )
    qidx = np.asarray(preds.query_indices)[proto.query_rows]
    order = np.argsort(qidx, kind="stable")
    return {
        "query_index": [int(q) for q in qidx[order]],
        "ap": [None if np.isnan(v) else float(v) for v in ap[order]],
        "top1": [float(v) for v in top1[order]],
    }
