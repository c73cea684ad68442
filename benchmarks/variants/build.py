"""The inference variants of ``bench_variants``: their names (each kind with the proposals' and
with the final boxes' embeddings), each built as a callable model (the eager model itself, or an
export behind :class:`RuntimeAsModel`), the synthetic ``ablation`` data set they run on and the
training images that calibrate int8.
"""

import logging
import os
import time
from typing import Dict, List, Sequence

import numpy as np
import torch

__all__ = [
    "EMBED_MODES",
    "KINDS",
    "REFERENCE",
    "RuntimeAsModel",
    "build_variant",
    "calibration_list",
    "own_reference",
    "prepare_dataset",
    "variant_cfg",
    "variants",
]

logger = logging.getLogger("bench_variants")

KINDS = ("eager_fp32", "onnx_fp32", "torchscript_bf16", "onnx_int8")
EMBED_MODES = ("proposals", "final")
REFERENCE = "eager_fp32"
DATASET_PREFIX = "bench_variants_synth"


def variants(kinds: Sequence[str] = KINDS) -> List[tuple]:
    """(name, kind, embed_boxes) of every variant: each kind with proposals, then with final."""
    return [(k if e == "proposals" else f"{k}+final", k, e) for e in EMBED_MODES for k in kinds]


def own_reference(name: str) -> str:
    """The eager fp32 variant with the same EMBED_BOXES as ``name``."""
    return REFERENCE + "+final" if name.endswith("+final") else REFERENCE


class RuntimeAsModel:
    """An exported model (:class:`ian_d2.export.runtime.PersonSearchModel`) behind the eager
    model's call: mapped test inputs in (``image`` [3, h, w] resized, ``height``, ``width``;
    query inputs with their box as ``instances.gt_boxes`` in the resized image), outputs
    ``{"instances"}`` in original image coordinates, as ``PersonSearchRCNN`` returns them."""

    def __init__(self, runtime):
        self.runtime = runtime

    def __call__(self, batched_inputs: List[Dict]) -> List[Dict]:
        from detectron2.structures import Boxes, Instances

        from ian_d2.modeling.meta_arch import is_query_input

        outs = []
        for inp in batched_inputs:
            x = inp["image"].numpy().astype(np.float32)
            h, w = int(inp["height"]), int(inp["width"])
            newh, neww = x.shape[1:]
            pre = {"image": x, "height": h, "width": w}
            inst = Instances((h, w))
            if is_query_input(inp):
                scale = np.array([w / neww, h / newh, w / neww, h / newh], np.float32)
                box = inp["instances"].gt_boxes.tensor.numpy().reshape(-1, 4) * scale
                emb = self.runtime.embed_preprocessed(pre, box)
                inst.pred_boxes = Boxes(torch.from_numpy(box))
                inst.scores = torch.ones(len(box))
                inst.pred_embeds = torch.from_numpy(emb)
            else:
                det = self.runtime.detect_preprocessed(pre)
                inst.pred_boxes = Boxes(torch.from_numpy(det["boxes"]))
                inst.scores = torch.from_numpy(det["scores"])
                inst.pred_embeds = torch.from_numpy(det["embeddings"])
            inst.pred_classes = torch.zeros(len(inst), dtype=torch.int64)
            outs.append({"instances": inst})
        return outs


def variant_cfg(cfg, embed_boxes: str):
    """A copy of ``cfg`` with ``MODEL.ROI_HEADS.EMBED_BOXES`` = ``embed_boxes``."""
    c = cfg.clone()
    c.defrost()
    c.MODEL.ROI_HEADS.EMBED_BOXES = embed_boxes
    return c


def build_variant(kind: str, embed_boxes: str, cfg, model, out_dir: str, calibration=None):
    """
    A variant as a callable model (mapped inputs -> outputs) and its runtime (None: eager).

    Args:
        kind: one of :data:`KINDS`.
        embed_boxes: "proposals" or "final".
        cfg: the model's config.
        model: the eager model of ``cfg`` (eval mode); its ``roi_heads.embed_boxes`` is set.
        out_dir: where the export goes (exports only).
        calibration: (images source, count) for int8.
    """
    from ian_d2.export import runtime as rt
    from ian_d2.export.exporter import export_model

    vcfg = variant_cfg(cfg, embed_boxes)
    model.roi_heads.embed_boxes = embed_boxes
    if kind == REFERENCE:
        return model, None
    fmt = "torchscript" if kind.startswith("torchscript") else "onnx"
    precision = kind.split("_")[1]
    extra = {}
    if precision == "int8":
        extra = {"calibration_images": calibration[0], "calibration_count": calibration[1]}
    t0 = time.perf_counter()
    # bf16 is measured on every CPU, also where it has no native kernels (the point of the
    # figure): forced, with the export's warning
    extra["force_precision"] = precision == "bf16"
    export_model(vcfg, out_dir, [fmt], model=model, verify=False, precision=precision, **extra)
    logger.info("exported %s (%s) in %.0f s", kind, embed_boxes, time.perf_counter() - t0)
    runtime = rt.PersonSearchModel(out_dir, fmt)
    return RuntimeAsModel(runtime), runtime


def prepare_dataset(data_root: str) -> Dict:
    """The ablation preset under ``data_root`` (generated once), registered for this run."""
    from projects.ablations.run import DATASET_DIR, prepare_data

    from ian_d2.data.datasets.builtin import register_person_search_dataset
    from detectron2.data import DatasetCatalog

    summary = prepare_data(data_root, "ablation")
    root = os.path.join(data_root, DATASET_DIR)
    names = register_person_search_dataset("cuhk_sysu", DATASET_PREFIX, root)
    test = {d["file_name"] for d in DatasetCatalog.get(names["test"])}
    train = sorted({d["file_name"] for d in DatasetCatalog.get(names["train"])} - test)
    return {"root": root, "names": names, "summary": summary, "train_images": train}


def calibration_list(work_dir: str, dataset: Dict) -> str:
    """``WORK/calibration_images.txt``: the data set's training images as absolute paths, one a
    line (int8 calibration reads every k-th; absolute, so that the list holds wherever
    ``--work-dir`` and the working directory are); returns its path."""
    path = os.path.join(work_dir, "calibration_images.txt")
    os.makedirs(work_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(os.path.abspath(p) for p in dataset["train_images"]) + "\n")
    return path
