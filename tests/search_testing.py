"""Helpers of the search tests: the small saved model and its config, from
:mod:`ian_d2.utils.testing` (shared with ``benchmarks/bench_serve.py``). The tiny image gallery
is the session's synthetic CUHK-SYSU (``@pytest.mark.synthetic_cuhk_sysu``, tests/conftest.py)."""

from ian_d2.utils.testing import SMALL_OPTS
from ian_d2.utils.testing import save_small_model as save_model
from ian_d2.utils.testing import small_cfg as make_cfg

__all__ = ["SMALL_OPTS", "make_cfg", "save_model"]
