"""Helpers for the tests of the repository's scripts run by path (train_net.py, demo/demo.py)."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_CONFIG = os.path.join(REPO, "configs", "quick_schedules", "IAN_R18_GN_instant_test.yaml")


def load_script(filename: str, module_name: str):
    """Import a script of the repository (not a package module) by its path from the root."""
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(REPO, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
