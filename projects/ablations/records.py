"""The runs' records: every finished run of the runner (:mod:`projects.ablations.run`) leaves
``<runs>/seed{S}/{variant}/ablation_run.json`` (:data:`RUN_FILE`), which the report reads.

This module holds the record files' name, their JSON reading and (atomic) writing, and what the
report takes from them: the finished runs, their wall time, and the facts a report made without
the runner (``python -m projects.ablations.report``) states (data set, schedules, device).
"""

import glob
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from projects.ablations.tables import REFERENCE

__all__ = [
    "RUN_FILE",
    "load_runs",
    "read_json",
    "read_records",
    "run_seconds",
    "runs_meta",
    "write_json",
]

RUN_FILE = "ablation_run.json"


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_json(path: str, obj) -> None:
    """Write JSON atomically (a temporary file renamed over the target)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_records(runs_dir: str) -> List[dict]:
    """The ``ablation_run.json`` of every finished run under ``runs_dir`` (step 1 included)."""
    return [
        read_json(path)
        for path in sorted(glob.glob(os.path.join(runs_dir, "seed*", "*", RUN_FILE)))
    ]


def load_runs(runs_dir: str, records: Optional[List[dict]] = None) -> Dict[Tuple[int, str], dict]:
    """Every finished, scored run: {(seed, variant): the run's ablation_run.json}.

    Args:
        runs_dir: the runner's output folder (read unless ``records`` is given).
        records: :func:`read_records` of that folder, already read.
    """
    records = read_records(runs_dir) if records is None else records
    return {(int(r["seed"]), str(r["variant"])): r for r in records if "per_query" in r}


def run_seconds(record: dict) -> float:
    """A run's wall time as the report counts it: training plus scoring, in seconds."""
    return record.get("train_seconds", 0.0) + record.get("score_seconds", 0.0)


def runs_meta(records: List[dict]) -> dict:
    """What the finished runs say about themselves, for a report made without the runner
    (``python -m projects.ablations.report``): data set, schedules, device, wall time.

    Args:
        records: :func:`read_records`; every run counts, step 1 included (the data generation
            does not: the runner adds it to the meta it passes).
    """
    if not records:
        return {}
    dataset = records[0].get("spec", {}).get("dataset", {})
    iters, seconds = {}, {}
    for r in records:
        name = r["variant"] if r["variant"] in ("step1", REFERENCE) else "variant"
        iters.setdefault(name, set()).add(r.get("opts", {}).get("SOLVER.MAX_ITER"))
        seconds.setdefault(name, []).append(run_seconds(r))
    compute = sum(sum(v) for v in seconds.values())
    order = {"step1": 0, REFERENCE: 1, "variant": 2}
    out = {
        "pool_images": dataset.get("test_images"),
        "dataset": (
            f"synthetic CUHK-SYSU, preset {dataset.get('preset')!r}: "
            f"{dataset.get('test_images')} test images, {dataset.get('queries')} queries of "
            "unseen identities"
        ),
        "schedule": ", ".join(
            f"{k.replace('step', 'step ')} {'/'.join(str(i) for i in sorted(v, key=str))}"
            for k, v in sorted(iters.items(), key=lambda kv: order[kv[0]])
        )
        + " iterations (the same for every variant)",
        "device": "/".join(sorted({str(r.get("opts", {}).get("MODEL.DEVICE")) for r in records})),
        "compute_seconds": round(compute, 1),
        "compute_hours": round(compute / 3600.0, 2),
        "finished_runs": len(records),
        # the median is robust to a run slowed by other jobs or paused (its wall time counts)
        "median_seconds_per_run": {k: round(float(np.median(v)), 1) for k, v in seconds.items()},
    }
    return out
