"""Measure the adaptation on the synthetic target site: direct transfer vs adapted vs oracle.

    python -m projects.adaptation.run --work output/adaptation --size default \\
        [--seeds 0 1 2] [--modes both tracks clusters] [--ablation-seeds 0] \\
        [--report-dir benchmarks/adaptation]

Needs the demo model (``make demo``: ``output/synthetic/step3/model_final.pth``) and its
training set under ``--datasets`` (``datasets/cuhk_sysu_synth``). Steps (each skipped when its
output exists: the command resumes): the target site; its test footage indexed with tracks by the
source model; the source model evaluated on the site's cross-camera protocol (direct transfer);
per seed, an oracle fine-tuned on the site's labeled train footage and, per pseudo-label mode, an
adaptation on the indexed test footage (no labels), each evaluated; the footage re-embedded with
the first adapted model, tracking and per-track search against the ground truth; the quality of
the pseudo boxes, tracks and pseudo identities against the ground truth (``quality.py``); the report
(``adaptation.json``, ``adaptation.md``, ``adaptation_rounds.png``).
"""

import argparse
import glob
import logging
import os
import sys
from typing import Dict

from .plan import MODES, REPO, SIZES, SOURCE_WEIGHTS, make_plan
from .quality import pseudo_label_quality
from .report import build_report, plot_rounds, write
from .steps import eval_tracks, evaluate, index_footage, make_site, reembed, run_adapt
from .steps import train_oracle

__all__ = ["main"]

logger = logging.getLogger("ian_d2.adaptation")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=os.path.join(REPO, "output", "adaptation"))
    p.add_argument("--size", choices=sorted(SIZES), default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--ablation-seeds", type=int, nargs="+", default=None,
                   help="the seeds of the modes after the first (default: --seeds)")  # fmt: skip
    p.add_argument("--datasets", default=os.path.join(REPO, "datasets"))
    p.add_argument("--source-weights", default=SOURCE_WEIGHTS)
    p.add_argument("--report-dir", default=None, help="default: WORK/report")
    p.add_argument("--adapt-opts", nargs="*", default=[],
                   help="more config overrides of the adaptations (KEY VALUE ...)")  # fmt: skip
    return p.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if not os.path.isfile(args.source_weights):
        raise SystemExit(f"no source model '{args.source_weights}': run `make demo` first")
    plan = make_plan(args.work, args.size, args.datasets, args.source_weights)
    plan.adapt_opts += list(args.adapt_opts)
    os.makedirs(plan.work, exist_ok=True)
    site = make_site(plan)
    index = index_footage(plan)
    direct = evaluate(plan, "direct", plan.source_weights)
    oracle = [evaluate(plan, f"oracle_s{s}", train_oracle(plan, s)) for s in args.seeds]
    adapted, runs = {}, {}
    for mode in args.modes:
        seeds = args.seeds if mode == args.modes[0] else (args.ablation_seeds or args.seeds)
        for seed in seeds:
            first = mode == args.modes[0] and seed == args.seeds[0]
            run = run_adapt(plan, mode, seed, curve=first)
            runs[f"{mode}_s{seed}"] = run
            score = evaluate(plan, f"adapt_{mode}_s{seed}", run["weights"])
            adapted.setdefault(mode, []).append(score)
    first = f"{args.modes[0]}_s{args.seeds[0]}"
    new_index = reembed(plan, f"adapt_{first}", runs[first]["weights"])
    tracks = {
        "direct": eval_tracks(plan, "direct", index["index"]),
        f"adapt_{first}": eval_tracks(plan, f"adapt_{first}", new_index["index"]),
    }
    quality = pseudo_label_quality(
        index["index"],
        os.path.join(plan.site, "test", "annotations.json"),
        {
            name: sorted(
                glob.glob(os.path.join(plan.work, f"adapt_{name}", "round_*", "pseudo_labels.npy"))
            )
            for name in runs
        },
    )
    extra = {
        "pseudo_quality": quality,
        "size": args.size,
        "seeds": args.seeds,
        "site": {k: site.get(k) for k in ("size", "seed", "test", "train", "sample_fps")},
        "seconds": {
            "index": index["seconds"],
            "adapt": {k: r["seconds"] for k, r in runs.items()},
            "reembed": new_index["seconds"],
        },
        "pseudo_labels": {k: r["pseudo_labels"] for k, r in runs.items()},
        "curve": runs[first]["curve"],
        "tracks": tracks,
    }
    report = build_report(direct, oracle, adapted, extra)
    folder = args.report_dir or os.path.join(plan.work, "report")
    write(report, folder)
    if report["curve"]:
        plot_rounds(
            report["curve"],
            report["variants"]["mAP"]["direct"]["mean"],
            report["variants"]["mAP"]["oracle"]["mean"],
            os.path.join(folder, "adaptation_rounds.png"),
        )
    logger.info("Report written to %s", folder)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(sys.argv[1:])
