"""The speed part of ``bench_variants``: seconds per image (image in memory -> detections with
embeddings, batch 1) of every variant, timed in turn in every round, with the trained model at
its own test size and with R-50 C4 at 900x1500 with random (calibrated) weights; and where ONNX
Runtime spends its time (:func:`ort_profile`).
"""

import json
import logging
import os
import time
from typing import Callable, Dict, List

import numpy as np
import torch

from benchmarks.machine import cpu_record, load_avg, other_processes
from benchmarks.variants.build import (
    REFERENCE,
    build_variant,
    calibration_list,
    prepare_dataset,
    variant_cfg,
    variants,
)

__all__ = ["R50_CONFIG", "R50_SIZE", "ort_profile", "run_speed"]

logger = logging.getLogger("bench_variants")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

R50_CONFIG = "configs/IAN_R50.yaml"
R50_SIZE = (900, 1500)


def _eager_runner(model, to_input):
    def run(image):
        with torch.no_grad():
            return model([to_input(image)])[0]["instances"]

    return run


def _time_variants(runners: Dict[str, Callable], images: List, warmup: int, iters: int) -> Dict:
    """Seconds per image of every runner, in turn on each image of each round."""
    times = {k: [] for k in runners}
    for it in range(warmup + iters):
        for k, run in runners.items():
            t = time.perf_counter()
            for image in images:
                run(image)
            if it >= warmup:
                times[k].append((time.perf_counter() - t) / len(images))
        logger.info(
            "round %d: %s", it, {k: [round(x, 3) for x in v[-1:]] for k, v in times.items()}
        )
    base = float(np.mean(times[REFERENCE]))
    return {
        k: {
            "sec_per_image": round(float(np.mean(v)), 4),
            "rounds": [round(x, 4) for x in v],
            "speedup_vs_eager_fp32": round(base / float(np.mean(v)), 2),
        }
        for k, v in times.items()
    }


def _runners(cfg, model, kinds, work_dir: str, calibration) -> Dict[str, Callable]:
    from ian_d2.search.indexer import ImageToInput

    runners = {}
    for name, kind, embed in variants(kinds):
        model_fn, runtime = build_variant(
            kind, embed, cfg, model, os.path.join(work_dir, name), calibration
        )
        if runtime is None:  # eager: a copy with its own embed_boxes
            import copy

            m = copy.deepcopy(model)
            m.roi_heads.embed_boxes = embed
            runners[name] = _eager_runner(m, ImageToInput(variant_cfg(cfg, embed)))
        else:
            runners[name] = runtime.detect
    return runners


def ort_profile(path: str, image: np.ndarray, runs: int = 1) -> Dict:
    """Where ONNX Runtime spends its time on ``image`` ([3, h, w] float32) with the graph
    ``path``: its profiler's node events summed per op type, as shares of the total (one warm-up
    run, then ``runs`` profiled)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(os.path.dirname(path), "ort_profile")
    sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: image}
    sess.run(None, feed)
    for _ in range(runs):
        sess.run(None, feed)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    per_op: Dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + float(e.get("dur", 0))
    total = sum(per_op.values()) or 1.0
    top = sorted(per_op.items(), key=lambda kv: -kv[1])[:10]
    return {
        "kernel_seconds_per_run": round(total / 1e6 / (runs + 1), 3),
        "share_by_op_type": {k: round(v / total, 3) for k, v in top},
    }


def run_speed(args, cfg, model) -> Dict:
    """The speed part (see the module docstring): the JSON's ``speed``."""
    import tempfile

    import cv2
    from detectron2.data import DatasetCatalog

    from benchmarks.bench_model import build_benchmark_model, make_cfg

    dataset = prepare_dataset(args.data_root)
    test = sorted({d["file_name"] for d in DatasetCatalog.get(dataset["names"]["gallery"])})
    images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in test[: args.speed_images]]
    calib_list = calibration_list(args.work_dir, dataset)
    out = {"cpu": cpu_record(), "load_avg_before": load_avg()}
    with tempfile.TemporaryDirectory() as tmp:
        runners = _runners(cfg, model, args.kinds, tmp, (calib_list, args.calibration_count))
        h, w = images[0].shape[:2]
        out["demo_size"] = {
            "weights": cfg.MODEL.WEIGHTS,
            "test_size": [int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)],
            "images": f"{len(images)} test gallery images ({w}x{h})",
            "warmup_rounds": args.warmup,
            "rounds": args.iters,
            "variants": _time_variants(runners, images, args.warmup, args.iters),
        }
        del runners
    # R-50 at 900x1500, random weights: one synthetic scene enlarged to 900x1500
    size = tuple(args.r50_size)
    scene = cv2.resize(images[0], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    rcfg = make_cfg(os.path.join(REPO, args.r50_config), "cpu", size, 5532)
    calib = [{"image": torch.from_numpy(scene.transpose(2, 0, 1).astype(np.float32))}]
    rmodel, n_cal = build_benchmark_model(rcfg, calib, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        runners = _runners(rcfg, rmodel, args.kinds, tmp, (calib_list, args.r50_calibration))
        out["r50_900x1500"] = {
            "weights": "random (normalisation statistics calibrated on the input: "
            f"{n_cal} layers); speed only, no accuracy",
            "config": args.r50_config,
            "input": f"a synthetic test scene enlarged to {size[0]}x{size[1]}",
            "int8_calibration": f"{args.r50_calibration} training images",
            "warmup_rounds": args.r50_warmup,
            "rounds": args.r50_iters,
            "variants": _time_variants(runners, [scene], args.r50_warmup, args.r50_iters),
        }
        if args.profile:  # where ONNX Runtime spends its time, float32 and int8
            from ian_d2.export import runtime as rt

            profiles = {}
            for name in ("onnx_fp32", "onnx_int8"):
                folder = os.path.join(tmp, name)
                if os.path.isdir(folder):
                    x = rt.Preprocessor(rt.read_manifest(folder))(scene)["image"]
                    profiles[name] = ort_profile(os.path.join(folder, "gallery.onnx"), x)
            out["r50_900x1500"]["onnxruntime_profile"] = profiles
    out["load_avg_after"] = load_avg()
    out["other_processes_at_end"] = other_processes()
    return out
