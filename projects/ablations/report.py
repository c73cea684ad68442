#!/usr/bin/env python
"""Aggregate the ablation runs (projects/ablations/run.py): bootstrap intervals, JSON, Markdown, plots.

Every finished run of the runner leaves ``<runs>/seed{S}/{variant}/ablation_run.json`` with
its per-query average precision and top-1 hit for every gallery size (the same test queries in
every run). This module turns them into

* ``results.json``: for every variant and gallery size, mAP and top-1 as the mean over seeds,
  a 95% confidence interval from a bootstrap over queries, the per-seed values and their
  standard deviation; and the paired differences ("contrasts") the paper's claims are about;
* ``results.md``: the paper's ablations as Markdown tables (Table I, Fig. 4, Table II,
  Tables III/IV, Fig. 5);
* ``fig4_lambda.png`` (mAP / top-1 / difference against lambda) and ``fig5_gallery.png`` (mAP
  against gallery size), with their intervals.

Statistics. Let ``x[s, q]`` be the AP (or top-1 hit) of query ``q`` in the run of seed ``s``.
The point estimate of a variant is ``mean_s mean_q x[s, q]`` (the mean over seeds of the
per-seed mAP). A bootstrap resample draws Q queries with replacement (one draw shared by every
variant, seed and gallery size: the resamples are *paired*) and recomputes that mean; the 95%
interval is the 2.5 and 97.5 percentiles over the resamples (``--resamples``, fixed RNG seed).
A contrast ``A - B`` is resampled the same way, pairing the queries and the seeds. The interval
is over the test queries with the trained models fixed; the training noise is shown beside it
as the per-seed values (and, for a contrast, in how many seeds A beats B).

Usage: ``python -m projects.ablations.report --runs output/ablations --out docs/ablations`` from the
repository root (projects/ablations/run.py calls it at the end).
"""

import argparse
import glob
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "RUN_FILE",
    "PAPER",
    "bootstrap_indices",
    "main_protocol",
    "summarize",
    "contrast",
    "read_records",
    "load_runs",
    "run_seconds",
    "runs_meta",
    "build_report",
    "render_markdown",
    "plot_figures",
    "write_report",
    "main",
]

logger = logging.getLogger("ian_d2.ablation_report")

RUN_FILE = "ablation_run.json"
METRICS = ("mAP", "top-1")
REFERENCE = "step2"  # the shared step-2 model, reported beside the variants

# The paper's numbers (IAN, Xiao et al. 2019; real CUHK-SYSU, ResNet-101, gallery 100) for the
# rows of the tables, "mAP / top-1". docs/protocols.md lists only IAN's final result; the
# ablation tables' own numbers are not in the project's references, so they are left "—".
PAPER: Dict[str, str] = {
    "lambda_0.032": "77.2 / 80.5 (IAN's final result, protocols.md)",
}

# The paper's ablations: the variants of each table and the contrasts (A - B) that its claims
# are about. Variants and contrasts whose runs are absent are left out of the report.
TABLES: Tuple[Tuple[str, str, Tuple[str, ...], Tuple[Tuple[str, str], ...]], ...] = (
    (
        "Table I: the center loss (E2E-PS, lambda = 0, against IAN, lambda = 0.032)",
        "table1",
        ("step2", "lambda_0", "lambda_0.032"),
        (
            ("lambda_0.032", "lambda_0"),
            ("lambda_0", "step2"),
            ("lambda_0.032", "step2"),
        ),
    ),
    (
        "Fig. 4: the center-loss weight lambda",
        "fig4",
        (
            "lambda_0",
            "lambda_0.008",
            "lambda_0.016",
            "lambda_0.032",
            "lambda_0.064",
            "lambda_0.128",
        ),
        (
            ("lambda_0.008", "lambda_0"),
            ("lambda_0.016", "lambda_0"),
            ("lambda_0.032", "lambda_0"),
            ("lambda_0.064", "lambda_0"),
            ("lambda_0.128", "lambda_0"),
        ),
    ),
    (
        "Table II: which boxes feed the center loss (ground truth only, or every positive box)",
        "table2",
        ("lambda_0.032", "all_pos"),
        (("all_pos", "lambda_0.032"),),
    ),
    (
        "Tables III/IV: dropout (rate 0.5) before the embedding, without and with the center loss",
        "table3_4",
        ("lambda_0", "dropout_lambda_0", "lambda_0.032", "dropout_lambda_0.032"),
        (
            ("dropout_lambda_0", "lambda_0"),
            ("dropout_lambda_0.032", "lambda_0.032"),
            ("lambda_0.032", "lambda_0"),
            ("dropout_lambda_0.032", "dropout_lambda_0"),
        ),
    ),
)
FIG5_VARIANTS = ("step2", "lambda_0", "lambda_0.032")
NOTES = {
    "Table I": (
        "λ = 0 − step 2 is what the variants' 300 extra iterations bring without the center "
        "loss; λ = 0.032 − step 2 is the comparison of the demo's step 3 with its step 2, which "
        "mixes both; λ = 0.032 − λ = 0 is the center loss alone."
    ),
}


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def bootstrap_indices(num_queries: int, resamples: int, seed: int = 0) -> np.ndarray:
    """Query counts of ``resamples`` bootstrap resamples (Q queries drawn with replacement).

    Args:
        num_queries: Q.
        resamples: B.
        seed: RNG seed (numpy ``default_rng``).

    Returns:
        [B, Q] int64: how many times each query is drawn in each resample (rows sum to Q).
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num_queries, size=(resamples, num_queries))
    counts = np.zeros((resamples, num_queries), np.int64)
    np.add.at(counts, (np.repeat(np.arange(resamples), num_queries), idx.reshape(-1)), 1)
    return counts


def _interval(samples: np.ndarray, level: float) -> Tuple[float, float]:
    lo, hi = np.percentile(samples, [50.0 * (1 - level), 50.0 * (1 + level)])
    return float(lo), float(hi)


def _boot_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] mean over seeds of the per-seed mean over each resample of the queries."""
    per_query = values.mean(axis=0)  # the mean over seeds is linear: average the seeds first
    return counts @ per_query / values.shape[1]


def summarize(values: np.ndarray, counts: np.ndarray, level: float = 0.95) -> Dict[str, object]:
    """Mean over seeds of the mean over queries, its bootstrap interval and the seeds' spread.

    Args:
        values: [S, Q] per-query values (AP in [0, 1] or top-1 hits 0/1) of S seeds; the same
            Q queries in every row, no NaN.
        counts: [B, Q] bootstrap resamples from :func:`bootstrap_indices`.
        level: interval level.

    Returns:
        ``{"mean", "ci": [low, high], "per_seed": [S], "seed_sd"}`` on a 0-100 scale
        (``seed_sd`` is the sample standard deviation over seeds, 0 for one seed).
    """
    values = np.asarray(values, np.float64)
    per_seed = 100.0 * values.mean(axis=1)
    boot = 100.0 * _boot_means(values, counts)
    return {
        "mean": float(per_seed.mean()),
        "ci": list(_interval(boot, level)),
        "per_seed": [float(v) for v in per_seed],
        "seed_sd": float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0,
    }


def contrast(
    a: np.ndarray, b: np.ndarray, counts: np.ndarray, level: float = 0.95
) -> Dict[str, object]:
    """Paired difference A - B: the same seeds and, in every resample, the same queries.

    Args:
        a: [S, Q] per-query values of variant A.
        b: [S, Q] per-query values of variant B (the same seeds and queries, in the same order).
        counts: [B, Q] bootstrap resamples.
        level: interval level.

    Returns:
        ``{"mean", "ci": [low, high], "per_seed": [S], "seeds_positive", "p_boot_le_0"}`` on a
        0-100 scale: ``seeds_positive`` counts the seeds where A > B; ``p_boot_le_0`` is the
        fraction of resamples whose difference is <= 0 (a one-sided bootstrap p-value of
        "A > B" over queries).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values of different shapes: {a.shape} and {b.shape}")
    per_seed = 100.0 * (a.mean(axis=1) - b.mean(axis=1))
    boot = 100.0 * (_boot_means(a, counts) - _boot_means(b, counts))
    return {
        "mean": float(per_seed.mean()),
        "ci": list(_interval(boot, level)),
        "per_seed": [float(v) for v in per_seed],
        "seeds_positive": int((per_seed > 0).sum()),
        "p_boot_le_0": float((boot <= 0).mean()),
    }


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def read_records(runs_dir: str) -> List[dict]:
    """The ``ablation_run.json`` of every finished run under ``runs_dir`` (step 1 included)."""
    records = []
    for path in sorted(glob.glob(os.path.join(runs_dir, "seed*", "*", RUN_FILE))):
        with open(path) as f:
            records.append(json.load(f))
    return records


def load_runs(runs_dir: str, records: Optional[List[dict]] = None) -> Dict[Tuple[int, str], dict]:
    """Every finished, scored run: {(seed, variant): the run's ablation_run.json}.

    Args:
        runs_dir: the runner's output folder (read unless ``records`` is given).
        records: :func:`read_records` of that folder, already read.
    """
    records = read_records(runs_dir) if records is None else records
    return {(int(r["seed"]), str(r["variant"])): r for r in records if "per_query" in r}


def _protocol_order(key: str) -> Tuple[int, int]:
    size = int(key[1:]) if key.startswith("g") else -1
    return (size < 0, size)


def _table_order() -> List[str]:
    """The step-2 reference, the lambda sweep, then the other variants of :data:`TABLES`."""
    out = [REFERENCE] + list(TABLES[1][2])  # the step-2 model, the lambda sweep (Fig. 4)
    for _, _, rows, _ in TABLES:
        out += [v for v in rows if v not in out]
    return out


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


def _complete_seeds(runs: Dict[Tuple[int, str], dict], variants: Sequence[str]) -> List[int]:
    seeds = sorted({s for s, _ in runs})
    return [s for s in seeds if all((s, v) in runs for v in variants)]


def build_report(
    runs: Dict[Tuple[int, str], dict],
    variants: Optional[Sequence[str]] = None,
    resamples: int = 1000,
    rng_seed: int = 0,
    level: float = 0.95,
    meta: Optional[dict] = None,
) -> dict:
    """Statistics of the runs (the content of results.json).

    Only the seeds for which every variant (and the step-2 reference) finished are used, so
    that every mean and every contrast is over the same seeds.

    Args:
        runs: from :func:`load_runs`.
        variants: variants to report, in order (default: every variant found, in run order).
        resamples: bootstrap resamples B.
        rng_seed: seed of the bootstrap RNG.
        level: interval level.
        meta: extra facts for ``results.json["meta"]`` (schedule, wall time, ...).

    Returns:
        ``{"meta", "variants", "protocols", "metrics", "contrasts", "detection"}``.

    Raises:
        ValueError: no complete seed, or runs of different test sets / queries.
    """
    if variants is None:  # every variant found, in the order of the paper's tables
        found = {v for _, v in runs}
        variants = [v for v in _table_order() if v in found]
        variants += sorted(found - set(variants))
    variants = list(variants)
    wanted = variants + ([REFERENCE] if REFERENCE not in variants else [])
    seeds = _complete_seeds(runs, wanted)
    if not seeds:
        seeds = _complete_seeds(runs, variants)
        wanted = variants
    if not seeds:
        raise ValueError(f"no seed has a finished run of every variant {variants}")
    incomplete = sorted({s for s, _ in runs} - set(seeds))
    if incomplete:
        logger.warning("seeds %s are incomplete and left out of the report", incomplete)
    first = runs[(seeds[0], wanted[0])]
    protocols = sorted(first["per_query"], key=_protocol_order)
    for (s, v), run in runs.items():
        if s not in seeds or v not in wanted:
            continue
        for p in protocols:
            if run["per_query"][p]["query_index"] != first["per_query"][p]["query_index"]:
                raise ValueError(f"seed {s} {v}: other queries than seed {seeds[0]} for {p}")
    counts = {}
    proto_info = {}
    values: Dict[Tuple[str, str, str], np.ndarray] = {}
    for i, p in enumerate(protocols):
        pq = first["per_query"][p]
        valid = ~np.isnan(np.asarray(pq["ap"], np.float64))
        proto_info[p] = {
            "gallery_size": pq["gallery_size"],
            "n_queries": int(valid.sum()),
            "n_skipped": int((~valid).sum()),
        }
        # one draw per protocol, shared by every variant and seed (paired); a fixed RNG stream
        counts[p] = bootstrap_indices(int(valid.sum()), resamples, seed=[rng_seed, i])
        for v in wanted:
            for m, field in (("mAP", "ap"), ("top-1", "top1")):
                rows = [np.asarray(runs[(s, v)]["per_query"][p][field], np.float64) for s in seeds]
                values[(v, p, m)] = np.stack(rows)[:, valid]
    metrics = {
        v: {p: {m: summarize(values[(v, p, m)], counts[p], level) for m in METRICS}
            for p in protocols}
        for v in wanted
    }  # fmt: skip
    pairs = []
    for _, _, _, cons in TABLES:
        pairs += [c for c in cons if c not in pairs and c[0] in wanted and c[1] in wanted]
    for v in variants:
        if v != "lambda_0" and "lambda_0" in wanted and (v, "lambda_0") not in pairs:
            pairs.append((v, "lambda_0"))
    contrasts = []
    for a, b in pairs:
        for p in protocols:
            item = {"a": a, "b": b, "protocol": p}
            for m in METRICS:
                item[m] = contrast(values[(a, p, m)], values[(b, p, m)], counts[p], level)
            contrasts.append(item)
    detection = {}
    for v in wanted:
        det = [runs[(s, v)].get("detection", {}) for s in seeds]
        detection[v] = {
            k: {"mean": float(np.mean([d[k] for d in det])), "per_seed": [d[k] for d in det]}
            for k in ("AP", "recall")
            if all(k in d for d in det)
        }
    return {
        "meta": dict(
            meta or {},
            seeds=seeds,
            incomplete_seeds=incomplete,
            bootstrap={
                "resamples": resamples,
                "rng_seed": rng_seed,
                "level": level,
                "method": "percentile bootstrap over queries, paired across variants and seeds",
            },
        ),
        "variants": {
            v: {
                "label": runs[(seeds[0], v)].get("label", v),
                "opts": runs[(seeds[0], v)].get("opts", {}),
            }
            for v in wanted
        },
        "protocols": proto_info,
        "metrics": metrics,
        "contrasts": contrasts,
        "detection": detection,
    }


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _protocol_name(key: str, info: dict) -> str:
    size = info["gallery_size"]
    return f"gallery {size}" if size > 0 else "full pool"


def main_protocol(protocols: Dict[str, object]) -> str:
    """The protocol of the tables: gallery 100 (CUHK-SYSU's default), else the smallest."""
    return "g100" if "g100" in protocols else sorted(protocols, key=_protocol_order)[0]


def _fmt_ci(s: dict, signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(s['mean'])} [{f.format(s['ci'][0])}, {f.format(s['ci'][1])}]"


def _fmt_seeds(s: dict, signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return ", ".join(f.format(v) for v in s["per_seed"])


def _find_contrast(report: dict, a: str, b: str, p: str) -> Optional[dict]:
    for c in report["contrasts"]:
        if (c["a"], c["b"], c["protocol"]) == (a, b, p):
            return c
    return None


def render_markdown(report: dict) -> str:
    """The paper's ablations as Markdown tables (the content of results.md)."""
    meta, protos, metrics = report["meta"], report["protocols"], report["metrics"]
    labels = {v: d["label"] for v, d in report["variants"].items()}
    main = main_protocol(protos)
    n_q = protos[main]["n_queries"]
    seeds = meta["seeds"]
    boot = meta["bootstrap"]
    out = ["# IAN's ablations on the synthetic CUHK-SYSU", ""]
    out.append(
        f"Generated by `projects/ablations/run.py` ({meta.get('command', 'make ablations')}). "
        f"Seeds {', '.join(map(str, seeds))}; {n_q} test queries "
        f"({meta.get('dataset', 'synthetic CUHK-SYSU')}); "
        f"schedules: {meta.get('schedule', '—')}; device: {meta.get('device', '—')}; "
        f"compute wall time: {meta.get('compute_hours', '—')} h."
    )
    out.append("")
    out.append(
        "How to read: a value is the mean over the seeds of the per-seed mAP (or top-1), "
        f"with its {int(round(100 * boot['level']))}% confidence interval in brackets: a "
        f"percentile bootstrap over the {n_q} queries ({boot['resamples']} resamples, RNG seed "
        f"{boot['rng_seed']}), paired across variants and seeds. The interval covers the choice "
        "of test queries with the trained models fixed; the training noise shows in the "
        "per-seed values. A difference A − B is paired (same seeds, same queries, same "
        "step-2 model, same schedule); 'seeds A > B' counts the seeds where A wins. Every "
        "variant is a continuation of its seed's step-2 model with the same schedule and "
        "seed, and differs from IAN (λ = 0.032, ground-truth boxes, no dropout) in the "
        "one setting its name says."
    )
    out.append("")
    out.append(
        "The paper's numbers are on the real CUHK-SYSU with ResNet-101 (gallery 100); these "
        "runs are a CPU-sized ResNet-18 on synthetic data, so compare the direction and size of "
        "the differences, not the values. '—': the number is not in the project's references "
        "(docs/protocols.md)."
    )
    for title, _, rows, cons in TABLES:
        rows = [v for v in rows if v in metrics]
        cons = [c for c in cons if c[0] in metrics and c[1] in metrics]
        if not rows:
            continue
        out += ["", f"## {title}", "", f"{_protocol_name(main, protos[main])}, {n_q} queries.", ""]
        out.append(
            "| variant | mAP [95% CI] | top-1 [95% CI] | mAP per seed | top-1 per seed "
            "| paper mAP / top-1 |"
        )
        out.append("|---|---|---|---|---|---|")
        for v in rows:
            s = metrics[v][main]
            out.append(
                f"| {labels[v]} | {_fmt_ci(s['mAP'])} | {_fmt_ci(s['top-1'])} | "
                f"{_fmt_seeds(s['mAP'])} | {_fmt_seeds(s['top-1'])} | {PAPER.get(v, '—')} |"
            )
        if cons:
            out += ["", _contrast_header(), "|---|---|---|---|---|"]
            for a, b in cons:
                out.append(_contrast_row(report, a, b, main, labels))
        note = NOTES.get(title.split(":")[0])
        if note and cons:
            out += ["", note]
    out += ["", "## Fig. 5: mAP against gallery size", ""]
    sizes = sorted(protos, key=_protocol_order)
    out.append("| variant | " + " | ".join(_protocol_name(p, protos[p]) for p in sizes) + " |")
    out.append("|---|" + "---|" * len(sizes))
    for v in metrics:
        out.append(
            f"| {labels[v]} | " + " | ".join(_fmt_ci(metrics[v][p]["mAP"]) for p in sizes) + " |"
        )
    if "lambda_0.032" in metrics and "lambda_0" in metrics:
        out.append(
            f"| Δ {labels['lambda_0.032']} − {labels['lambda_0']} | "
            + " | ".join(
                _fmt_ci(_find_contrast(report, "lambda_0.032", "lambda_0", p)["mAP"], True)
                for p in sizes
            )
            + " |"
        )
    full = [p for p in sizes if protos[p]["gallery_size"] < 0]
    if full:
        out.append("")
        out.append(
            f"The full pool: every one of the {meta.get('pool_images', '—')} test images. "
            "Scored from each run's saved predictions with `python -m ian_d2.evaluation.rescore`."
        )
    det = report.get("detection", {})
    if det:
        out += ["", "## Detection (gallery images, AP / recall at IoU 0.5)", ""]
        out += ["| variant | AP | recall | AP per seed |", "|---|---|---|---|"]
        for v, d in det.items():
            if "AP" in d:
                out.append(
                    f"| {labels[v]} | {d['AP']['mean']:.1f} | {d['recall']['mean']:.1f} | "
                    + ", ".join(f"{x:.1f}" for x in d["AP"]["per_seed"])
                    + " |"
                )
    out += ["", "![Fig. 4](fig4_lambda.png)", "", "![Fig. 5](fig5_gallery.png)", ""]
    return "\n".join(out)


def _contrast_header() -> str:
    return (
        "| difference A − B | Δ mAP [95% CI] | Δ top-1 [95% CI] | Δ mAP per seed "
        "| seeds with A > B (mAP) |"
    )


def _contrast_row(report: dict, a: str, b: str, p: str, labels: Dict[str, str]) -> str:
    c = _find_contrast(report, a, b, p)
    n = len(c["mAP"]["per_seed"])
    return (
        f"| {labels[a]} − {labels[b]} | {_fmt_ci(c['mAP'], True)} | "
        f"{_fmt_ci(c['top-1'], True)} | {_fmt_seeds(c['mAP'], True)} | "
        f"{c['mAP']['seeds_positive']} of {n} |"
    )


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_figures(report: dict, out_dir: str) -> List[str]:
    """Fig. 4 (lambda sweep) and Fig. 5 (gallery size) as PNG files; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, protos = report["metrics"], report["protocols"]
    main = main_protocol(protos)
    written = []
    lambdas = [v for v in TABLES[1][2] if v in metrics]
    if lambdas:
        xs = np.arange(len(lambdas))
        ticks = [v.split("_", 1)[1] for v in lambdas]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, m in zip(axes[:2], METRICS):
            _errorbars(ax, xs, [metrics[v][main][m] for v in lambdas], "C0")
            ax.set_ylabel(f"{m} (%)")
        ref = [_find_contrast(report, v, "lambda_0", main) for v in lambdas[1:]]
        if "lambda_0" in lambdas and all(ref):
            _errorbars(axes[2], xs[1:], [c["mAP"] for c in ref], "C3")
            axes[2].axhline(0.0, color="k", lw=0.8)
            axes[2].set_ylabel("mAP − mAP(λ = 0) (points)")
        for ax in axes:
            ax.set_xticks(xs)
            ax.set_xticklabels(ticks)
            ax.set_xlabel("center-loss weight λ")
            ax.grid(alpha=0.3)
        n = len(report["meta"]["seeds"])
        fig.suptitle(
            f"Fig. 4 on synthetic CUHK-SYSU ({_protocol_name(main, protos[main])}, "
            f"{protos[main]['n_queries']} queries): mean of {n} seed{'s' if n != 1 else ''} "
            "(line), seeds (dots), "
            "95% bootstrap CI over queries (bars)",
            fontsize=9,
        )
        fig.tight_layout()
        path = os.path.join(out_dir, "fig4_lambda.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    sizes = sorted(protos, key=_protocol_order)
    pool = report["meta"].get("pool_images")
    gx = [protos[p]["gallery_size"] if protos[p]["gallery_size"] > 0 else pool for p in sizes]
    if all(x is not None for x in gx):
        pair = ("lambda_0.032", "lambda_0")
        with_diff = pair[0] in metrics and pair[1] in metrics
        fig, axes = plt.subplots(1, 2 if with_diff else 1, figsize=(11 if with_diff else 6.5, 4.2))
        ax = axes[0] if with_diff else axes
        for k, v in enumerate(x for x in FIG5_VARIANTS if x in metrics):
            s = [metrics[v][p]["mAP"] for p in sizes]
            mean = np.array([d["mean"] for d in s])
            lo = np.array([d["ci"][0] for d in s])
            hi = np.array([d["ci"][1] for d in s])
            label = report["variants"][v]["label"]
            ax.plot(gx, mean, "o", color=f"C{k}", label=label, ls="--" if v == REFERENCE else "-")
            ax.fill_between(gx, lo, hi, color=f"C{k}", alpha=0.2)
        ax.set_ylabel("mAP (%)")
        ax.legend(fontsize=8)
        ax.set_title("Fig. 5 on synthetic CUHK-SYSU: mAP against gallery size (95% CI)", fontsize=9)
        if with_diff:
            d = [_find_contrast(report, pair[0], pair[1], p)["mAP"] for p in sizes]
            _errorbars(axes[1], gx, d, "C3")
            axes[1].axhline(0.0, color="k", lw=0.8)
            axes[1].set_ylabel("mAP(λ = 0.032) − mAP(λ = 0) (points)")
            axes[1].set_title(
                "the center loss, paired difference (95% CI; dots: seeds)", fontsize=9
            )
        for a in axes if with_diff else [axes]:
            a.set_xscale("log")
            a.set_xticks(gx)
            a.set_xticklabels([str(x) if protos[p]["gallery_size"] > 0 else f"{x}\n(full)"
                               for x, p in zip(gx, sizes)])  # fmt: skip
            a.minorticks_off()
            a.set_xlabel("gallery size (images)")
            a.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, "fig5_gallery.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _errorbars(ax, xs, stats: List[dict], color: str) -> None:
    mean = np.array([s["mean"] for s in stats])
    err = np.array([[s["mean"] - s["ci"][0], s["ci"][1] - s["mean"]] for s in stats]).T
    ax.errorbar(xs, mean, yerr=err, fmt="o-", color=color, capsize=4)
    for x, s in zip(xs, stats):
        ax.plot([x] * len(s["per_seed"]), s["per_seed"], ".", color="0.4", ms=5)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def write_report(
    runs_dir: str,
    out_dir: str,
    variants: Optional[Sequence[str]] = None,
    resamples: int = 1000,
    rng_seed: int = 0,
    meta: Optional[dict] = None,
) -> dict:
    """Aggregate the runs under ``runs_dir`` into ``out_dir`` (results.json/.md, plots)."""
    records = read_records(runs_dir)
    meta = dict(runs_meta(records), **(meta or {}))
    report = build_report(
        load_runs(runs_dir, records), variants, resamples=resamples, rng_seed=rng_seed, meta=meta
    )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(render_markdown(report))
    plot_figures(report, out_dir)
    logger.info("report written to %s", out_dir)
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m projects.ablations.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", default="output/ablations", help="the runner's output folder")
    parser.add_argument("--out", default="docs/ablations", help="report folder")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--rng-seed", type=int, default=0, help="bootstrap RNG seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    meta = None
    old = os.path.join(args.out, "results.json")
    if os.path.isfile(old):  # keep what the runner knew (schedule, wall time)
        with open(old) as f:
            meta = {
                k: v
                for k, v in json.load(f).get("meta", {}).items()
                if k not in ("seeds", "incomplete_seeds", "bootstrap")
            }
    return write_report(args.runs, args.out, resamples=args.resamples, rng_seed=args.rng_seed,
                        meta=meta)  # fmt: skip


if __name__ == "__main__":
    main()
