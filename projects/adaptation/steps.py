"""The steps of the target-site measurement, each a command a user could run, skipped when its
output exists (the driver resumes):

* :func:`make_site`: the target site (``python -m ian_d2.data.synthetic --format target-site``);
* :func:`index_footage`: its test footage indexed with tracks by the source model;
* :func:`evaluate`: ``train_net.py --eval-only`` on the site's cross-camera protocol;
* :func:`train_oracle`: fine-tuning on the site's own labels (the upper bound);
* :func:`run_adapt`: ``python -m ian_d2.adapt`` on the indexed footage (no labels);
* :func:`reembed` and :func:`eval_tracks`: the footage searched with the adapted model, tracking
  and per-track search against the site's ground truth.

Each returns what it measured (wall seconds included) and stores it under the work folder.
"""

import json
import logging
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

from .plan import REPO, Plan

__all__ = [
    "evaluate",
    "eval_tracks",
    "index_footage",
    "make_site",
    "reembed",
    "run_adapt",
    "train_oracle",
]

logger = logging.getLogger("ian_d2.adaptation")

PRED = os.path.join("inference", "synthetic_target_test", "person_search_predictions.npz")
RESULTS = os.path.join("inference", "synthetic_target_test", "person_search_results.json")


def _env(plan: Plan) -> Dict[str, str]:
    return dict(
        os.environ,
        IAN_D2_COCO_DATASETS=os.path.join(plan.site, "datasets.json"),
        DETECTRON2_DATASETS=plan.datasets,
    )


def _run(plan: Plan, cmd: List[str], log: str) -> float:
    """Run ``cmd`` in the repository, its output to ``log``; its wall seconds."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    logger.info("%s", " ".join(cmd))
    t0 = time.perf_counter()
    with open(log, "ab") as f:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(plan), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): see {log}")
    return time.perf_counter() - t0


def _done(path: str) -> Optional[Dict]:
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def _save(path: str, data: Dict) -> Dict:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return data


def make_site(plan: Plan) -> Dict:
    done = _done(os.path.join(plan.site, "site.json"))
    if done:
        return done
    cmd = [sys.executable, "-m", "ian_d2.data.synthetic", "--format", "target-site"]
    cmd += ["--size", plan.size, "--seed", str(plan.site_seed), "--out", plan.site]
    cmd += ["--sample-fps", str(plan.protocol_fps)]
    _run(plan, cmd, os.path.join(plan.work, "logs", "site.log"))
    return _done(os.path.join(plan.site, "site.json"))


def _videos(plan: Plan) -> List[str]:
    test = os.path.join(plan.site, "test")
    return sorted(os.path.join(test, f) for f in os.listdir(test) if f.endswith(".avi"))


def index_footage(plan: Plan) -> Dict:
    """The test footage indexed (and tracked) by the source model at the frames' own size."""
    out = os.path.join(plan.work, "index")
    record = os.path.join(plan.work, "index.json")
    done = _done(record)
    if done:
        return done
    cmd = [sys.executable, "-m", "ian_d2.search", "index", "--config-file", plan.config]
    cmd += ["--gallery", *_videos(plan), "--out", out, "--fps", str(plan.fps)]
    cmd += ["--resume"] if os.path.isdir(out) else []
    cmd += ["MODEL.WEIGHTS", plan.source_weights, *plan.test_opts]
    seconds = _run(plan, cmd, os.path.join(plan.work, "logs", "index.log"))
    return _save(record, {"index": out, "seconds": round(seconds, 1)})


def evaluate(plan: Plan, name: str, weights: str) -> Dict:
    """``train_net.py --eval-only`` of ``weights`` on the cross-camera protocol; the results
    and per-query scores (:mod:`.scoring`)."""
    from .scoring import per_query, rescore

    out = os.path.join(plan.work, "eval", name)
    record = os.path.join(out, "scores.json")
    done = _done(record)
    if done:
        return done
    if not os.path.isfile(os.path.join(out, PRED)):
        cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--eval-only"]
        cmd += ["--config-file", plan.config, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out]
        cmd += ["DATASETS.TRAIN", "()", "DATASETS.TEST", "('synthetic_target_test',)"]
        cmd += ["MODEL.REID.NUM_PIDS", "0", *plan.test_opts]
        _run(plan, cmd, os.path.join(plan.work, "logs", f"eval_{name}.log"))
    test = os.path.join(plan.site, "test")
    coco, protocol = os.path.join(test, "coco.json"), os.path.join(test, "protocol.json")
    rescored = rescore(
        os.path.join(out, PRED), coco, protocol, os.path.join(out, "rescore.json"), REPO
    )
    queries = per_query(os.path.join(out, PRED), coco, protocol, rescored)
    results = rescored["results"]
    return _save(
        record,
        {
            "name": name,
            "weights": weights,
            "search": results["search"],
            "detection": results.get("detection"),
            "queries": queries,
        },
    )


def train_oracle(plan: Plan, seed: int) -> str:
    """The source model fine-tuned on the site's own labeled train footage (as many iterations
    as an adaptation); its weights."""
    out = os.path.join(plan.work, f"oracle_s{seed}")
    final = os.path.join(out, "model_final.pth")
    if os.path.isfile(final):
        return final
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--resume"]
    cmd += ["--config-file", plan.config, "MODEL.WEIGHTS", plan.source_weights]
    cmd += ["DATASETS.TRAIN", "('synthetic_target_train',)", "DATASETS.TEST", "()"]
    cmd += ["MODEL.REID.NUM_PIDS", "0", "SOLVER.MAX_ITER", str(plan.rounds * plan.iters)]
    cmd += ["SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "OUTPUT_DIR", out]
    cmd += ["SEED", str(seed), *plan.train_opts, *plan.test_opts]
    seconds = _run(plan, cmd, os.path.join(plan.work, "logs", f"oracle_s{seed}.log"))
    _save(os.path.join(out, "seconds.json"), {"seconds": round(seconds, 1)})
    return final


def run_adapt(plan: Plan, mode: str, seed: int, curve: bool = False) -> Dict:
    """``python -m ian_d2.adapt`` with pseudo labels from ``mode``; with ``curve``, each round
    evaluated on the protocol (mAP over rounds)."""
    out = os.path.join(plan.work, f"adapt_{mode}_s{seed}")
    record = os.path.join(out, "driver.json")
    done = _done(record)
    if done:
        return done
    cmd = [sys.executable, "-m", "ian_d2.adapt", "--index", os.path.join(plan.work, "index")]
    cmd += ["--config-file", plan.config, "--output", out]
    cmd += ["MODEL.WEIGHTS", plan.source_weights, "SEED", str(seed)]
    cmd += ["ADAPT.PSEUDO_LABELS", mode, "ADAPT.ROUNDS", str(plan.rounds)]
    cmd += ["ADAPT.ITERS_PER_ROUND", str(plan.iters), "SOLVER.STEPS", "()"]
    cmd += ["SOLVER.WARMUP_ITERS", "0", *plan.adapt_opts, *plan.train_opts, *plan.test_opts]
    if curve:
        cmd += ["ADAPT.EVAL_EACH_ROUND", "True", "DATASETS.TEST", "('synthetic_target_test',)"]
    seconds = _run(plan, cmd, os.path.join(plan.work, "logs", f"adapt_{mode}_s{seed}.log"))
    with open(os.path.join(out, "adapt_manifest.json")) as f:
        manifest = json.load(f)
    rounds = []
    for r in range(plan.rounds):
        res = _done(os.path.join(out, f"round_{r:02d}", RESULTS))
        if res is not None:
            rounds.append({"round": r, "search": res["results"]["search"]})
    return _save(
        record,
        {
            "mode": mode,
            "seed": seed,
            "seconds": round(seconds, 1),
            "weights": os.path.join(out, "model_final.pth"),
            "pseudo_labels": [e["pseudo_labels"] for e in manifest["rounds"]],
            "curve": rounds,
        },
    )


def reembed(plan: Plan, name: str, weights: str) -> Dict:
    """The indexed footage re-embedded with ``weights`` (``search reembed``)."""
    out = os.path.join(plan.work, f"index_{name}")
    record = out + ".json"
    done = _done(record)
    if done:
        return done
    cmd = [sys.executable, "-m", "ian_d2.search", "reembed", os.path.join(plan.work, "index")]
    cmd += ["--out", out, "--config-file", plan.config, "MODEL.WEIGHTS", weights]
    cmd += list(plan.test_opts)
    seconds = _run(plan, cmd, os.path.join(plan.work, "logs", f"reembed_{name}.log"))
    return _save(record, {"index": out, "seconds": round(seconds, 1)})


def eval_tracks(plan: Plan, name: str, index: str) -> Dict:
    """``search eval-tracks``: tracking (IDF1, HOTA) and per-track vs per-detection search."""
    out = os.path.join(plan.work, "tracks", f"{name}.json")
    done = _done(out)
    if done:
        return done
    os.makedirs(os.path.dirname(out), exist_ok=True)
    annotations = os.path.join(plan.site, "test", "annotations.json")
    cmd = [sys.executable, "-m", "ian_d2.search", "eval-tracks", index]
    cmd += ["--annotations", annotations, "--output", out]
    _run(plan, cmd, os.path.join(plan.work, "logs", f"tracks_{name}.log"))
    return _done(out)
