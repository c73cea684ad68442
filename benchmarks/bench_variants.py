"""Inference variants of a trained model judged by search accuracy AND speed, on CPU; JSON.

Variants (each also with ``MODEL.ROI_HEADS.EMBED_BOXES final``, suffix ``+final``: the gallery
embedding pooled on the regressed box kept by NMS instead of its proposal):

* ``eager_fp32``: the Detectron2 model (the reference of every difference);
* ``onnx_fp32``: the ONNX export run by ONNX Runtime (CPU provider);
* ``torchscript_bf16``: the TorchScript export with ``--precision bf16`` (backbone, RPN head
  and res5 in bfloat16);
* ``onnx_int8``: the ONNX export with ``--precision int8`` (backbone and res5 convolutions
  quantized, calibrated on ``--calibration-count`` training images of the data set: never the
  test images).

Two parts, run together or alone (``--only``):

* ``accuracy`` (deterministic: the load of other processes does not change it): every variant
  runs end to end over the test set of the synthetic ``ablation`` preset (520 gallery images,
  300 queries; generated once under ``--data-root``, as ``make ablations`` does) through the
  project's evaluator (``PersonSearchEvaluator``: detection AP) and ``rescore`` (search mAP /
  top-1 at gallery 100 and the full pool). ΔmAP and Δtop-1 against eager fp32 come with a
  paired percentile bootstrap 95 % interval over queries (``projects/ablations/report.py``'s
  ``bootstrap_indices`` and ``contrast``: one draw of queries shared by both variants).
* ``speed``: seconds per image (image in memory -> detections with embeddings, batch 1) of
  every variant (a) with the trained model on ``--speed-images`` test images at the model's
  own test size and (b) with R-50 C4 (``configs/IAN_R50.yaml``) at 900x1500 with **random
  weights** (normalisation statistics calibrated on the input, as ``bench_export.py``; speed
  does not depend on the weights' values), the variants timed in turn in every round.

With both parts in the output file, ``goal`` says which variants reach the issue's goal: at
least 2.5x eager fp32 at 900x1500 with ΔmAP (gallery 100) within ±0.5 and its interval
covering 0. The output file is updated in place: ``--only speed`` keeps an earlier ``accuracy``.

This module is the command line; the parts are in ``benchmarks/variants/`` (``build``,
``accuracy``, ``speed``, ``goal``).

Usage (repository root)::

    python -m benchmarks.bench_variants --only accuracy      # ~20-30 min on 2 cores
    python -m benchmarks.bench_variants --only speed         # alone on the machine: timings
    python -m benchmarks.bench_variants --weights /tmp/demo_model/model_final.pth \\
        --config /tmp/demo_model/config.yaml

The JSON records the CPU (``cpu``: model name and the flags avx2, fma, avx512f, avx512_vnni,
avx_vnni, avx512_bf16, amx_bf16, amx_int8) at the top and again inside ``speed``, so that the
figures keep their CPU when a later ``--only accuracy`` run on another machine updates the file.

Defaults: the model ``make demo`` writes (``output/synthetic/step3/``), the data under
``datasets/ablation`` and ``benchmarks/variants_cpu.json``.
"""

import argparse
import json
import logging
import os
import platform
import sys
from typing import Dict

import torch

from benchmarks.machine import cpu_model, cpu_record, write_json
from benchmarks.variants.accuracy import PROTOCOLS, paired_deltas, run_accuracy
from benchmarks.variants.build import EMBED_MODES, KINDS, REFERENCE, RuntimeAsModel, variants
from benchmarks.variants.goal import goal
from benchmarks.variants.speed import R50_CONFIG, R50_SIZE, ort_profile, run_speed

__all__ = [
    "EMBED_MODES",
    "KINDS",
    "PROTOCOLS",
    "RuntimeAsModel",
    "goal",
    "main",
    "ort_profile",
    "paired_deltas",
    "variants",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_variants", description=__doc__.splitlines()[0]
    )
    p.add_argument("--only", choices=("accuracy", "speed", "all"), default="all")
    p.add_argument("--weights", default="output/synthetic/step3/model_final.pth")
    p.add_argument("--config", default="output/synthetic/step3/config.yaml",
                   help="the model's config (make demo writes it beside the weights)")  # fmt: skip
    p.add_argument("--data-root", default="datasets/ablation",
                   help="the ablation preset's folder (generated there if absent)")  # fmt: skip
    p.add_argument("--work-dir", default="output/bench_variants",
                   help="exports, predictions and per-variant results (resumable)")  # fmt: skip
    p.add_argument("--output", default="benchmarks/variants_cpu.json")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--calibration-count", type=int, default=32, help="int8: training images")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--rng-seed", type=int, default=0, help="bootstrap RNG seed")
    p.add_argument("--speed-images", type=int, default=10, help="demo size: images per round")
    p.add_argument("--iters", type=int, default=3, help="demo size: timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="demo size: untimed rounds first")
    p.add_argument("--r50-iters", type=int, default=3, help="900x1500: timed rounds")
    p.add_argument("--r50-warmup", type=int, default=1, help="900x1500: untimed rounds")
    p.add_argument("--r50-calibration", type=int, default=8, help="900x1500 int8: images")
    p.add_argument("--r50-config", default=R50_CONFIG,
                   help="the large setting's config (another one: smoke tests only)")  # fmt: skip
    p.add_argument("--r50-size", type=int, nargs=2, default=list(R50_SIZE), metavar=("H", "W"),
                   help="the large setting's input size (another one: smoke tests only)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="R-50 random weights")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="speed: skip ONNX Runtime's profile of the 900x1500 fp32 / int8 graphs")  # fmt: skip
    args = p.parse_args(argv)
    if REFERENCE not in args.kinds:
        args.kinds.insert(0, REFERENCE)
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    import onnxruntime

    from ian_d2.config import get_ian_cfg
    from ian_d2.search.indexer import load_search_model

    for path, what in ((args.weights, "--weights"), (args.config, "--config")):
        if not os.path.isfile(path):
            raise SystemExit(
                f"bench_variants: {what} '{path}' does not exist (train the demo model with "
                "`make demo`, or pass --weights and --config)"
            )
    cfg = get_ian_cfg(args.config, ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu"])
    model = load_search_model(cfg)
    out = {}
    if os.path.isfile(args.output):
        with open(args.output) as f:
            out = json.load(f)
    out.update(
        {
            "what": "inference variants of a trained model: search accuracy and CPU speed",
            "command": "python -m benchmarks.bench_variants " + " ".join(argv or sys.argv[1:]),
            "weights": os.path.abspath(args.weights),
            "config": os.path.abspath(args.config),
            "cpu_model": cpu_model(),
            "cpu": cpu_record(),
            "cpu_count": os.cpu_count(),
            "device": platform.machine(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        }
    )
    if args.only in ("accuracy", "all"):
        out["accuracy"] = run_accuracy(args, cfg, model)
        write_json(out, args.output)
    if args.only in ("speed", "all"):
        out["speed"] = run_speed(args, cfg, model)
    out["goal_check"] = goal(out)
    write_json(out, args.output)
    sys.stdout.write(json.dumps({k: out[k] for k in out if k != "accuracy"}, indent=1) + "\n")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    main()
