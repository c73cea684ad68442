"""Check an export: run the exported files on the tracing image and on an image of another
shape, and compare them with the eager model (:mod:`.parity`)."""

import json
import os
from typing import Dict, List

import numpy as np
import torch

from . import runtime as rt
from .errors import ExportError
from .parity import compare_detections
from .trace import NOT_TRACED, example_inputs, gallery_inference, query_inference, tracer_hint

__all__ = ["TOLERANCE", "check_reports", "int8_parity_ok", "run_exported_file", "verify_export"]

# Parity an export must reach on the check images.
TOLERANCE = {"min_iou": 0.99, "max_score_diff": 1e-3, "min_cosine": 0.999}


def run_exported_file(backend: str, path: str, *args: torch.Tensor) -> List[np.ndarray]:
    """The outputs of the model file ``path`` of ``backend`` ("onnx", "torchscript", run
    without graph optimisation) on ``args``, as numpy arrays."""
    if backend == "onnx":
        net = rt.OnnxBackend(path)
    else:
        net = rt.TorchScriptBackend(path, optimize=False)
    return net(*[a.numpy() for a in args])


def _loose_match(ref: List[np.ndarray], out: List[np.ndarray]) -> Dict:
    """Reference detections matched at IoU >= 0.5 and the median cosine of their embeddings
    (the int8 check: quantization moves boxes by more than the fp32 check's IoU 0.99)."""
    from .parity import match_detections

    j, iou = match_detections(ref[0], out[0])
    ok = iou >= 0.5
    cos = (ref[2][ok] * out[2][j[ok]]).sum(1) if ok.any() else np.ones(1)
    return {"n_matched_iou50": int(ok.sum()), "median_cosine_iou50": float(np.median(cos))}


def verify_export(model, cfg, out_dir: str, manifest: Dict, backend: str) -> List[Dict]:
    """
    Run the exported files of ``backend`` on the tracing image and on an image of another shape
    (and other boxes), and compare with the eager model.

    Returns:
        list[dict]: per check image, :func:`compare_detections` of the gallery outputs, the
        image size, the number of query boxes and the minimum cosine of the query embeddings.
    """
    files = manifest["models"][backend]
    reports = []
    for portrait in (False, True):
        image, boxes = example_inputs(cfg, portrait=portrait, seed=int(portrait))
        with torch.no_grad():
            ref = [t.numpy() for t in gallery_inference(model, image)]
            ref_q = query_inference(model, image, boxes).numpy()
        out = run_exported_file(backend, os.path.join(out_dir, files["gallery"]["file"]), image)
        (out_q,) = run_exported_file(
            backend, os.path.join(out_dir, files["query"]["file"]), image, boxes
        )
        names = ("boxes", "scores", "embeddings")
        stats = compare_detections(dict(zip(names, ref)), dict(zip(names, out)))
        stats.update(_loose_match(ref, out))
        stats["image_size"] = list(image.shape[1:])
        stats["query_boxes"] = int(len(boxes))
        if out_q.shape != ref_q.shape:
            stats["query_min_cosine"] = -1.0
        else:
            stats["query_min_cosine"] = float((out_q * ref_q).sum(1).min()) if len(ref_q) else 1.0
        reports.append(stats)
    return reports


def int8_parity_ok(report: Dict) -> bool:
    """Whether a :func:`verify_export` report of an int8 export is within
    :data:`ian_d2.export.quantize.INT8_TOLERANCE`: enough eager detections matched (IoU >=
    ``match_iou``), their embeddings' median cosine, the query embeddings' minimum cosine."""
    from .quantize import INT8_TOLERANCE as t

    matched = report["n_matched_iou50"] / max(report["n_ref"], 1)
    return (
        matched >= t["min_matched_fraction"]
        and report["median_cosine_iou50"] >= t["median_cosine"]
        and report["query_min_cosine"] >= t["query_min_cosine"]
    )


def check_reports(
    reports: List[Dict], backend: str, tracer_warnings: List[str], precision: str = "fp32"
) -> None:
    """
    Raises:
        ExportError: a report of :func:`verify_export` beyond :data:`TOLERANCE` (int8:
            :func:`int8_parity_ok`), with the tracer's warnings.
    """
    if precision == "int8":
        bad = [r for r in reports if not int8_parity_ok(r)]
        if bad:
            raise ExportError(
                f"the int8 {backend} model is beyond the int8 tolerance on an image of size "
                f"{bad[0]['image_size']} ({json.dumps(bad[0])}): calibrate on images like the "
                "gallery's (--calibration-images), or export fp32"
            )
        return
    t = TOLERANCE
    bad = [
        r
        for r in reports
        if r["n_ref"] != r["n_out"]
        or r["min_iou"] < t["min_iou"]
        or r["max_score_diff"] > t["max_score_diff"]
        or r["min_cosine"] < t["min_cosine"]
        or r["query_min_cosine"] < t["min_cosine"]
    ]
    if not bad:
        return
    raise ExportError(
        f"the exported {backend} model does not reproduce the eager model on an image of "
        f"size {bad[0]['image_size']} ({json.dumps(bad[0])}): {NOT_TRACED}"
        + tracer_hint(tracer_warnings)
    )
