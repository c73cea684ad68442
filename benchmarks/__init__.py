"""Speed benchmarks of the repository (not part of the ian_d2 package); each prints JSON and runs
from the repository root as ``python -m benchmarks.<name>`` (``make bench``: scoring and model).
"""
