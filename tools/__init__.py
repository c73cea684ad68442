"""Research drivers of the repository (not part of the ian_d2 package), run from its root:

* ``python -m tools.ablations``: IAN's ablations on synthetic data, 3 seeds, confidence
  intervals (``make ablations``; ``--quick``: ``make ablations-quick``);
* ``python -m tools.ablation_report``: the report again from the finished runs.

Detectron2's wheel installs a top-level ``tools`` package of its own; run from the repository
root, where this one comes first on ``sys.path``.
"""
