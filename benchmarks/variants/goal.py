"""The goal of ``bench_variants`` (issue 23): which variants are at least 2.5x eager fp32 at
900x1500 with ΔmAP (gallery 100) within ±0.5 of it and the interval covering 0.
"""

from typing import Dict, Optional

from benchmarks.variants.build import REFERENCE, own_reference

__all__ = ["GOAL", "goal"]

# the goal: speed-up at 900x1500 and ΔmAP (gallery 100, points) of the trained model
GOAL = {"min_speedup_900x1500": 2.5, "max_abs_delta_map": 0.5}


def _within(d: Dict) -> bool:
    """|ΔmAP| within the goal and its interval covering 0."""
    return abs(d["mean"]) <= GOAL["max_abs_delta_map"] and d["ci95"][0] <= 0 <= d["ci95"][1]


def goal(result: Dict) -> Optional[Dict]:
    """Which variants reach :data:`GOAL` (None until both parts are in ``result``).

    ``meets_goal`` is the issue's test: speed-up over eager fp32 (proposals) at 900x1500 and
    ΔmAP (gallery 100) against eager fp32 (proposals) within ±0.5, interval covering 0. A
    ``+final`` variant that *gains* more than 0.5 fails that test; ``precision_cost_ok`` judges
    its precision against eager fp32 with the same EMBED_BOXES instead."""
    if "accuracy" not in result or "speed" not in result:
        return None
    acc = result["accuracy"]["variants"]
    speed = result["speed"]["r50_900x1500"]["variants"]
    rows = {}
    for name, row in acc.items():
        if name == REFERENCE or name not in speed:
            continue
        d = row["vs_eager_fp32"]["gallery 100"]["delta_mAP"]
        s = speed[name]["speedup_vs_eager_fp32"]
        ok_acc = _within(d)
        own = own_reference(name)
        own_delta = row.get(f"vs_{own}", row["vs_eager_fp32"])["gallery 100"]["delta_mAP"]
        rows[name] = {
            "speedup_900x1500": s,
            "delta_mAP_g100": d,
            "accuracy_ok": bool(ok_acc),
            "precision_cost_ok": bool(name == own or _within(own_delta)),
            "speed_ok": bool(s >= GOAL["min_speedup_900x1500"]),
            "meets_goal": bool(ok_acc and s >= GOAL["min_speedup_900x1500"]),
        }
    return {
        "goal": GOAL,
        "variants": rows,
        "met_by": [k for k, v in rows.items() if v["meets_goal"]],
    }
