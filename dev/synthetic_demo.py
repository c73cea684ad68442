#!/usr/bin/env python
"""The embedded default: IAN's 3 training steps on the synthetic CUHK-SYSU, on a CPU.

1. generates the synthetic dataset in CUHK-SYSU format under ``$DETECTRON2_DATASETS``
   (default ``./datasets``) as ``cuhk_sysu_synth/`` if it is absent;
2. trains step 1 (crop classification pretraining), step 2 (detection + RSS identity loss)
   and step 3 (+ center loss), each from the previous step's weights, with ``train_net.py``
   (``configs/Synthetic/*.yaml``; each step resumes from its last checkpoint if interrupted
   and is skipped if already finished);
3. evaluates steps 2 and 3 on every protocol (``train_net.py`` does it at the end of training)
   and prints mAP / top-1 per gallery size beside the chance level (the same detections
   ranked by random embeddings).

Usage: ``python dev/synthetic_demo.py [--output-dir output/synthetic] [--fresh]``
(``make demo``).
"""

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ian_d2.data.datasets import datasets_root  # noqa: E402
from ian_d2.data.synthetic import generate_cuhk_sysu  # noqa: E402
from ian_d2.evaluation.predictions import (  # noqa: E402
    PREDICTIONS_FILE,
    load_predictions,
    save_predictions,
)
from ian_d2.evaluation.rescore import rescore  # noqa: E402

logger = logging.getLogger("ian_d2.synthetic_demo")

STEPS = (
    ("step1", "configs/Synthetic/IAN_R18_GN_step1_crop_pretrain.yaml"),
    ("step2", "configs/Synthetic/IAN_R18_GN_step2_det_rss.yaml"),
    ("step3", "configs/Synthetic/IAN_R18_GN_step3_center.yaml"),
)
TEST_SET = "cuhk_sysu_synth_test"
RESULTS_FILE = "person_search_results.json"


def _run_step(name: str, config: str, out_dir: str, prev_dir: str) -> float:
    """Train one step with train_net.py (resuming if interrupted); returns its wall time."""
    if os.path.isfile(os.path.join(out_dir, "model_final.pth")) and (
        name == "step1"
        or os.path.isfile(os.path.join(out_dir, "inference", TEST_SET, RESULTS_FILE))
    ):
        logger.info("%s: already done in %s (delete it or use --fresh to redo)", name, out_dir)
        return 0.0
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config, "--resume"]
    cmd += ["OUTPUT_DIR", out_dir]
    if prev_dir:
        cmd += ["MODEL.WEIGHTS", os.path.join(prev_dir, "model_final.pth")]
    logger.info("%s: %s", name, " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.time() - t0


def _chance(step_dir: str, root: str, seed: int = 0) -> dict:
    """Metrics of the step's own detections ranked by random embeddings (chance level)."""
    path = os.path.join(step_dir, "inference", TEST_SET, PREDICTIONS_FILE)
    preds = load_predictions(path)
    rng = np.random.default_rng(seed)
    preds = dataclasses.replace(
        preds,
        gallery_embeddings=rng.standard_normal(preds.gallery_embeddings.shape).astype("f4"),
        query_embeddings=rng.standard_normal(preds.query_embeddings.shape).astype("f4"),
    )
    chance_path = os.path.join(step_dir, "chance_" + PREDICTIONS_FILE)
    save_predictions(preds, chance_path)
    results, _ = rescore(chance_path, root, "cuhk_sysu")
    return results


def _table(rows) -> str:
    head = f"{'':<22}" + "".join(f"{k:>14}" for k in rows[0][1])
    lines = [head, "-" * len(head)]
    for name, vals in rows:
        lines.append(f"{name:<22}" + "".join(f"{v:>14}" for v in vals.values()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output", "synthetic"))
    parser.add_argument("--fresh", action="store_true", help="retrain every step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    t_start = time.time()

    root = os.path.join(datasets_root(), "cuhk_sysu_synth")
    if not os.path.isdir(os.path.join(root, "annotation")):
        logger.info("Generating the synthetic CUHK-SYSU dataset in %s ...", root)
        generate_cuhk_sysu(root, size="default", seed=0)
    if args.fresh and os.path.isdir(args.output_dir):
        shutil.rmtree(args.output_dir)

    walls, prev = {}, ""
    for i, (name, config) in enumerate(STEPS, start=1):
        logger.info(
            "==== [%d/%d] %s (%.0f s elapsed) ====", i, len(STEPS), name, time.time() - t_start
        )
        out = os.path.join(args.output_dir, name)
        walls[name] = round(_run_step(name, os.path.join(REPO, config), out, prev), 1)
        prev = out

    results = {}
    for name in ("step2", "step3"):
        with open(os.path.join(args.output_dir, name, "inference", TEST_SET, RESULTS_FILE)) as f:
            results[name] = json.load(f)
    chance = _chance(os.path.join(args.output_dir, "step3"), root)
    names = {
        "search": "gallery 100",
        "search_g50": "gallery 50",
        "search_full": "full pool",
        "search_occlusion": "occlusion",
        "search_resolution": "low-res",
    }
    keys = [k for k in names if k in results["step3"]["results"]]
    rows = []
    for label, res in (
        ("chance (random emb.)", chance),
        ("step 2: det + RSS", results["step2"]["results"]),
        ("step 3: + center loss", results["step3"]["results"]),
    ):
        vals = {names[k]: f"{res[k]['mAP']:.1f} / {res[k]['top-1']:.1f}" for k in keys}
        det = res["detection"]
        vals["detection"] = f"{det['AP']:.1f} / {det['recall']:.1f}"
        rows.append((label, vals))
    print(
        "\nIAN on synthetic CUHK-SYSU (R-18-GN, CPU): search mAP / top-1 per protocol, "
        "detection AP / recall; chance = step 3's detections ranked by random embeddings"
    )
    print(_table(rows))
    total = time.time() - t_start
    print(f"\nwall time: {total:.0f} s (training + evaluation per step: {walls})")
    summary = {"results": results, "chance": chance, "wall_seconds": total, "step_seconds": walls}
    with open(os.path.join(args.output_dir, "demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    return summary


if __name__ == "__main__":
    main()
