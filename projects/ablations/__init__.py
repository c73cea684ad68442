"""IAN's ablations on synthetic data (Tables I-IV, Figs. 4-5), run from the repository root:

* ``python -m projects.ablations.run``: every run, 3 seeds, confidence intervals
  (``make ablations``; ``--quick``: ``make ablations-quick``); resumes, skips finished runs;
* ``python -m projects.ablations.report``: the report again from the finished runs
  (``docs/ablations/``).
"""
