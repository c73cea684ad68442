#!/usr/bin/env python
"""IAN's ablations on the synthetic CUHK-SYSU, with confidence intervals (``make ablations``).

For every seed (``--seeds``, default 0 1 2):

1. step 1 (crop pretraining) and step 2 (detection + RSS, no center loss), shared by every
   variant of the seed (``configs/Synthetic/ablations/step{1,2}_*.yaml``);
2. every variant is a continuation of that step-2 model with the SAME schedule and seed
   (``configs/Synthetic/ablations/step3_variant.yaml``) and differs from IAN (λ = 0.032, center
   loss on the ground-truth boxes, no dropout) in one setting:

   =======================  ===========================================================
   variant                  setting (paper)
   =======================  ===========================================================
   lambda_0                 λ = 0: the E2E-PS baseline (Table I, Fig. 4)
   lambda_{0.008 ... 0.128} λ ∈ {0.008, 0.016, 0.032, 0.064, 0.128} (Fig. 4; 0.032 = IAN)
   all_pos                  center loss on every positive box, not only the ground truth
                            (``MODEL.CENTER_LOSS.INPUT all_pos``, Table II)
   dropout_lambda_0         dropout 0.5 before the embedding, λ = 0 (Tables III/IV)
   dropout_lambda_0.032     dropout 0.5 before the embedding, λ = 0.032 (Tables III/IV)
   =======================  ===========================================================

3. each run is evaluated on the test set of the "ablation" synthetic preset (300 queries,
   galleries 50, 100, 200, 400 and the 520-image pool): ``train_net.py`` saves the predictions,
   ``python -m ian_d2.evaluation.rescore`` scores them at every gallery size (Fig. 5) and the
   per-query AP / top-1 hits are kept for the bootstrap;
4. ``projects/ablations/report.py`` writes ``docs/ablations/results.{json,md}`` and the plots: mean
   over seeds, 95% bootstrap confidence intervals over queries, per-seed values, and the paired
   differences the paper's claims are about.

Runs live in ``output/ablations/seed{S}/{step1,step2,<variant>}/``. A finished run leaves
``ablation_run.json`` there and is skipped by the next invocation; an interrupted one resumes
from its last checkpoint (``train_net.py --resume``). Changing a run's settings (schedule,
opts, dataset) makes the runner stop rather than mix results: use another ``--output-dir``.

The data set is generated once (about 30 s) in ``$DETECTRON2_DATASETS/ablation/cuhk_sysu_synth``
(default ``datasets/ablation``); the training processes see it through
``DETECTRON2_DATASETS=<that folder's parent>``, under the demo's dataset names.

Device: a GPU when one is visible (``--device auto``), else the CPU.

Usage::

    python -m projects.ablations.run                      # the full run (make ablations)
    python -m projects.ablations.run --quick              # a smoke test of everything, tiny data
    python -m projects.ablations.run --seeds 0 --variants lambda_0 lambda_0.032
    python -m projects.ablations.report                # the report again from the finished runs

(from the repository root: ``tools`` is a package of the repository, not of ian_d2).

This module executes the plan (:mod:`.plan`: the variants, schedules and runs) and is its
command line; the data set is :mod:`.data`, the scoring of a run's predictions :mod:`.scoring`,
the runs' record files :mod:`.records`. Their names that code imported from here before the
split are re-exported here.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np

from projects.ablations.data import DATA_SEED, DATASET_DIR, TEST_SET, prepare_data
from projects.ablations.markdown import render_markdown
from projects.ablations.plan import IAN_OPTS, STEP1, STEP2, STEP3  # noqa: F401  (re-exported)
from projects.ablations.plan import (
    QUICK,
    QUICK_OPTS,
    REPO,
    VARIANTS,
    Run,
    plan,
    schedule_opts,
    schedule_text,
)
from projects.ablations.records import read_json, run_seconds, write_json
from projects.ablations.report import write_report
from projects.ablations.scoring import per_query_metrics
from projects.ablations.scoring import rescore as _rescore
from projects.ablations.tables import main_protocol

__all__ = [
    "VARIANTS",
    "Run",
    "execute",
    "main",
    "per_query_metrics",
    "plan",
    "prepare_data",
    "schedule_opts",
]

logger = logging.getLogger("ian_d2.ablations")

RESULTS_FILE = "person_search_results.json"
PREDICTIONS_FILE = "person_search_predictions.npz"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m projects.ablations.run",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (0 1 2)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), metavar="V",
        help=f"variants to run (default: all: {' '.join(VARIANTS)})",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: tiny data and schedules ({QUICK})")  # fmt: skip
    parser.add_argument("--iters-scale", type=float, help="factor on every schedule (1)")
    parser.add_argument("--preset", help="synthetic preset of the data set (ablation)")
    parser.add_argument("--data-root", help="$DETECTRON2_DATASETS of the runs")
    parser.add_argument("--output-dir", help="runs (output/ablations)")
    parser.add_argument("--report-dir", help="report (docs/ablations)")
    parser.add_argument("--resamples", type=int, help="bootstrap resamples (1000)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-report", action="store_true", help="train and score only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    t_start = time.time()

    from ian_d2.data.datasets import datasets_root

    quick = args.quick
    preset = args.preset or (QUICK["preset"] if quick else "ablation")
    scale = args.iters_scale or (QUICK["iters_scale"] if quick else 1.0)
    resamples = args.resamples or (QUICK["resamples"] if quick else 1000)
    seeds = args.seeds or (QUICK["seeds"] if quick else [0, 1, 2])
    variants = args.variants or (QUICK["variants"] if quick else list(VARIANTS))
    suffix = "_quick" if quick else ""
    data_root = os.path.abspath(
        args.data_root or os.path.join(datasets_root(), "ablation" + suffix)
    )
    output_dir = os.path.abspath(
        args.output_dir or os.path.join(REPO, "output", "ablations" + suffix)
    )
    report_dir = args.report_dir or (
        os.path.join(output_dir, "report") if quick else os.path.join(REPO, "docs", "ablations")
    )  # fmt: skip
    device = _device(args.device)

    summary = prepare_data(data_root, preset)
    root = os.path.join(data_root, DATASET_DIR)
    dataset = {
        "preset": preset,
        "seed": DATA_SEED,
        "queries": summary["queries"],
        "gallery_sizes": summary["gallery_sizes"],
        "test_images": summary["test_images"],
    }
    env = dict(os.environ, DETECTRON2_DATASETS=data_root)
    runs = plan(output_dir, seeds, variants, scale, device, QUICK_OPTS if quick else None)
    logger.info(
        "%d runs (%d seeds x (step 1, step 2, %d variants)) in %s on %s; %s; data: %s "
        "(%d queries)", len(runs), len(seeds), len(variants), output_dir, device,
        schedule_text(scale), root, summary["queries"],
    )  # fmt: skip
    records = []
    for k, (run, label) in enumerate(runs, start=1):
        skip = run.done(dataset)
        logger.info(
            "==== [%d/%d] seed %d %s%s (%.0f s elapsed) ====", k, len(runs), run.seed, run.name,
            ": finished, skipped" if skip else "", time.time() - t_start,
        )  # fmt: skip
        rec = execute(run, env, root, dataset, label)
        records.append(rec)
        if not skip and "per_query" in rec:
            main_key = main_protocol(rec["per_query"])
            logger.info(
                "seed %d %s: %s mAP %.1f, top-1 %.1f (train %.0f s)", run.seed, run.name,
                main_key, 100 * np.nanmean(np.asarray(rec["per_query"][main_key]["ap"], float)),
                100 * np.mean(rec["per_query"][main_key]["top1"]), rec["train_seconds"],
            )  # fmt: skip
    compute = sum(run_seconds(r) for r in records)
    gen = read_json(os.path.join(data_root, "generated.json"))["seconds"]
    meta = {
        "command": " ".join(
            ["python -m projects.ablations.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "dataset": (
            f"synthetic CUHK-SYSU, preset {preset!r}: {summary['train_images']} training images "
            f"of {summary['train_identities']} identities, {summary['test_images']} test images, "
            f"{summary['queries']} queries of unseen identities"
        ),
        "pool_images": summary["test_images"],
        "schedule": schedule_text(scale) + " (the same for every variant)",
        "device": device,
        "compute_seconds": round(compute + gen, 1),
        "compute_hours": round((compute + gen) / 3600.0, 2),
        "this_invocation_seconds": round(time.time() - t_start, 1),
    }
    report = None
    if not args.no_report:
        report = write_report(
            output_dir, report_dir, variants=variants, resamples=resamples, meta=meta
        )
        print(render_markdown(report))
    print(
        f"\n{len(runs)} runs; compute wall time {meta['compute_seconds']:.0f} s (all runs, "
        f"including earlier invocations), this invocation {time.time() - t_start:.0f} s; "
        f"report: {report_dir}"
    )
    return {"meta": meta, "report": report, "records": records}


def execute(run: Run, env: Dict[str, str], root: str, dataset: dict, label: str) -> dict:
    """Train (resuming), evaluate and record one run unless it is already finished.

    Returns:
        the run's ``ablation_run.json`` content.
    """
    if run.done(dataset):
        return read_json(run.marker)
    results = os.path.join(run.dir, "inference", TEST_SET, RESULTS_FILE)
    finished = os.path.isfile(os.path.join(run.dir, "model_final.pth")) and (
        not run.evaluate or os.path.isfile(results)
    )
    if not finished:
        _train(run, env)
    t0 = time.time()
    record = {
        "variant": run.name,
        "label": label,
        "seed": run.seed,
        "opts": {k: v for k, v in run.opts.items()},
        "spec": run.spec(dataset),
        "train_seconds": _train_seconds(run),
    }
    if run.evaluate:
        pred = os.path.join(run.dir, "inference", TEST_SET, PREDICTIONS_FILE)
        sizes = dataset["gallery_sizes"]
        rescored = _rescore(pred, root, sizes, os.path.join(run.dir, "rescore.json"))
        record["rescore"] = rescored["results"]
        record["detection"] = read_json(results)["results"]["detection"]
        record["per_query"] = per_query_metrics(pred, root, rescored)
    record["score_seconds"] = time.time() - t0
    write_json(run.marker, record)
    for f in os.listdir(run.dir):  # the run is recorded: only model_final.pth is kept
        if f.startswith("model_") and f.endswith(".pth") and f != "model_final.pth":
            os.remove(os.path.join(run.dir, f))
    return record


def _train(run: Run, env: Dict[str, str]) -> float:
    """train_net.py for the run (resuming from its last checkpoint); returns this call's time."""
    os.makedirs(run.dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", run.config]
    cmd += ["--resume"] + _opts_list(run.opts) + ["OUTPUT_DIR", run.dir]
    log = os.path.join(run.dir, "train_net.out")
    wall_file = os.path.join(run.dir, "wall_seconds.json")
    spent = _train_seconds(run)
    t0 = time.time()
    try:
        with open(log, "a") as f:
            f.write("\n$ " + " ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    finally:
        write_json(wall_file, {"train": spent + time.time() - t0})
    if proc.returncode != 0:
        with open(log) as f:
            tail = "".join(f.readlines()[-30:])
        raise RuntimeError(f"train_net.py failed for {run.dir} (exit {proc.returncode}):\n{tail}")
    return time.time() - t0


def _train_seconds(run: Run) -> float:
    """Wall time of the run's train_net.py calls so far (0 if unknown)."""
    path = os.path.join(run.dir, "wall_seconds.json")
    return float(read_json(path)["train"]) if os.path.isfile(path) else 0.0


def _opts_list(opts: Dict[str, object]) -> List[str]:
    out = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
