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

This module writes the report (:func:`write_report`) and is its command line; the steps live in
:mod:`.records` (the runs' ``ablation_run.json``), :mod:`.tables` (the paper's tables and
contrasts), :mod:`.bootstrap` (the statistics: how the intervals are computed),
:mod:`.aggregate` (``results.json``), :mod:`.markdown` (``results.md``) and :mod:`.figures` (the
plots). Their public names are re-exported here, the import path they had before the split.

Usage: ``python -m projects.ablations.report --runs output/ablations --out docs/ablations`` from the
repository root (projects/ablations/run.py calls it at the end).
"""

import argparse
import json
import logging
import os
from typing import Optional, Sequence

from projects.ablations.aggregate import build_report
from projects.ablations.bootstrap import bootstrap_indices, contrast, summarize
from projects.ablations.figures import plot_figures
from projects.ablations.markdown import render_markdown
from projects.ablations.records import RUN_FILE, load_runs, read_records, run_seconds, runs_meta
from projects.ablations.tables import PAPER, main_protocol

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
