"""``python -m ian_d2.search``: see :mod:`ian_d2.search.cli`."""

import os
import sys

if sys.argv[1:2] == ["serve"]:
    # The service ranks each query with one numpy matrix-vector product, many queries at a time
    # in its threads. OpenBLAS would run each product on threads of its own, one per core, that
    # spin after every call: they take the cores from the other queries and from the model (on 2
    # cores: 5x less find-similar throughput at 16 clients, see "Search service" in
    # benchmarks/RESULTS.md). One BLAS thread per query instead; set before numpy loads
    # OpenBLAS; a value already in the environment wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .cli import run  # noqa: E402  (after the environment above)

if __name__ == "__main__":
    run()
