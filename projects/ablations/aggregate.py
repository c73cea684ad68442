"""The statistics of the ablation runs, the content of ``results.json``: for every variant and
gallery size, mAP and top-1 as the mean over seeds with a 95% bootstrap interval over queries
(:mod:`projects.ablations.bootstrap`), the per-seed values and their spread; the paired
differences ("contrasts") the paper's claims are about (:data:`projects.ablations.tables.TABLES`);
and the detection AP / recall.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from projects.ablations.bootstrap import bootstrap_indices, contrast, summarize
from projects.ablations.tables import METRICS, REFERENCE, TABLES, protocol_order, table_order

__all__ = ["build_report", "find_contrast"]

logger = logging.getLogger("ian_d2.ablation_report")


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
        runs: from :func:`projects.ablations.records.load_runs`.
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
        variants = [v for v in table_order() if v in found]
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
    protocols = sorted(first["per_query"], key=protocol_order)
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


def find_contrast(report: dict, a: str, b: str, p: str) -> Optional[dict]:
    """The contrast A - B at protocol ``p`` of a :func:`build_report`, None if absent."""
    for c in report["contrasts"]:
        if (c["a"], c["b"], c["protocol"]) == (a, b, p):
            return c
    return None


def _complete_seeds(runs: Dict[Tuple[int, str], dict], variants: Sequence[str]) -> List[int]:
    seeds = sorted({s for s, _ in runs})
    return [s for s in seeds if all((s, v) in runs for v in variants)]
