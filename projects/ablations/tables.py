"""The paper's ablations as the report shows them: which variants each table compares, the
contrasts (A - B) its claims are about, the paper's numbers, and the order of the protocols
(gallery sizes) and of the variants.

Used by the statistics (:mod:`projects.ablations.aggregate`), the Markdown
(:mod:`projects.ablations.markdown`) and the plots (:mod:`projects.ablations.figures`).
"""

from typing import Dict, List, Tuple

__all__ = [
    "FIG5_VARIANTS",
    "METRICS",
    "NOTES",
    "PAPER",
    "REFERENCE",
    "TABLES",
    "main_protocol",
    "protocol_name",
    "protocol_order",
    "table_order",
]

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


def table_order() -> List[str]:
    """The step-2 reference, the lambda sweep, then the other variants of :data:`TABLES`."""
    out = [REFERENCE] + list(TABLES[1][2])  # the step-2 model, the lambda sweep (Fig. 4)
    for _, _, rows, _ in TABLES:
        out += [v for v in rows if v not in out]
    return out


def main_protocol(protocols: Dict[str, object]) -> str:
    """The protocol of the tables: gallery 100 (CUHK-SYSU's default), else the smallest."""
    return "g100" if "g100" in protocols else sorted(protocols, key=protocol_order)[0]


def protocol_order(key: str) -> Tuple[int, int]:
    """Sort key of a protocol ("g50", "g100", ..., "full"): by gallery size, the full pool last."""
    size = int(key[1:]) if key.startswith("g") else -1
    return (size < 0, size)


def protocol_name(key: str, info: dict) -> str:
    """A protocol's name in the tables, "gallery 100" or "full pool" (``info``: its entry of
    ``report["protocols"]``)."""
    size = info["gallery_size"]
    return f"gallery {size}" if size > 0 else "full pool"
