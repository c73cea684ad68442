"""Helpers of the search tests: the small saved model and its config, from
:mod:`ian_d2.utils.testing` (shared with ``benchmarks/bench_serve.py``). The tiny image gallery
is the session's synthetic CUHK-SYSU (``@pytest.mark.synthetic_cuhk_sysu``, tests/conftest.py)."""

from ian_d2.utils.testing import SMALL_OPTS
from ian_d2.utils.testing import save_small_model as save_model
from ian_d2.utils.testing import small_cfg as make_cfg

__all__ = ["CrashingModel", "Interrupt", "SMALL_OPTS", "make_cfg", "save_model"]


class Interrupt(Exception):
    """What :class:`CrashingModel` raises: the run killed in the middle."""


class CrashingModel:
    """Wraps a model; raises :class:`Interrupt` after ``n`` calls (a run killed in the middle)."""

    def __init__(self, model, n):
        self.model, self.n = model, n

    def __call__(self, batch):
        if self.n == 0:
            raise Interrupt()
        self.n -= 1
        return self.model(batch)
