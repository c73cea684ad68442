"""The report of the GPU check: the steps' ``OUT/NAME.json``, their statuses (``OUT/steps.tsv``)
and the tails of the failed steps' logs combined into ``OUT/gpu_check.json``, with a summary row
per measurement (parity, inference, training).
"""

import datetime
import json
import logging
import os
from typing import Dict, List, Optional

from benchmarks.gpu.plan import plan
from benchmarks.machine import write_json

__all__ = ["combine", "read_json"]

logger = logging.getLogger(__name__)


def read_json(path: str) -> Optional[Dict]:
    """The JSON of ``path``; None if it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _status(rc: Optional[str]) -> str:
    if rc is None:
        return "not_run"
    if rc == "skipped":
        return "skipped (time budget spent)"
    return {"0": "ok", "2": "refused", "124": "timeout", "137": "timeout (killed)"}.get(
        rc, "failed"
    )


def _tail(path: str, n: int = 3000) -> Optional[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return None


def _summary(steps: Dict[str, Dict]) -> List[Dict]:
    rows = []
    for name, st in steps.items():
        res = st.get("result") or {}
        if name == "parity" and "fp32" in res:
            fp32 = res["fp32"]
            rows.append(
                {
                    "step": name,
                    "fp32_ok": res.get("fp32_ok"),
                    "same_box_fraction": fp32.get("same_box_fraction"),
                    "score_max_abs_diff": fp32.get("score_max_abs_diff"),
                    "embed_min_cosine": fp32.get("embed_min_cosine"),
                    "query_embed_min_cosine": fp32.get("query_embed_min_cosine"),
                }
            )
        for run in res.get("inference", []):
            rows.append(
                {
                    "step": name,
                    "model": res.get("backbone"),
                    "input_size": run.get("input_size"),
                    "amp": run.get("amp"),
                    "batch": run.get("batch"),
                    "images_per_sec": run.get("images_per_sec"),
                    "proposals_per_image": run.get("proposals_per_image"),
                    "detections_per_image": run.get("detections_per_image"),
                    "peak_memory_mb": run.get("peak_memory_mb"),
                }
            )
        for run in res.get("train_runs", []):
            rows.append(
                {
                    "step": name,
                    "model": res.get("backbone"),
                    "input_size": run.get("input_size"),
                    "train_batch": run.get("batch"),
                    "sec_per_iter": run.get("sec_per_iter"),
                    "peak_memory_mb": run.get("peak_memory_mb"),
                    "proposals_per_image": run.get("proposals_per_image"),
                    "roi_boxes_per_image": run.get("roi_boxes_per_image"),
                    "error": run.get("error"),
                }
            )
    return rows


def combine(out_dir: str, smoke: bool = False) -> Dict:
    """
    Gathers the steps' JSON files, statuses (``steps.tsv``) and failed logs into
    ``OUT/gpu_check.json``; returns it.
    """
    status = {}
    try:
        with open(os.path.join(out_dir, "steps.tsv")) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 2:
                    status[parts[0]] = (parts[1], float(parts[2]) if len(parts) > 2 else None)
    except OSError:
        pass
    steps = {}
    for step in plan(smoke):
        rc, seconds = status.get(step.name, (None, None))
        entry = {"status": _status(rc), "exit_status": rc, "seconds": seconds}
        entry["timeout_s"] = step.timeout_s
        entry["argv"] = step.argv
        entry["result"] = read_json(os.path.join(out_dir, step.name + ".json"))
        if entry["status"] == "ok" and entry["result"] is None:
            entry["status"] = "failed (no result file)"
        if entry["status"] != "ok":
            entry["log_tail"] = _tail(os.path.join(out_dir, step.name + ".log"))
        steps[step.name] = entry
    out = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "smoke": smoke,
        "all_ok": all(s["status"] == "ok" for s in steps.values()),
        "env": (steps.get("env") or {}).get("result"),
        "nvidia_smi": _tail(os.path.join(out_dir, "env.txt"), 8000),
        "summary": _summary(steps),
        "steps": steps,
    }
    write_json(out, os.path.join(out_dir, "gpu_check.json"))
    for row in out["summary"]:
        logger.info("%s", json.dumps(row))
    logger.info(
        "all steps ok: %s; written %s", out["all_ok"], os.path.join(out_dir, "gpu_check.json")
    )
    return out
