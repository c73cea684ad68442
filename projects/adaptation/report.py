"""The report of the target-site measurement: direct transfer vs adapted vs oracle, with paired
bootstrap 95 % intervals over the queries (``projects.ablations.bootstrap``: one resample of the
queries shared by every variant and seed), the gap closed, the pseudo-label ablation, tracking
and per-track search, and the plot of mAP over rounds.
"""

import json
import os
from typing import Dict, List, Optional

import numpy as np

from projects.ablations.bootstrap import bootstrap_indices, contrast, summarize

__all__ = ["build_report", "plot_rounds", "render_markdown"]

RESAMPLES = 2000


def _values(scores: List[Dict], metric: str, order: List[int]) -> np.ndarray:
    """[S, Q] per-query AP (a skipped query: 0) or top-1 of the runs ``scores`` (one per seed),
    each of the queries ``order`` (the direct transfer's), in that order."""
    rows = []
    for s in scores:
        q = s["queries"]
        if q["query_index"] != order:
            raise ValueError(f"{s['name']}: other queries than the direct transfer's")
        key = "ap" if metric == "mAP" else "top1"
        rows.append([0.0 if v is None else v for v in q[key]])
    return np.asarray(rows, np.float64)


def _gap_closed(adapted, direct, oracle, counts) -> Optional[Dict]:
    """(adapted - direct) / (oracle - direct) of the mAP, with its bootstrap interval; None
    when the oracle is no better than the direct transfer (no gap to close)."""
    if oracle.mean() - direct.mean() <= 1e-9:
        return None

    def boot(v):
        return counts @ v.mean(axis=0) / v.shape[1]

    a, d, o = (boot(v) for v in (adapted, direct, oracle))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (a - d) / (o - d)
    point = (adapted.mean() - direct.mean()) / (oracle.mean() - direct.mean())
    lo, hi = np.nanpercentile(ratio, [2.5, 97.5])
    return {"mean": float(point), "ci": [float(lo), float(hi)]}


def build_report(
    direct: Dict,
    oracle: List[Dict],
    adapted: Dict[str, List[Dict]],
    extra: Optional[Dict] = None,
) -> Dict:
    """
    Args:
        direct: the source model's scores on the target (one run).
        oracle: the oracle's scores, one per seed.
        adapted: {mode: scores, one per seed (the oracle's seeds)}.
        extra: anything else to keep (tracks, times, curves).
    """
    num_queries = len(direct["queries"]["query_index"])
    counts = bootstrap_indices(num_queries, RESAMPLES)
    out = {"queries": num_queries, "resamples": RESAMPLES, "variants": {}, "contrasts": {}}
    seeds = len(oracle)
    order = direct["queries"]["query_index"]
    for metric in ("mAP", "top-1"):
        d = np.repeat(_values([direct], metric, order), seeds, axis=0)
        o = _values(oracle, metric, order)
        table = {"direct": summarize(d[:1], counts), "oracle": summarize(o, counts)}
        for mode, runs in adapted.items():
            a = _values(runs, metric, order)
            table[f"adapted_{mode}"] = summarize(a, counts)
            k = min(len(runs), seeds)
            out["contrasts"].setdefault(metric, {})[f"adapted_{mode} - direct"] = contrast(
                a[:k], d[:k], counts
            )
            if metric == "mAP":
                out.setdefault("gap_closed", {})[mode] = _gap_closed(a[:k], d[:k], o[:k], counts)
        out["contrasts"].setdefault(metric, {})["oracle - direct"] = contrast(o, d, counts)
        out["variants"][metric] = table
    out["detection"] = {
        "direct": direct.get("detection"),
        "oracle": [r.get("detection") for r in oracle],
        **{f"adapted_{m}": [r.get("detection") for r in runs] for m, runs in adapted.items()},
    }
    if extra:
        out.update(extra)
    return out


def _fmt(s: Dict) -> str:
    return f"{s['mean']:.1f} [{s['ci'][0]:.1f}, {s['ci'][1]:.1f}]"


def render_markdown(report: Dict) -> str:
    """The report's tables as Markdown."""
    lines = [
        f"{report['queries']} queries; 95 % paired bootstrap intervals over queries "
        f"({report['resamples']} resamples); means over seeds.",
        "",
        "| variant | mAP | top-1 | per seed (mAP) |",
        "|---|---|---|---|",
    ]
    for name, s in report["variants"]["mAP"].items():
        t = report["variants"]["top-1"][name]
        seeds = ", ".join(f"{v:.1f}" for v in s["per_seed"])
        lines.append(f"| {name} | {_fmt(s)} | {_fmt(t)} | {seeds} |")
    lines += ["", "| contrast | mAP | top-1 |", "|---|---|---|"]
    for name, c in report["contrasts"]["mAP"].items():
        t = report["contrasts"]["top-1"][name]
        lines.append(f"| {name} | {c['mean']:+.1f} [{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}] | "
                     f"{t['mean']:+.1f} [{t['ci'][0]:+.1f}, {t['ci'][1]:+.1f}] |")  # fmt: skip
    if "gap_closed" in report:
        lines += [
            "",
            "| pseudo labels | share of the direct-to-oracle mAP gap closed |",
            "|---|---|",
        ]
        for mode, g in report["gap_closed"].items():
            if g is None:
                lines.append(f"| {mode} | no gap: the oracle is not above the direct transfer |")
                continue
            lines.append(f"| {mode} | {100 * g['mean']:.0f} % [{100 * g['ci'][0]:.0f}, "
                         f"{100 * g['ci'][1]:.0f}] |")  # fmt: skip
    quality = report.get("pseudo_quality")
    if quality:
        first = next(iter(quality.values()))
        boxes = ", ".join(f">= {t}: {100 * v:.0f} %" for t, v in first["box_precision"].items())
        lines += [
            "",
            f"Ground truth on the raw material: of the index's {first['detections']} detections, "
            f"those covering a person (IoU >= 0.5) by score {boxes}; track purity "
            f"{100 * (first['track_purity'] or 0):.0f} % over {first['tracks']} tracks.",
            "",
            "| run | round | pseudo identities | outliers | pair precision | pair recall | "
            "cross-camera pair recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, q in quality.items():
            for r, p in enumerate(q["pseudo_identities"]):
                lines.append(
                    f"| {name} | {r} | {p['identities']} | {p['outliers']} | "
                    f"{p['pair_precision']:.3f} | {p['pair_recall']:.3f} | "
                    f"{p['cross_camera_pair_recall']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def plot_rounds(curve: List[Dict], direct: float, oracle: float, path: str) -> None:
    """mAP after each round (round 0 = the source model), with the oracle's level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + [c["round"] + 1 for c in curve]
    ys = [direct] + [c["search"]["mAP"] for c in curve]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, ys, "o-", label="adapted (tracks + clusters)")
    ax.axhline(oracle, color="grey", linestyle="--", label="oracle (target labels)")
    ax.axhline(direct, color="grey", linestyle=":", label="direct transfer")
    ax.set_xlabel("adaptation round")
    ax.set_ylabel("mAP (%)")
    ax.set_xticks(xs)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write(report: Dict, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "adaptation.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    with open(os.path.join(folder, "adaptation.md"), "w") as f:
        f.write(render_markdown(report))
