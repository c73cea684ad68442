"""CPU inference speed of the eager model and of its exports, side by side in one run; JSON.

What is timed is what a user's image costs: a [H, W, 3] uint8 BGR image in, detections with
embeddings (original image coordinates) out -- resize, normalisation, backbone, RPN, ROIAlign,
res5 on every proposal (``proposals_per_image`` says how many reached the ROI heads), box and
embedding heads, NMS, rescaling. Variants, timed in turn within each round (so that the load of
other processes falls on all of them alike):

* ``eager_fp32``: the Detectron2 model (``ImageToInput`` + ``model([input])``);
* ``eager_bf16_autocast``: the same under ``torch.autocast("cpu", torch.bfloat16)``;
* ``torchscript``: the exported TorchScript gallery model through ``ian_d2.export.runtime``
  (frozen and ``optimize_for_inference`` at load);
* ``torchscript_bf16``: the TorchScript export with ``--precision bf16`` (backbone, RPN head
  and res5 in bfloat16, channels-last: oneDNN's AMX / AVX-512 BF16 kernels; the heads, box
  decoding and NMS in float32);
* ``onnxruntime_cpu``: the exported ONNX model, ONNX Runtime's CPU execution provider;
* ``onnxruntime_openvino``: the same with the OpenVINO execution provider, where the installed
  ONNX Runtime has it (the ``onnxruntime-openvino`` wheel replaces ``onnxruntime``; reported
  as skipped otherwise).

Random weights (the normalisation statistics calibrated on the input first, as in
``bench_model.py``: without it a FrozenBN R-50 sends no proposal to the ROI heads). Each
variant's detections and query embeddings are compared with eager fp32 (``parity``: matched
IoU, score and cosine differences, the top-5 ranking of the image's detections for a query box).
Random weights make a detector's output sensitive to rounding (near-tied scores and boxes), so
a reduced-precision variant that differs here may still agree on trained weights; the fp32
exports must agree.

Usage::

    python -m benchmarks.bench_export                  # R-50 at 900x1500 and R-18 demo size
    python -m benchmarks.bench_export --settings r18_demo --iters 3
    python -m benchmarks.bench_export --output benchmarks/export_cpu.json

from the repository root.
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from typing import Dict

import numpy as np
import torch

from benchmarks.machine import cpu_model, load_avg, other_processes, write_json
from benchmarks.bench_model import ROIBoxCounter, build_benchmark_model, make_cfg
from ian_d2.export import runtime as rt
from ian_d2.export.exporter import export_model
from ian_d2.export.parity import compare_detections, same_ranking, top_k_ranking
from ian_d2.modeling import extract_query_embeddings
from ian_d2.search.indexer import ImageToInput

__all__ = ["SETTINGS", "VARIANTS", "bench_setting", "main", "parse_args"]

logger = logging.getLogger("bench_export")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    "r50_900x1500": {
        "config": "configs/IAN_R50.yaml",
        "size": (900, 1500),
        "iters": 2,
        "warmup": 1,
        "description": "R-50 C4 (FrozenBN) at 900x1500, 300 proposals, the papers' setting",
    },
    "r18_demo": {
        "config": "configs/Synthetic/IAN_R18_GN_step3_center.yaml",
        "size": (300, 400),
        "iters": 5,
        "warmup": 2,
        "description": "R-18-GN at the demo size 300x400 (make demo's model), 100 proposals",
    },
}
VARIANTS = (
    "eager_fp32",
    "eager_bf16_autocast",
    "torchscript",
    "torchscript_bf16",
    "onnxruntime_cpu",
    "onnxruntime_openvino",
)


def _eager_detect(model, to_input, image, amp: bool) -> Dict[str, np.ndarray]:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        inst = model([to_input(image)])[0]["instances"]
    return {
        "boxes": inst.pred_boxes.tensor.float().numpy(),
        "scores": inst.scores.float().numpy(),
        "embeddings": inst.pred_embeds.float().numpy(),
    }


def _eager_embed(model, to_input, image, boxes, amp: bool) -> np.ndarray:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        return extract_query_embeddings(model, [to_input(image)], [boxes]).float().numpy()


def bench_setting(name: str, args) -> Dict:
    spec = dict(SETTINGS[name])
    iters = args.iters or spec["iters"]
    warmup = spec["warmup"] if args.warmup is None else args.warmup
    h, w = spec["size"]
    cfg = make_cfg(os.path.join(REPO, spec["config"]), "cpu", (h, w), 5532)
    g = torch.Generator().manual_seed(args.seed)
    image_t = (torch.rand(3, h, w, generator=g) * 255).round()
    image = np.ascontiguousarray(image_t.numpy().transpose(1, 2, 0).astype(np.uint8))  # BGR
    calib = [{"image": torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))}]
    model, n_calibrated = build_benchmark_model(cfg, calib, args.seed)
    to_input = ImageToInput(cfg)
    result = {
        "setting": name,
        "description": spec["description"],
        "config": spec["config"],
        "input_size": [h, w],
        "post_nms_topk_test": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
        "detections_per_image_max": cfg.TEST.DETECTIONS_PER_IMAGE,
        "norm_layers_calibrated": n_calibrated,
        "iters": iters,
        "warmup": warmup,
        "load_avg_before": load_avg(),
    }
    with tempfile.TemporaryDirectory() as out_dir:
        t0 = time.perf_counter()
        export_model(cfg, out_dir, ["torchscript", "onnx"], model=model, verify=False)
        result["export_seconds_both_formats"] = round(time.perf_counter() - t0, 1)
        bf16_dir = os.path.join(out_dir, "bf16")
        if "torchscript_bf16" in args.variants:
            export_model(  # forced: measured also on CPUs without native bfloat16
                cfg, bf16_dir, ["torchscript"], model=model, verify=False, precision="bf16",
                force_precision=True,
            )  # fmt: skip
        runners, skipped = {}, {}
        runners["eager_fp32"] = lambda: _eager_detect(model, to_input, image, False)
        runners["eager_bf16_autocast"] = lambda: _eager_detect(model, to_input, image, True)
        ts = rt.PersonSearchModel(out_dir, "torchscript")
        runners["torchscript"] = lambda: ts.detect(image)
        ts16 = None
        if "torchscript_bf16" in args.variants:
            ts16 = rt.PersonSearchModel(bf16_dir, "torchscript")
            runners["torchscript_bf16"] = lambda: ts16.detect(image)
        ort_cpu = rt.PersonSearchModel(out_dir, "onnx")
        runners["onnxruntime_cpu"] = lambda: ort_cpu.detect(image)
        import onnxruntime

        if "OpenVINOExecutionProvider" in onnxruntime.get_available_providers():
            ov = rt.PersonSearchModel(out_dir, "onnx", providers=["OpenVINOExecutionProvider"])
            runners["onnxruntime_openvino"] = lambda: ov.detect(image)
        else:
            skipped["onnxruntime_openvino"] = (
                f"not available: the installed onnxruntime {onnxruntime.__version__} has no "
                "OpenVINOExecutionProvider. onnxruntime-openvino 1.24.1 installs from PyPI (into "
                "its own folder: it replaces the onnxruntime package), but OpenVINO's CPU "
                "plugin refuses the exported graph: 'NonMaxSuppression node ... has unsupported "
                "boxes input 3rd dimension size' (dynamic box count), checked 2026-11-29"
            )
        runners = {k: runners[k] for k in VARIANTS if k in runners and k in args.variants}
        times = {k: [] for k in runners}
        outputs = {}
        with ROIBoxCounter(model.roi_heads) as counter:
            for it in range(warmup + iters):
                for k, run in runners.items():
                    t = time.perf_counter()
                    outputs[k] = run()
                    if it >= warmup:
                        times[k].append(time.perf_counter() - t)
                logger.info("%s round %d: %s", name, it, {k: v[-1:] for k, v in times.items()})
            result["proposals_per_image_eager"] = counter.summary(False)["proposals_per_image"]
        ref = outputs["eager_fp32"]
        if len(ref["scores"]):
            q_box = ref["boxes"][:1]
            q_ref = _eager_embed(model, to_input, image, q_box, False)[0]
            rank_ref = top_k_ranking(q_ref, [ref], 5)
        variants = {}
        base = float(np.mean(times["eager_fp32"])) if "eager_fp32" in times else None
        for k in runners:
            sec = float(np.mean(times[k]))
            entry = {
                "sec_per_image": round(sec, 3),
                "times": [round(t, 3) for t in times[k]],
                "speedup_vs_eager_fp32": round(base / sec, 2) if base else None,
                "detections": int(len(outputs[k]["scores"])),
            }
            parity = compare_detections(ref, outputs[k])
            if len(ref["scores"]):
                if k.startswith("eager"):
                    q = _eager_embed(model, to_input, image, q_box, k.endswith("autocast"))[0]
                else:
                    q = {"torchscript": ts, "torchscript_bf16": ts16, "onnxruntime_cpu": ort_cpu}
                    q = q.get(k, None) or ov
                    q = q.embed(image, q_box)[0]
                parity["query_cosine"] = float(q @ q_ref)
                parity["same_top5"] = same_ranking(top_k_ranking(q, [outputs[k]], 5), rank_ref)
            parity["results_unchanged"] = bool(
                parity["n_ref"] == parity["n_out"]
                and parity["n_unmatched"] == 0
                and parity["max_score_diff"] <= 1e-3
                and parity["min_cosine"] >= 0.999
                and parity.get("same_top5", True)
            )
            entry["parity_vs_eager_fp32"] = {
                k2: (round(v, 6) if isinstance(v, float) else v) for k2, v in parity.items()
            }
            variants[k] = entry
        result["variants"] = variants
        result["skipped"] = skipped
    result["load_avg_after"] = load_avg()
    result["other_processes_at_end"] = other_processes()
    same = [k for k, v in variants.items() if v["parity_vs_eager_fp32"]["results_unchanged"]]
    best = min(same, key=lambda k: variants[k]["sec_per_image"]) if same else None
    result["fastest_with_unchanged_results"] = best
    if best:
        result["best_speedup_with_unchanged_results"] = variants[best]["speedup_vs_eager_fp32"]
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_export", description=__doc__.splitlines()[0]
    )
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--iters", type=int, default=None, help="timed rounds (default per setting)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="also write the JSON to this file")
    args = p.parse_args(argv)
    if "eager_fp32" not in args.variants:
        args.variants.insert(0, "eager_fp32")  # the reference of every comparison
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    import onnxruntime

    out = {
        "what": "seconds per user image (resize -> detections with embeddings), CPU, batch 1",
        "device": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(),
        },
        "weights": "random, normalisation statistics calibrated on the input (see bench_model)",
        "load_avg_at_start": load_avg(),
        "other_processes_at_start": other_processes(),
        "results": [],
    }
    for name in args.settings:
        out["results"].append(bench_setting(name, args))
        if args.output:
            write_json(out, args.output)
    out["load_avg_at_end"] = load_avg()
    if args.output:
        write_json(out, args.output)
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
