"""Speed benchmarks of the repository (not part of the ian_d2 package); each prints JSON and runs
from the repository root as ``python -m benchmarks.<name>`` (``make bench``: scoring and model).
The subpackages hold the parts of the larger ones (their command lines stay in the scripts):
``serve/`` of ``bench_serve``, ``gpu/`` of ``gpu_check``, ``variants/`` of ``bench_variants``.
"""
