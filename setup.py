#!/usr/bin/env python
"""Install ian_d2, the IAN person-search extension of Detectron2.

Detectron2 itself is installed separately (``make setup`` does it; see README.md).
"""
import os

from setuptools import find_packages, setup

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - only hit on a broken environment
    raise ImportError(
        "ian_d2 needs PyTorch installed first: run `make setup`, or "
        "`pip install torch==2.14.1 torchvision==0.29.1` (see README.md)."
    ) from e


def _version():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "ian_d2", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("__version__ not found in ian_d2/__init__.py")


setup(
    name="ian_d2",
    version=_version(),
    description="Individual Aggregation Network (IAN) person search as a Detectron2 extension",
    packages=find_packages(include=["ian_d2", "ian_d2.*"]),
    # the search service's page (python -m ian_d2.search serve)
    package_data={"ian_d2.search.serve": ["static/*", "static/*/*", "static/*/*/*"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[
        # Detectron2 is not on PyPI: install it first (README.md, "Installation").
        "scipy>=1.10",
        "numpy",
        "opencv-python-headless>=4.8",
        "Pillow>=9.0",
        "tqdm",
    ],
    extras_require={"dev": ["pytest>=7", "black", "isort", "flake8"]},
)
