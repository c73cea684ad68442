"""The report of ``bench_serve``: the JSON's header (settings, the code measured, the machine and
versions), the index's integrity after the job (every row counted once against a reference index
of the job's files), and the goals of issue 20.
"""

import os
import platform
import subprocess
from collections import Counter
from typing import Dict, Sequence

import httpx
import numpy as np
import torch

from benchmarks.machine import cpu_model, load_avg, other_processes
from benchmarks.serve.stand_in import shard_rows
from ian_d2.search.shards import list_shards, read_shard_items, read_table

__all__ = ["check_integrity", "code_version", "finish", "goals", "header", "settings"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = ("quick", "rows", "clients", "kinds", "duration", "max_requests", "warmup", "top_k",
            "filtered", "model_calls", "fps", "videos", "vector_index", "video_size",
            "job_shard_size", "job_batch_size", "job_timeout", "no_job", "seed", "served_vectors",
            "rerank", "batch_window_ms", "batch_max", "model_batch_max")  # fmt: skip


def code_version() -> Dict:
    """The repository's commit and its uncommitted paths (what was measured)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        return {}
    return {"commit": commit or None, "uncommitted": [line[3:] for line in status]}


def settings(args) -> Dict:
    """The command line's settings (after the ``--quick`` / full defaults)."""
    return {k: getattr(args, k) for k in SETTINGS}


def header(args) -> Dict:
    """The JSON's first keys: what is measured, the settings, the code and the machine (its
    load and busy processes before the run)."""
    import fastapi
    import uvicorn

    return {
        "benchmark": "serve",
        "what": "the search service as a subprocess on 127.0.0.1 under concurrent HTTP clients "
        "(threads of the benchmark process, on the same machine), an indexing job appending "
        "meanwhile",
        "settings": settings(args),
        "code": code_version(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_before": load_avg(),
            "busy_processes_before": other_processes(),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "fastapi": fastapi.__version__,
                "uvicorn": uvicorn.__version__,
                "httpx": httpx.__version__,
            },
        },
    }


def finish(out: Dict) -> Dict:
    """``out`` (a :func:`header` updated by the run) completed with the machine's load and busy
    processes after the run and the :func:`goals`; returns it."""
    out["machine"]["load_avg_after"] = load_avg()
    out["machine"]["busy_processes_after"] = other_processes()
    out["goals"] = goals(out)
    return out


def _job_rows(index_dir: str, names: Sequence[str]) -> np.ndarray:
    """[n, 7] (file, frame, x1, y1, x2, y2, score) of the rows whose source file is one of
    ``names`` (basenames; file = its position in ``names``), sorted."""
    cols = ["source", "frame", "x1", "y1", "x2", "y2", "score"]
    t = read_table(list_shards(index_dir), cols)
    src = [os.path.basename(s) for s in t.column("source").to_pylist()]
    keep = np.asarray([s in names for s in src], bool)
    if not keep.any():
        return np.zeros((0, 7))
    file = np.asarray([names.index(s) for s, k in zip(src, keep) if k], np.float64)
    rest = [np.asarray(t.column(c).to_numpy(), np.float64)[keep] for c in cols[1:]]
    rows = np.stack([file] + rest, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def check_integrity(
    served: str, reference: str, stand_in_rows: int, names: Sequence[str], server_rows
) -> Dict:
    """Every row once: the served index vs stand-in rows + the reference index of the job's
    files (see the docstring of ``benchmarks.bench_serve``)."""
    rows = sum(n for _, n in shard_rows(served))
    keys = Counter(it.key for p in list_shards(served) for it in read_shard_items(p))
    duplicates = sum(c - 1 for c in keys.values() if c > 1)
    ref_keys = {(os.path.basename(s), f) for p in list_shards(reference)
                for s, f in (it.key for it in read_shard_items(p))}  # fmt: skip
    job_keys = {(os.path.basename(s), f) for s, f in keys if os.path.basename(s) in names}
    got, ref = _job_rows(served, list(names)), _job_rows(reference, list(names))
    same = got.shape == ref.shape and bool(np.allclose(got, ref, atol=1e-3))
    expected = stand_in_rows + len(ref)
    out = {
        "rows": int(rows),
        "expected_rows": int(expected),
        "stand_in_rows": int(stand_in_rows),
        "job_rows": int(len(got)),
        "reference_rows": int(len(ref)),
        "items": len(keys),
        "job_items": len(job_keys),
        "reference_items": len(ref_keys),
        "duplicates": int(duplicates),
        "missing_items": len(ref_keys - job_keys),
        "extra_items": len(job_keys - ref_keys),
        "job_detections_match_reference": same,
        "server_detections": server_rows,
    }
    out["ok"] = bool(
        rows == expected
        and duplicates == 0
        and job_keys == ref_keys
        and same
        and server_rows == rows
    )
    return out


def goals(out: Dict) -> Dict:
    """The goals of issue 20 met (None: not measured; see ``bench_serve``)."""
    fs16 = out.get("load", {}).get("find_similar", {}).get("16")
    phases = [r for k in out.get("load", {}).values() for r in k.values()]
    overhead = out.get("overhead_ms")
    return {
        "find_similar_p50_le_20ms_at_16": None if fs16 is None else fs16["p50_ms"] <= 20.0,
        "find_similar_p99_le_100ms_at_16": None if fs16 is None else fs16["p99_ms"] <= 100.0,
        "upload_box_overhead_le_30ms": None if overhead is None else overhead <= 30.0,
        "zero_errors": bool(phases) and all(r["errors"] == 0 for r in phases),
    }
