"""Scoring a run's saved predictions (``person_search_predictions.npz`` of ``train_net.py``): the
rescore CLI (``python -m ian_d2.evaluation.rescore``) at every gallery size and the full pool
(Fig. 5), and the per-query AP and top-1 hits that the report's bootstrap resamples.
"""

import subprocess
import sys
from typing import Dict, Sequence

import numpy as np

from projects.ablations.plan import REPO
from projects.ablations.records import read_json

__all__ = ["per_query_metrics", "protocol_per_query", "rescore"]


def rescore(pred: str, root: str, sizes: Sequence[int], out: str) -> dict:
    """``python -m ian_d2.evaluation.rescore`` at every gallery size and the full pool."""
    cmd = [sys.executable, "-m", "ian_d2.evaluation.rescore", pred, "--dataset-root", root]
    cmd += ["--dataset", "cuhk_sysu"]
    for s in list(sizes) + [-1]:
        cmd += ["--gallery-size", str(s)]
    cmd += ["--output", out]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"rescore failed for {pred}:\n{proc.stderr.decode()[-2000:]}")
    return read_json(out)


def protocol_per_query(pred: str, preds, table, proto, info: dict, rescored: dict):
    """Per-query AP ([Q], NaN = skipped) and top-1 hit ([Q]) of one protocol of saved
    predictions, scored as the evaluator does with the thresholds of the rescore CLI's
    ``info``; their means checked against the CLI's numbers (``rescored``).

    Raises:
        RuntimeError: the per-query means differ from the rescore CLI's numbers.
    """
    from ian_d2.evaluation import evaluate_search

    res = evaluate_search(
        preds.query_embeddings[proto.query_rows],
        table,
        proto.galleries,
        det_thresh=float(info["det_thresh"]),
        duplicates=str(info.get("duplicates", "first")),
        on_empty="skip",
    )
    ap = np.where(res.skipped, np.nan, res.ap)
    top1 = res.hits[:, list(res.topk).index(1)].astype(np.float64)
    want = rescored["results"][proto.key]
    got = {"mAP": 100.0 * np.nanmean(ap), "top-1": 100.0 * top1[~res.skipped].mean()}
    for m in ("mAP", "top-1"):
        if abs(got[m] - want[m]) > 1e-6:
            raise RuntimeError(f"{pred} {proto.key}: per-query {m} {got[m]} != rescore's {want[m]}")
    return ap, top1


def per_query_metrics(pred: str, root: str, rescored: dict) -> Dict[str, dict]:
    """Per-query AP and top-1 hit of saved predictions at every gallery size of ``rescored``.

    The scoring is the evaluator's (``ian_d2.evaluation`` package names); the mean of each
    protocol's per-query values is checked against the rescore CLI's mAP and top-1.

    Args:
        pred: a ``person_search_predictions.npz``.
        root: the CUHK-SYSU-format data set.
        rescored: the rescore CLI's JSON report for ``pred`` (gallery sizes and thresholds).

    Returns:
        {"g50" ... "full": {"gallery_size", "query_index" [Q], "ap" [Q] (None = skipped),
        "top1" [Q]}}.

    Raises:
        RuntimeError: the per-query means differ from the rescore CLI's numbers.
    """
    from ian_d2.data.datasets.eval_split import load_test_split
    from ian_d2.evaluation import (
        build_gallery_table,
        cuhk_sysu_protocols,
        load_predictions,
        query_rows,
    )

    preds = load_predictions(pred)
    gallery, queries = load_test_split("cuhk_sysu", root, preds.image_sizes())
    # the detections table in gallery-record order and the query rows, as the evaluator
    table = build_gallery_table(preds, gallery)
    qrows = query_rows(preds, queries)
    settings = {k: v for k, v in rescored["settings"].items() if "gallery_size" in v}
    sizes = sorted({int(v["gallery_size"]) for v in settings.values()})
    protocols = cuhk_sysu_protocols(
        root,
        table,
        queries,
        qrows,
        gallery_sizes=sizes,
        full_pool=-1 in sizes,
        subsets=False,
    )
    out = {}
    for proto in protocols:
        info = settings[proto.key]
        ap, top1 = protocol_per_query(pred, preds, table, proto, info, rescored)
        size = int(info["gallery_size"])
        out["full" if size < 0 else f"g{size}"] = {
            "gallery_size": size,
            "query_index": [int(q) for q in np.asarray(preds.query_indices)[proto.query_rows]],
            "ap": [None if np.isnan(v) else float(v) for v in ap],
            "top1": [float(v) for v in top1],
        }
    return out
