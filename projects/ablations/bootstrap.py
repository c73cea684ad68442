"""The report's statistics: bootstrap confidence intervals over queries, and paired differences.

Let ``x[s, q]`` be the AP (or top-1 hit) of query ``q`` in the run of seed ``s``. The point
estimate of a variant is ``mean_s mean_q x[s, q]`` (the mean over seeds of the per-seed mAP). A
bootstrap resample draws Q queries with replacement (one draw shared by every variant, seed and
gallery size: the resamples are *paired*) and recomputes that mean; the 95% interval is the 2.5
and 97.5 percentiles over the resamples (``--resamples``, fixed RNG seed). A contrast ``A - B``
is resampled the same way, pairing the queries and the seeds. The interval is over the test
queries with the trained models fixed; the training noise is shown beside it as the per-seed
values (and, for a contrast, in how many seeds A beats B).
"""

from typing import Dict, Tuple

import numpy as np

__all__ = ["bootstrap_indices", "contrast", "summarize"]


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


def _boot_means(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] mean over seeds of the per-seed mean over each resample of the queries."""
    per_query = values.mean(axis=0)  # the mean over seeds is linear: average the seeds first
    return counts @ per_query / values.shape[1]


def _interval(samples: np.ndarray, level: float) -> Tuple[float, float]:
    lo, hi = np.percentile(samples, [50.0 * (1 - level), 50.0 * (1 + level)])
    return float(lo), float(hi)
