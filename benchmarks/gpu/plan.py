"""The steps of the GPU check (``benchmarks/gpu_check.py``), most important first: their names,
time limits, kinds ("env", "parity" or "bench": ``bench_model.py`` arguments) and arguments, on
a GPU (R-50 / R-101 at 900x1500) or ``--smoke`` (the quick R-18-GN config at 96x128 on the CPU).
"""

import os
from typing import List, NamedTuple

__all__ = ["QUICK", "R101", "R50", "REPO", "Step", "plan"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
R50 = os.path.join(REPO, "configs", "IAN_R50.yaml")
R101 = os.path.join(REPO, "configs", "IAN_R101.yaml")
QUICK = os.path.join(REPO, "configs", "quick_schedules", "IAN_R18_GN_instant_test.yaml")


class Step(NamedTuple):
    """One step of the check: ``kind`` "env", "parity" or "bench" (bench_model.py arguments)."""

    name: str
    timeout_s: int
    kind: str
    argv: List[str]


def plan(smoke: bool = False) -> List[Step]:
    """The steps, most important first (the runner skips the last ones if time runs out)."""
    if smoke:
        tiny = ["--device", "cpu", "--warmup", "0", "--iters", "1", "--num-pids", "10"]
        return [
            Step("env", 60, "env", []),
            Step(
                "parity",
                60,
                "parity",
                ["--config", QUICK, "--size", "96", "128", "--device-b", "cpu", "--num-pids", "10"],
            ),
            Step(
                "infer_quick",
                60,
                "bench",
                ["--config", QUICK, "--size", "96", "128", "--batch", "1", "--amp", "0"]
                + ["--skip-train"]
                + tiny,
            ),
            Step(
                "train_quick",
                60,
                "bench",
                ["--config", QUICK, "--train-size", "96", "128", "--train-batch", "2"]
                + ["--skip-inference"]
                + tiny,
            ),
        ]
    gpu = ["--device", "cuda", "--warmup", "2", "--iters", "5", "--num-pids", "5532"]
    infer = ["--size", "900", "1500", "--batch", "1", "4", "--amp", "0", "1", "--skip-train"]
    train = ["--train-size", "900", "1500", "--train-batch", "2", "5", "--skip-inference"]
    return [
        Step("env", 45, "env", []),
        Step(
            "parity",
            120,
            "parity",
            ["--config", R50, "--size", "480", "800", "--device-b", "cuda", "--num-pids", "5532"],
        ),
        Step("infer_R50", 120, "bench", ["--config", R50] + infer + gpu),
        Step("infer_R101", 120, "bench", ["--config", R101] + infer + gpu),
        Step("train_R101", 120, "bench", ["--config", R101] + train + gpu),
        Step("train_R50", 120, "bench", ["--config", R50] + train + gpu),
    ]
