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
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from projects.ablations import report as ablation_report

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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

logger = logging.getLogger("ian_d2.ablations")

CONFIG_DIR = os.path.join(REPO, "configs", "Synthetic", "ablations")
STEP1 = os.path.join(CONFIG_DIR, "step1_crop_pretrain.yaml")
STEP2 = os.path.join(CONFIG_DIR, "step2_det_rss.yaml")
STEP3 = os.path.join(CONFIG_DIR, "step3_variant.yaml")
DATASET_DIR = "cuhk_sysu_synth"  # the folder the built-in registration maps cuhk_sysu_synth_* to
TEST_SET = "cuhk_sysu_synth_test"
RESULTS_FILE = "person_search_results.json"
PREDICTIONS_FILE = "person_search_predictions.npz"
RUN_FILE = ablation_report.RUN_FILE
DATA_SEED = 0  # the data set is the same for every seed: seeds vary the training only

# IAN's settings; every variant changes one of them.
IAN_OPTS = OrderedDict(
    [
        ("MODEL.CENTER_LOSS.WEIGHT", 0.032),
        ("MODEL.CENTER_LOSS.INPUT", "gt"),
        ("MODEL.REID.DROPOUT", 0.0),
    ]
)
LAMBDAS = (0.0, 0.008, 0.016, 0.032, 0.064, 0.128)


def _variants() -> "OrderedDict[str, Tuple[str, Dict[str, object]]]":
    out: "OrderedDict[str, Tuple[str, Dict[str, object]]]" = OrderedDict()
    for lam in LAMBDAS:
        name = "lambda_0" if lam == 0 else f"lambda_{lam:g}"
        label = {0.0: "λ = 0 (E2E-PS)", 0.032: "λ = 0.032 (IAN)"}.get(lam, f"λ = {lam:g}")
        out[name] = (label, dict(IAN_OPTS, **{"MODEL.CENTER_LOSS.WEIGHT": lam}))
    out["all_pos"] = (
        "λ = 0.032, all positive boxes",
        dict(IAN_OPTS, **{"MODEL.CENTER_LOSS.INPUT": "all_pos"}),
    )
    out["dropout_lambda_0"] = (
        "dropout 0.5, λ = 0",
        dict(IAN_OPTS, **{"MODEL.REID.DROPOUT": 0.5, "MODEL.CENTER_LOSS.WEIGHT": 0.0}),
    )
    out["dropout_lambda_0.032"] = (
        "dropout 0.5, λ = 0.032",
        dict(IAN_OPTS, **{"MODEL.REID.DROPOUT": 0.5}),
    )
    return out


VARIANTS = _variants()
STEP2_LABEL = "step 2 (shared start)"

# --quick: a smoke test of the whole pipeline: the tiny preset, schedules of a few iterations,
# small inputs, 2 seeds and one variant of each kind (lambda, center-loss input, dropout).
QUICK = {
    "preset": "tiny",
    "iters_scale": 0.01,
    "resamples": 200,
    "seeds": [0, 1],
    "variants": ["lambda_0", "lambda_0.032", "all_pos", "dropout_lambda_0.032"],
}
QUICK_OPTS = OrderedDict(
    [
        ("INPUT.MIN_SIZE_TRAIN", "(96,)"),
        ("INPUT.MAX_SIZE_TRAIN", 128),
        ("INPUT.MIN_SIZE_TEST", 96),
        ("INPUT.MAX_SIZE_TEST", 128),
        ("MODEL.RPN.POST_NMS_TOPK_TRAIN", 64),
        ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16),
        ("MODEL.RPN.POST_NMS_TOPK_TEST", 20),
        ("DATALOADER.NUM_WORKERS", 0),
        ("SOLVER.CHECKPOINT_PERIOD", 100000),  # only model_final.pth
    ]
)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _write_json(path: str, obj) -> None:
    """Write JSON atomically (a temporary file renamed over the target)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


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


def schedule_opts(config: str, scale: float) -> Dict[str, object]:
    """The solver schedule of ``config`` scaled by ``scale`` (iterations, steps, warm-up,
    checkpoint period), as opts; the config's own values for ``scale == 1``.

    Args:
        config: a config file.
        scale: factor on every iteration count (at least 2 iterations are kept).

    Returns:
        {"SOLVER.MAX_ITER": ..., "SOLVER.STEPS": "(...)", "SOLVER.WARMUP_ITERS": ...,
        "SOLVER.CHECKPOINT_PERIOD": ...}.
    """
    from ian_d2.config import get_ian_cfg

    s = get_ian_cfg(config).SOLVER
    max_iter = max(2, int(round(s.MAX_ITER * scale)))
    steps = tuple(min(max_iter - 1, max(1, int(round(x * scale)))) for x in s.STEPS)
    return OrderedDict(
        [
            ("SOLVER.MAX_ITER", max_iter),
            ("SOLVER.STEPS", "(" + "".join(f"{x}," for x in steps) + ")"),
            ("SOLVER.WARMUP_ITERS", min(max_iter - 1, int(round(s.WARMUP_ITERS * scale)))),
            ("SOLVER.CHECKPOINT_PERIOD", max(1, int(round(s.CHECKPOINT_PERIOD * scale)))),
        ]
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def prepare_data(data_root: str, preset: str) -> dict:
    """Generate the ``preset`` synthetic CUHK-SYSU as ``data_root/cuhk_sysu_synth`` once.

    Returns:
        the generator's summary (also in ``data_root/generated.json``).

    Raises:
        RuntimeError: the folder holds another preset or a data set of unknown origin.
    """
    from ian_d2.data.synthetic import generate_cuhk_sysu

    root = os.path.join(data_root, DATASET_DIR)
    marker = os.path.join(data_root, "generated.json")
    if os.path.isfile(marker):
        info = _read_json(marker)
        if (info["preset"], info["seed"]) != (preset, DATA_SEED):
            raise RuntimeError(
                f"{root} holds the {info['preset']!r} preset (seed {info['seed']}), not "
                f"{preset!r}: use another --data-root or delete it"
            )
        return info["summary"]
    if os.path.exists(root):
        raise RuntimeError(f"{root} exists but was not generated by this runner: delete it")
    tmp = root + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    logger.info("generating the %r synthetic CUHK-SYSU in %s ...", preset, root)
    t0 = time.time()
    summary = generate_cuhk_sysu(tmp, size=preset, seed=DATA_SEED)
    os.replace(tmp, root)
    summary["out_dir"] = root
    _write_json(
        marker,
        {"preset": preset, "seed": DATA_SEED, "seconds": time.time() - t0, "summary": summary},
    )
    return summary


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


class Run:
    """One training run: step 1, step 2 or a variant of one seed.

    Args:
        out_dir: the run's folder.
        name: "step1", "step2" or a variant name.
        seed: the training seed (``SEED``).
        config: its config file.
        opts: every opt it passes (schedule, variant, device, weights), in order.
        evaluate: whether it is evaluated (not step 1).
    """

    def __init__(self, out_dir, name, seed, config, opts, evaluate):
        self.dir, self.name, self.seed = out_dir, name, seed
        self.config, self.opts, self.evaluate = config, opts, evaluate

    @property
    def marker(self) -> str:
        return os.path.join(self.dir, RUN_FILE)

    def spec(self, dataset: dict) -> dict:
        """What defines the run (compared with a finished run's before skipping it)."""
        return {
            "config": os.path.relpath(self.config, REPO),
            "opts": {
                k: os.path.relpath(str(v), self.dir) if k == "MODEL.WEIGHTS" else str(v)
                for k, v in self.opts.items()
                if k != "MODEL.DEVICE"
            },
            "seed": self.seed,
            "dataset": dataset,
        }

    def done(self, dataset: dict) -> bool:
        """True if finished with this spec; raises if finished with another one."""
        if not os.path.isfile(self.marker):
            return False
        old = _read_json(self.marker).get("spec")
        new = self.spec(dataset)
        if old != new:
            diff = {
                k: (old.get(k) if old else None, new[k])
                for k in new
                if not old or old.get(k) != new[k]
            }
            raise RuntimeError(
                f"{self.dir} was finished with other settings {diff} (old, new): use another "
                "--output-dir, or delete that folder to redo it"
            )
        return True


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
        _write_json(wall_file, {"train": spent + time.time() - t0})
    if proc.returncode != 0:
        with open(log) as f:
            tail = "".join(f.readlines()[-30:])
        raise RuntimeError(f"train_net.py failed for {run.dir} (exit {proc.returncode}):\n{tail}")
    return time.time() - t0


def _train_seconds(run: Run) -> float:
    """Wall time of the run's train_net.py calls so far (0 if unknown)."""
    path = os.path.join(run.dir, "wall_seconds.json")
    return float(_read_json(path)["train"]) if os.path.isfile(path) else 0.0


def _rescore(pred: str, root: str, sizes: Sequence[int], out: str) -> dict:
    """``python -m ian_d2.evaluation.rescore`` at every gallery size and the full pool."""
    cmd = [sys.executable, "-m", "ian_d2.evaluation.rescore", pred, "--dataset-root", root]
    cmd += ["--dataset", "cuhk_sysu"]
    for s in list(sizes) + [-1]:
        cmd += ["--gallery-size", str(s)]
    cmd += ["--output", out]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"rescore failed for {pred}:\n{proc.stderr.decode()[-2000:]}")
    return _read_json(out)


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
        evaluate_search,
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
                raise RuntimeError(
                    f"{pred} {proto.key}: per-query {m} {got[m]} != rescore's {want[m]}"
                )
        size = int(info["gallery_size"])
        out["full" if size < 0 else f"g{size}"] = {
            "gallery_size": size,
            "query_index": [int(q) for q in np.asarray(preds.query_indices)[proto.query_rows]],
            "ap": [None if np.isnan(v) else float(v) for v in ap],
            "top1": [float(v) for v in top1],
        }
    return out


def execute(run: Run, env: Dict[str, str], root: str, dataset: dict, label: str) -> dict:
    """Train (resuming), evaluate and record one run unless it is already finished.

    Returns:
        the run's ``ablation_run.json`` content.
    """
    if run.done(dataset):
        return _read_json(run.marker)
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
        record["detection"] = _read_json(results)["results"]["detection"]
        record["per_query"] = per_query_metrics(pred, root, rescored)
    record["score_seconds"] = time.time() - t0
    _write_json(run.marker, record)
    for f in os.listdir(run.dir):  # the run is recorded: only model_final.pth is kept
        if f.startswith("model_") and f.endswith(".pth") and f != "model_final.pth":
            os.remove(os.path.join(run.dir, f))
    return record


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def plan(
    output_dir: str,
    seeds: Sequence[int],
    variants: Sequence[str],
    scale: float,
    device: str,
    extra_opts: Optional[Dict[str, object]] = None,
) -> List[Tuple[Run, str]]:
    """Every run, in execution order (seed by seed: step 1, step 2, the variants).

    Args:
        output_dir: the runs' folder.
        seeds: training seeds.
        variants: names of :data:`VARIANTS`.
        scale: factor on every schedule.
        device: MODEL.DEVICE.
        extra_opts: opts of every run (``--quick``: small inputs).

    Returns:
        [(run, label)].
    """
    # the config's schedule (scaled), then the extra opts (they may override it)
    sched = {c: dict(schedule_opts(c, scale), **(extra_opts or {})) for c in (STEP1, STEP2, STEP3)}
    runs = []
    for seed in seeds:
        d = os.path.join(output_dir, f"seed{seed}")
        common = OrderedDict([("SEED", seed), ("MODEL.DEVICE", device)])
        s1 = Run(
            os.path.join(d, "step1"), "step1", seed, STEP1, dict(common, **sched[STEP1]), False
        )
        w1 = {"MODEL.WEIGHTS": os.path.join(s1.dir, "model_final.pth")}
        s2 = Run(os.path.join(d, "step2"), "step2", seed, STEP2,
                 dict(common, **sched[STEP2], **w1), True)  # fmt: skip
        runs += [(s1, "step 1"), (s2, STEP2_LABEL)]
        w2 = {"MODEL.WEIGHTS": os.path.join(s2.dir, "model_final.pth")}
        for v in variants:
            label, vopts = VARIANTS[v]
            opts = dict(common, **sched[STEP3], **w2, **vopts)
            runs.append((Run(os.path.join(d, v), v, seed, STEP3, opts, True), label))
    return runs


def _schedule_text(scale: float) -> str:
    its = [schedule_opts(c, scale)["SOLVER.MAX_ITER"] for c in (STEP1, STEP2, STEP3)]
    return f"step 1 {its[0]}, step 2 {its[1]}, each variant {its[2]} iterations"


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
        _schedule_text(scale), root, summary["queries"],
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
            main_key = ablation_report.main_protocol(rec["per_query"])
            logger.info(
                "seed %d %s: %s mAP %.1f, top-1 %.1f (train %.0f s)", run.seed, run.name,
                main_key, 100 * np.nanmean(np.asarray(rec["per_query"][main_key]["ap"], float)),
                100 * np.mean(rec["per_query"][main_key]["top1"]), rec["train_seconds"],
            )  # fmt: skip
    compute = sum(ablation_report.run_seconds(r) for r in records)
    gen = _read_json(os.path.join(data_root, "generated.json"))["seconds"]
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
        "schedule": _schedule_text(scale) + " (the same for every variant)",
        "device": device,
        "compute_seconds": round(compute + gen, 1),
        "compute_hours": round((compute + gen) / 3600.0, 2),
        "this_invocation_seconds": round(time.time() - t_start, 1),
    }
    report = None
    if not args.no_report:
        report = ablation_report.write_report(
            output_dir, report_dir, variants=variants, resamples=resamples, meta=meta
        )
        print(ablation_report.render_markdown(report))
    print(
        f"\n{len(runs)} runs; compute wall time {meta['compute_seconds']:.0f} s (all runs, "
        f"including earlier invocations), this invocation {time.time() - t_start:.0f} s; "
        f"report: {report_dir}"
    )
    return {"meta": meta, "report": report, "records": records}


if __name__ == "__main__":
    main()
