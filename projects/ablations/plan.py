"""The plan of the ablation runs: IAN's settings and the variants that each change one of them,
the configs and their schedules (scaled for ``--quick``), and every run of every seed in
execution order (step 1, step 2, the variants), each with its folder, config and opts.

A :class:`Run` also knows whether it is finished (its ``ablation_run.json``) with the same
settings; :mod:`projects.ablations.run` executes the plan.
"""

import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from projects.ablations.records import RUN_FILE, read_json

__all__ = [
    "IAN_OPTS",
    "QUICK",
    "QUICK_OPTS",
    "REPO",
    "STEP1",
    "STEP2",
    "STEP3",
    "STEP2_LABEL",
    "VARIANTS",
    "Run",
    "plan",
    "schedule_opts",
    "schedule_text",
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG_DIR = os.path.join(REPO, "configs", "Synthetic", "ablations")
STEP1 = os.path.join(CONFIG_DIR, "step1_crop_pretrain.yaml")
STEP2 = os.path.join(CONFIG_DIR, "step2_det_rss.yaml")
STEP3 = os.path.join(CONFIG_DIR, "step3_variant.yaml")

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
        old = read_json(self.marker).get("spec")
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


def schedule_text(scale: float) -> str:
    """The iterations of step 1, step 2 and each variant at ``scale``, as the report states."""
    its = [schedule_opts(c, scale)["SOLVER.MAX_ITER"] for c in (STEP1, STEP2, STEP3)]
    return f"step 1 {its[0]}, step 2 {its[1]}, each variant {its[2]} iterations"
