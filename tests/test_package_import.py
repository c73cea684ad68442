"""Importing ian_d2 is light and installs no process-wide warning filter (each check in a fresh
interpreter): ``import ian_d2`` loads neither torch nor Detectron2; ``import ian_d2.config`` loads
Detectron2's config but no model or dataset module of ian_d2; ``ian_d2.register_all()`` (every
config-driven script) loads the rest, with Detectron2's import-time torch.jit deprecation warning
silenced during that import only."""

import json
import subprocess
import sys
import textwrap
import unittest

import pytest

# Every module that registering ian_d2 loads, other than ian_d2's own.
_LIST_DEPENDENCIES = textwrap.dedent("""
    import json, sys
    before = set(sys.modules)
    import ian_d2.config
    ian_d2.register_all()
    print(json.dumps([m for m in sys.modules if m not in before and m.split(".")[0] != "ian_d2"]))
    """)

# The ian_d2 modules that `import ian_d2.config` loads, then those after `register_all()`, and
# whether the registries hold ian_d2's parts at each point.
_CONFIG_LEAF = textwrap.dedent("""
    import json, sys
    import ian_d2.config
    def state():
        from detectron2.data import DatasetCatalog
        from detectron2.modeling import META_ARCH_REGISTRY
        return {
            "modules": sorted(m for m in sys.modules if m.startswith("ian_d2.")),
            "meta_arch": "PersonSearchRCNN" in META_ARCH_REGISTRY,
            "dataset": "cuhk_sysu_train" in DatasetCatalog.list(),
        }
    after_import = state()
    ian_d2.register_all()
    print(json.dumps({"import": after_import, "register_all": state()}))
    """)

# What `import ian_d2` and the rescore CLI's module load.
_LIGHT = textwrap.dedent("""
    import json, sys
    import ian_d2
    light = {m: m in sys.modules for m in ("torch", "detectron2")}
    import ian_d2.evaluation.rescore
    cli = {m: m in sys.modules for m in ("torch", "detectron2", "scipy")}
    print(json.dumps({"ian_d2": light, "rescore": cli}))
    """)

# Third-party packages install filters of their own when first imported (numpy, scipy.sparse,
# ...): those are imported first, then the filters are compared around `import ian_d2`.
_ONLY_IAN_D2 = textwrap.dedent("""
    import importlib, json, sys, warnings
    for name in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except Exception:
            pass
    before = [repr(f) for f in warnings.filters]
    import ian_d2.config
    ian_d2.register_all()
    print(json.dumps({"before": before, "after": [repr(f) for f in warnings.filters]}))
    """)

# Every warning shown during a fresh `import ian_d2`, and the filters left afterwards.
_FRESH = textwrap.dedent("""
    import json, warnings
    shown = []
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
    warnings.simplefilter("always")
    from ian_d2 import add_ian_config
    print(json.dumps({
        "filters": [repr(f) for f in warnings.filters],
        "jit_warnings": sum("torch.jit.script" in m for m in shown),
    }))
    """)


def _run(script, *args):
    """Runs ``script`` in a fresh interpreter; returns the JSON its last line prints."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise AssertionError(f"the subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class TestImportWarnings(unittest.TestCase):
    def test_light_import(self):
        res = _run(_LIGHT)
        self.assertEqual(res["ian_d2"], {"torch": False, "detectron2": False})
        self.assertEqual(res["rescore"], {"torch": False, "detectron2": False, "scipy": False})

    @pytest.mark.slow  # the three tests below: fresh interpreters importing torch and Detectron2
    def test_config_is_a_leaf_and_register_all_registers(self):
        res = _run(_CONFIG_LEAF)
        imported = res["import"]
        self.assertFalse(
            [m for m in imported["modules"] if m.startswith(("ian_d2.modeling", "ian_d2.data"))],
            imported["modules"],
        )
        self.assertEqual((imported["meta_arch"], imported["dataset"]), (False, False))
        registered = res["register_all"]
        self.assertIn("ian_d2.modeling.roi_heads", registered["modules"])
        self.assertEqual((registered["meta_arch"], registered["dataset"]), (True, True))

    @pytest.mark.slow
    def test_import_leaves_filters_unchanged(self):
        dependencies = _run(_LIST_DEPENDENCIES)
        self.assertIn("detectron2.modeling", dependencies)
        res = _run(_ONLY_IAN_D2, json.dumps(dependencies))
        self.assertEqual(res["after"], res["before"])

    @pytest.mark.slow
    def test_detectron2_jit_warning_silenced_during_import_only(self):
        res = _run(_FRESH)
        self.assertEqual(res["jit_warnings"], 0)
        self.assertFalse([f for f in res["filters"] if "torch.jit.script" in f], res["filters"])


if __name__ == "__main__":
    unittest.main()
