"""The report's plots: ``fig4_lambda.png`` (mAP / top-1 / difference against the center-loss
weight lambda) and ``fig5_gallery.png`` (mAP against gallery size), with their confidence
intervals and per-seed values (matplotlib, Agg backend).
"""

import os
from typing import List

import numpy as np

from projects.ablations.aggregate import find_contrast
from projects.ablations.tables import (
    FIG5_VARIANTS,
    METRICS,
    REFERENCE,
    TABLES,
    main_protocol,
    protocol_name,
    protocol_order,
)

__all__ = ["plot_figures"]


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
        ref = [find_contrast(report, v, "lambda_0", main) for v in lambdas[1:]]
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
            f"Fig. 4 on synthetic CUHK-SYSU ({protocol_name(main, protos[main])}, "
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
    sizes = sorted(protos, key=protocol_order)
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
            d = [find_contrast(report, pair[0], pair[1], p)["mAP"] for p in sizes]
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
