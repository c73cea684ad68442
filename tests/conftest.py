"""Shared pytest fixtures.

``tests/`` is a package: its helper modules are imported as ``tests.repo_scripts``,
``tests.synthetic_testing``, ``tests.search_testing``, ``tests.reference_oracle`` and
``tests.distributed_workers`` (pytest puts the repository root on ``sys.path``; the processes
that Detectron2's ``launch`` spawns inherit it). The tiny model config and inputs shared with the
benchmarks are in the package: :mod:`ian_d2.utils.testing` (``quick_cfg``, ``synthetic_inputs``).

Tiers: ``@pytest.mark.slow`` marks the multi-process, subprocess and training tests; ``make test``
runs the others (``-m "not slow"``), ``make test-all`` and CI run everything.

The tiny synthetic CUHK-SYSU (``size="tiny"``, seed 0) is generated once per session by the
``synthetic_cuhk_sysu`` fixture. unittest classes get it as the class attribute ``synthetic``,
set before their ``setUpClass``, by the class marker ``@pytest.mark.synthetic_cuhk_sysu``.
It is shared: treat it as read-only (copy it to change it).

The parsed-annotation cache (``$IAN_D2_CACHE``) of the whole session is a temporary folder, never
the user's ``~/.cache/ian_d2`` (subprocesses inherit it).
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict

import pytest


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated dataset: its ``$DETECTRON2_DATASETS`` folder, its root inside that folder
    (under the built-in name, e.g. ``cuhk_sysu_synth``), its image folder and the generator's
    summary."""

    datasets: str
    root: str
    images: str
    summary: Dict


_SESSION_CACHE = []


def pytest_configure(config):
    if "IAN_D2_CACHE" not in os.environ:
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="ian_d2_cache_"))
        os.environ["IAN_D2_CACHE"] = _SESSION_CACHE[0]


def pytest_unconfigure(config):
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_cuhk_sysu(tmp_path_factory) -> SyntheticDataset:
    """The tiny synthetic CUHK-SYSU (seed 0) at ``<tmp>/datasets/cuhk_sysu_synth``; read-only."""
    from ian_d2.data.synthetic import generate_cuhk_sysu  # here: conftest stays light to import

    datasets = str(tmp_path_factory.mktemp("datasets"))
    root = os.path.join(datasets, "cuhk_sysu_synth")
    summary = generate_cuhk_sysu(root, size="tiny", seed=0)
    return SyntheticDataset(datasets, root, os.path.join(root, "Image", "SSM"), summary)


@pytest.fixture(scope="class", autouse=True)
def _attach_synthetic_cuhk_sysu(request):
    """``cls.synthetic`` for the classes marked ``synthetic_cuhk_sysu`` (before setUpClass:
    autouse fixtures of conftest come before the class's own)."""
    if request.cls is not None and request.node.get_closest_marker("synthetic_cuhk_sysu"):
        request.cls.synthetic = request.getfixturevalue("synthetic_cuhk_sysu")
