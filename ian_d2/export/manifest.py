"""The manifest of an export folder (``ian_d2_export.json``, read by :mod:`.runtime`): the
versions that wrote it, the input and the graphs' settings, the model fingerprint, the model
files and their checksums."""

import datetime
import json
import os
from typing import Dict

import torch

import ian_d2

from ..utils.fingerprint import config_sha256, model_config_yaml, model_fingerprint
from ..utils.hashing import sha256_file
from ..utils.io import atomic_write
from . import runtime as rt
from .precision import bf16_detail
from .quantize import int8_detail
from .writers import ONNX_OPSET

__all__ = ["build_manifest", "model_description", "model_file_entry", "write_manifest"]


def model_description(cfg) -> Dict:
    """The search index's model fingerprint (config and weights hashes) where the weights are a
    local file; else the config hash only (random weights)."""
    if cfg.MODEL.WEIGHTS and os.path.isfile(cfg.MODEL.WEIGHTS):
        return model_fingerprint(cfg)
    yaml = model_config_yaml(cfg)
    return {
        "config_sha256": config_sha256(yaml),
        "weights": cfg.MODEL.WEIGHTS,
        "weights_sha256": None,
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "config_yaml": yaml,
    }


def build_manifest(cfg, model, export_id: str, precision: str) -> Dict:
    """
    The manifest of an export of ``model`` (built from ``cfg``), without model files yet
    (``models`` is filled per format with :func:`model_file_entry`).

    Args:
        cfg: the model's config.
        model: the eval-mode model being exported (its thresholds are read).
        export_id: the id every file of the export carries.
        precision: "fp32" or "bf16" (see :mod:`.precision`).
    """
    import detectron2

    rh = model.roi_heads
    rpn = model.proposal_generator
    manifest = {
        "format": rt.FORMAT,
        "format_version": rt.FORMAT_VERSION,
        "export_id": export_id,
        "ian_d2_version": ian_d2.__version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "exported_with": {
            "torch": torch.__version__,
            "detectron2": detectron2.__version__,
            "onnx_opset": ONNX_OPSET,
        },
        "models": {},
        "input": {
            "format": cfg.INPUT.FORMAT,
            "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
            "resize": "shortest edge to min_size_test, longest <= max_size_test, bilinear "
            "(Pillow, as Detectron2's ResizeShortestEdge on uint8 images)",
            "layout": "[3, h, w] float32, 0-255, channel order of 'format', resized",
            "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
            "normalisation": "inside the graph: (image - pixel_mean) / pixel_std",
        },
        "gallery": {
            "inputs": ["image"],
            "outputs": ["boxes", "scores", "embeddings"],
            "score_thresh": float(rh.box_predictor.test_score_thresh),
            "nms_thresh": float(rh.box_predictor.test_nms_thresh),
            "detections_per_image": int(rh.box_predictor.test_topk_per_image),
            "rpn": {
                "pre_nms_topk": int(rpn.pre_nms_topk[False]),
                "post_nms_topk": int(rpn.post_nms_topk[False]),
                "nms_thresh": float(rpn.nms_thresh),
            },
            "in_graph": "normalisation, backbone, RPN (proposals, NMS, top-k), ROIAlign, res5 "
            "on every proposal, box and embedding heads, score threshold, NMS, top-k",
            "in_runtime": "resize; boxes rescaled to the original image, clipped, empty ones "
            "dropped (detector_postprocess)",
            "boxes": "XYXY in the resized input's pixels (the runtime rescales them)",
        },
        "query": {
            "inputs": ["image", "boxes"],
            "outputs": ["embeddings"],
            "boxes": "XYXY in the resized input's pixels (the runtime scales the given boxes)",
        },
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "model": model_description(cfg),
        "precision": precision,
        # the box each gallery embedding is pooled on (MODEL.ROI_HEADS.EMBED_BOXES)
        "embed_boxes": str(cfg.MODEL.ROI_HEADS.EMBED_BOXES),
    }
    if cfg.MODEL.ROI_HEADS.EMBED_BOXES == "final":
        manifest["gallery"][
            "in_graph"
        ] += "; embeddings pooled again on the kept, regressed boxes (EMBED_BOXES final)"
    detail = {"bf16": bf16_detail, "int8": int8_detail}.get(precision)
    if detail is not None:
        manifest["precision_detail"] = detail()
    return manifest


def model_file_entry(path: str) -> Dict:
    """The manifest's entry of a written model file: name, SHA-256 and size in bytes."""
    return {
        "file": os.path.basename(path),
        "sha256": sha256_file(path),
        "bytes": os.path.getsize(path),
    }


def write_manifest(out_dir: str, manifest: Dict) -> None:
    """Write ``manifest`` to ``out_dir/ian_d2_export.json`` (atomically)."""
    data = json.dumps(manifest, indent=1).encode()
    atomic_write(os.path.join(out_dir, rt.MANIFEST_NAME), lambda f: f.write(data))
