"""``--precision auto`` and the bf16 guard, with the CPU's flags injected and the measurement
injected (no test times anything, none asserts a speed).

* :mod:`ian_d2.utils.cpu`: the flags of ``/proc/cpuinfo``-format files of the two CPU kinds of
  issue 29 (an AMD EPYC Zen 3 with AVX2 + FMA only; an Intel Xeon with AMX and AVX-512
  BF16 / VNNI) and what they allow;
* :mod:`ian_d2.export.auto`: the choice (bf16 ruled out without native bfloat16 and never
  measured there; otherwise the fastest measured), its record, the bounded measurement loop;
* the export: ``--precision auto`` on the small model, bf16 refused without native bfloat16
  unless forced (then warned with the measured cost);
* ``index`` / ``serve``: which of several export folders runs
  (:func:`ian_d2.search.commands.variant.resolve_exported`), on manifests alone.
"""

import argparse
import json
import os
import tempfile
import unittest

from ian_d2.export import auto
from ian_d2.export import runtime as rt
from ian_d2.export.exporter import ExportError, export_model
from ian_d2.search.commands.variant import EXPORTED, resolve_backend, resolve_exported
from ian_d2.utils.cpu import CpuInfo, read_cpuinfo
from tests.search_testing import make_cfg

# the two CPU kinds of issue 29, as /proc/cpuinfo lists them (abridged)
ZEN3_FLAGS = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni vaes"
XEON_FLAGS = (
    "fpu sse sse2 fma avx avx2 avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 amx_tile "
    "amx_int8 avx_vnni"
)
ZEN3 = CpuInfo("AMD EPYC 7B13 64-Core Processor", frozenset(ZEN3_FLAGS.split()))
XEON = CpuInfo("Intel(R) Xeon(R) Processor", frozenset(XEON_FLAGS.split()))


class FakeMeasure:
    """``measure(candidate)``: seconds per image from a table keyed by precision (and runtime),
    recording what was measured."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.calls = []

    def __call__(self, candidate):
        self.calls.append(candidate)
        key = f"{candidate.runtime} {candidate.precision}"
        return self.seconds.get(key, self.seconds.get(candidate.precision))


class TestCpuInfo(unittest.TestCase):
    def test_flags_from_cpuinfo_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            infos = {}
            for name, model, flags in (
                ("zen3", ZEN3.model, ZEN3_FLAGS),
                ("xeon", XEON.model, XEON_FLAGS),
            ):
                path = os.path.join(tmp, name)
                with open(path, "w") as f:
                    for cpu in range(2):  # the first processor is read
                        f.write(
                            f"processor\t: {cpu}\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
                        )
                infos[name] = read_cpuinfo(path)
            self.assertIsNone(read_cpuinfo(os.path.join(tmp, "missing")))
        zen3, xeon = infos["zen3"], infos["xeon"]
        self.assertEqual(zen3.model, ZEN3.model)
        self.assertFalse(zen3.native_bf16)
        self.assertFalse(zen3.int8_dot)
        self.assertTrue(xeon.native_bf16)
        self.assertTrue(xeon.int8_dot)
        record = zen3.record()
        self.assertEqual(
            record["flags"],
            {
                "avx2": True,
                "fma": True,
                "avx512f": False,
                "avx512_vnni": False,
                "avx_vnni": False,
                "avx512_bf16": False,
                "amx_bf16": False,
                "amx_int8": False,
            },
        )
        self.assertFalse(record["native_bf16"])
        self.assertIn("avx2, fma", zen3.summary())
        # AVX-512 BF16 alone (e.g. Zen 4) is native bfloat16 too
        self.assertTrue(CpuInfo("x", frozenset({"avx512_bf16"})).native_bf16)


class TestChooseVariant(unittest.TestCase):
    def test_bf16_is_never_measured_without_native_bf16(self):
        candidates = [
            auto.Candidate("fp32", "onnx", "a"),
            auto.Candidate("bf16", "torchscript", "b"),
            auto.Candidate("int8", "onnx", "c"),
        ]
        measure = FakeMeasure({"fp32": 8.63, "bf16": 55.26, "int8": 4.50})
        with self.assertLogs("ian_d2.export.auto", "INFO") as logs:
            choice = auto.choose_variant(candidates, measure, cpu=ZEN3, size=(268, 447))
        self.assertEqual(choice.chosen.precision, "int8")
        self.assertEqual([c.precision for c in measure.calls], ["fp32", "int8"])
        self.assertIn("torchscript bf16 (b)", choice.left_out)
        self.assertIn("avx512_bf16", choice.left_out["torchscript bf16 (b)"])
        line = "\n".join(logs.output)  # what it picked and why: flags, measured seconds
        self.assertIn("picked onnx int8 (c)", line)
        self.assertIn("AMD EPYC", line)
        self.assertIn("onnx int8 (c) 4.500", line)
        self.assertIn("at 268x447", line)
        record = json.loads(json.dumps(choice.record()))
        self.assertEqual(record["chosen"], {"precision": "int8", "runtime": "onnx"})
        self.assertEqual(record["cpu"]["model"], ZEN3.model)

    def test_native_bf16_competes_by_measurement(self):
        candidates = [auto.Candidate("fp32", "torchscript"), auto.Candidate("bf16", "torchscript")]
        fast = auto.choose_variant(candidates, FakeMeasure({"fp32": 5.46, "bf16": 1.54}), cpu=XEON)
        self.assertEqual(fast.chosen.precision, "bf16")
        self.assertIn("native bfloat16", fast.reason)
        slow = auto.choose_variant(candidates, FakeMeasure({"fp32": 0.1, "bf16": 0.2}), cpu=XEON)
        self.assertEqual(slow.chosen.precision, "fp32")
        # a near tie keeps fp32: reduced precision must pay for its rounding
        tie = auto.choose_variant(candidates, FakeMeasure({"fp32": 0.1, "bf16": 0.095}), cpu=XEON)
        self.assertEqual(tie.chosen.precision, "fp32")
        self.assertIn("fp32 kept", tie.reason)

    def test_one_candidate_is_not_measured_and_none_is_refused(self):
        def never(c):
            raise AssertionError("measured")

        only = [auto.Candidate("fp32", "onnx"), auto.Candidate("bf16", "torchscript")]
        self.assertEqual(auto.choose_variant(only, never, cpu=ZEN3).chosen.precision, "fp32")
        with self.assertRaisesRegex(ValueError, "every candidate is bf16.*--force-precision"):
            auto.choose_variant([auto.Candidate("bf16", "torchscript")], never, cpu=ZEN3)
        with self.assertRaisesRegex(ValueError, "no inference variant"):
            auto.choose_variant([], never, cpu=XEON)

    def test_measurement_is_bounded(self):
        self.assertEqual(auto.measurement_size(300, 400), (300, 400))
        h, w = auto.measurement_size(900, 1500)
        self.assertLessEqual(h * w, auto.MEASURE_MAX_PIXELS * 1.01)
        self.assertAlmostEqual(w / h, 1500 / 900, places=2)
        with self.assertRaisesRegex(ValueError, "min_size 0"):
            auto.measurement_size(0, 10)
        # a fake clock: each call "takes" 1.5 s; the 2 s budget stops after 2 timed calls
        now = [0.0]
        calls = []

        def fn():
            calls.append(1)
            now[0] += 1.5

        sec = auto.time_passes(fn, budget_s=2.0, max_passes=5, clock=lambda: now[0])
        self.assertEqual(len(calls), 3)  # one warm-up, two timed
        self.assertEqual(sec, 1.5)


class TestBf16Guard(unittest.TestCase):
    def test_refused_unless_forced_then_warned_with_the_measured_cost(self):
        self.assertIsNone(auto.check_bf16(XEON, False, "export"))
        with self.assertRaisesRegex(ValueError, "without native bfloat16.*avx512_bf16.*"
                                    "--force-precision"):  # fmt: skip
            auto.check_bf16(ZEN3, False, "export")
        with self.assertLogs("ian_d2.export.auto", "WARNING") as logs:
            cost = auto.check_bf16(ZEN3, True, "export", lambda: (0.84, 0.18, (300, 400)))
        self.assertEqual(cost, {"bf16_s": 0.84, "fp32_s": 0.18})
        self.assertIn("0.840 s per image in bf16 vs 0.180 s in fp32 at 300x400", logs.output[0])
        self.assertIn("4.67x", logs.output[0])

    def test_export_refuses_bf16_and_auto_picks_fp32_without_native_bf16(self):
        cfg = make_cfg("")
        with tempfile.TemporaryDirectory() as out:
            with self.assertRaisesRegex(ExportError, "precision bf16 \\(export\\) on a CPU "
                                        "without native bfloat16.*--force-precision"):  # fmt: skip
                export_model(cfg, out, ["torchscript"], precision="bf16", cpu=ZEN3)
            with self.assertRaisesRegex(ExportError, "auto does not calibrate"):
                export_model(cfg, out, ["onnx"], precision="auto", calibration_images=out)
            self.assertFalse(os.listdir(out))  # refused before writing anything

    def test_export_auto_choice(self):
        """The export's candidates: bf16 only for TorchScript alone; int8 never (calibration)."""
        measure = FakeMeasure({"fp32": 5.46, "bf16": 1.54})
        ts = auto.choose_export_precision(["torchscript"], None, (300, 400), cpu=XEON,
                                          measure=measure)  # fmt: skip
        self.assertEqual(ts.chosen.precision, "bf16")
        self.assertIn("int8", ts.left_out)
        self.assertIn("int8 dot-product", ts.left_out["int8"])
        both = auto.choose_export_precision(["onnx", "torchscript"], None, (300, 400), cpu=XEON,
                                            measure=measure)  # fmt: skip
        self.assertEqual(both.chosen, auto.Candidate("fp32", "onnx+torchscript"))
        self.assertIn("bf16", both.left_out)
        zen = auto.choose_export_precision(["torchscript"], None, (300, 400), cpu=ZEN3,
                                           measure=measure)  # fmt: skip
        self.assertEqual(zen.chosen.precision, "fp32")
        self.assertEqual(len(measure.calls), 2)  # only the Xeon's TorchScript pair was measured

    def test_export_auto_records_its_choice(self):
        """``python -m ian_d2.export --precision auto`` on the small model (TorchScript, no
        check): fp32 on a CPU without native bfloat16, recorded in the manifest."""
        cfg = make_cfg("")

        def never(c):
            raise AssertionError("measured")

        with tempfile.TemporaryDirectory() as out:
            manifest = export_model(cfg, out, ["torchscript"], precision="auto", verify=False,
                                    cpu=ZEN3, measure=never)  # fmt: skip
            self.assertEqual(manifest["precision"], "fp32")
            with open(os.path.join(out, rt.MANIFEST_NAME)) as f:
                written = json.load(f)
        record = written["precision_auto"]
        self.assertEqual(record["chosen"]["precision"], "fp32")
        self.assertFalse(record["cpu"]["native_bf16"])
        self.assertIn("torchscript bf16", record["left_out"])


def _fake_export(folder, precision, runtimes, weights_sha="w" * 64, embed_boxes="proposals"):
    """An export folder with a manifest only (enough to choose among folders)."""
    os.makedirs(folder)
    manifest = {
        "format": rt.FORMAT,
        "format_version": rt.FORMAT_VERSION,
        "models": {r: {} for r in runtimes},
        "precision": precision,
        "embed_boxes": embed_boxes,
        "model": {"config_sha256": "c" * 64, "weights_sha256": weights_sha},
        "input": {"format": "BGR", "min_size_test": 900, "max_size_test": 1500},
    }
    with open(os.path.join(folder, rt.MANIFEST_NAME), "w") as f:
        json.dump(manifest, f)
    return folder


def _args(folders, precision=None, backend=EXPORTED, **kw):
    return argparse.Namespace(exported_model=folders, precision=precision, backend=backend,
                              force_precision=kw.get("force", False),
                              allow_variant_mismatch=kw.get("allow", False))  # fmt: skip


class TestIndexAndServeVariant(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        t = cls._tmp.name
        cls.fp32 = _fake_export(os.path.join(t, "fp32"), "fp32", ["onnx", "torchscript"])
        cls.bf16 = _fake_export(os.path.join(t, "bf16"), "bf16", ["torchscript"])
        cls.int8 = _fake_export(os.path.join(t, "int8"), "int8", ["onnx"])
        cls.other = _fake_export(os.path.join(t, "other"), "fp32", ["onnx"], weights_sha="x")
        cls.all = [cls.fp32, cls.bf16, cls.int8]
        # issue 29's R-50 900x1500 seconds per image on each CPU kind
        cls.zen3_s = {"onnx fp32": 8.63, "torchscript fp32": 14.0, "torchscript bf16": 55.26,
                      "onnx int8": 4.50}  # fmt: skip
        cls.xeon_s = {"onnx fp32": 2.42, "torchscript fp32": 5.0, "torchscript bf16": 0.9,
                      "onnx int8": 1.12}  # fmt: skip

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_auto_picks_per_cpu(self):
        zen = FakeMeasure(self.zen3_s)
        self.assertEqual(resolve_exported(_args(self.all, "auto"), cpu=ZEN3, measure=zen),
                         ("onnx", self.int8))  # fmt: skip
        self.assertNotIn("bf16", [c.precision for c in zen.calls])  # never measured there
        xeon = FakeMeasure(self.xeon_s)
        self.assertEqual(resolve_exported(_args(self.all, "auto"), cpu=XEON, measure=xeon),
                         ("torchscript", self.bf16))  # fmt: skip
        self.assertEqual(len(xeon.calls), 4)
        onnx_only = resolve_exported(_args(self.all, "auto", backend="onnx"), cpu=XEON,
                                     measure=FakeMeasure(self.xeon_s))  # fmt: skip
        self.assertEqual(onnx_only, ("onnx", self.int8))

    def test_the_index_variant_restricts_the_choice(self):
        fp32_index = {"embed_boxes": "proposals", "precision": "fp32"}
        got = resolve_exported(_args(self.all, "auto"), fp32_index, cpu=ZEN3,
                               measure=FakeMeasure(self.zen3_s))  # fmt: skip
        self.assertEqual(got, ("onnx", self.fp32))
        allowed = resolve_exported(_args(self.all, "auto", allow=True), fp32_index, cpu=ZEN3,
                                   measure=FakeMeasure(self.zen3_s))  # fmt: skip
        self.assertEqual(allowed, ("onnx", self.int8))

    def test_explicit_precision_and_one_folder(self):
        def never(c):
            raise AssertionError("measured")

        self.assertEqual(resolve_exported(_args(self.fp32, None, backend="onnx"), measure=never),
                         ("onnx", self.fp32))  # fmt: skip
        self.assertEqual(resolve_exported(_args(self.all, "int8"), cpu=ZEN3, measure=never),
                         ("onnx", self.int8))  # fmt: skip
        for args, message in (
            (_args(self.all), "got 3 folders: give --precision"),
            (_args([self.fp32, self.other], "auto"), "exports of different models"),
            (_args([self.fp32], "int8"), "no export of that precision"),
            (_args([self.int8], None, backend="torchscript"), "no export of that runtime"),
        ):
            with self.subTest(message), self.assertRaisesRegex(ValueError, message):
                resolve_exported(args, cpu=XEON, measure=never)

    def test_bf16_export_refused_without_native_bf16_unless_forced(self):
        with self.assertRaisesRegex(ValueError, "bf16 \\(export folder .*bf16'\\) on a CPU "
                                    "without native bfloat16.*--force-precision"):  # fmt: skip
            resolve_exported(_args([self.bf16], None, backend="torchscript"), cpu=ZEN3)
        with self.assertRaisesRegex(ValueError, "--force-precision"):
            resolve_exported(_args(self.all, "bf16"), cpu=ZEN3)
        with self.assertLogs("ian_d2.export.auto", "WARNING") as logs:
            got = resolve_exported(_args(self.all, "bf16", force=True), cpu=ZEN3,
                                   measure=FakeMeasure(self.zen3_s))  # fmt: skip
        self.assertEqual(got, ("torchscript", self.bf16))
        self.assertIn("55.260 s per image in bf16 vs", logs.output[0])
        # native: no measurement, no warning
        self.assertEqual(resolve_exported(_args(self.all, "bf16"), cpu=XEON),
                         ("torchscript", self.bf16))  # fmt: skip

    def test_backend_default(self):
        args = argparse.Namespace(backend=None, precision="auto", exported_model=[self.fp32])
        self.assertEqual(resolve_backend(args), EXPORTED)
        args = argparse.Namespace(backend=None, precision=None, exported_model=None)
        self.assertEqual(resolve_backend(args), "pytorch")
        args = argparse.Namespace(backend="pytorch", precision="auto", exported_model=None)
        with self.assertRaisesRegex(ValueError, "--precision auto picks among exported models"):
            resolve_backend(args)

    def test_command_line(self):
        from ian_d2.search.cli import main as search_main

        out = os.path.join(self._tmp.name, "index")
        for argv, message in (
            (["--exported-model", *self.all, "--backend", "onnx"], "give --precision"),
            (["--precision", "auto", "--config-file", "x.yaml"], "picks among exported models"),
        ):
            with self.subTest(argv=argv), self.assertRaisesRegex(ValueError, message):
                search_main(["index", *argv, "--gallery", self.fp32, "--out", out])


if __name__ == "__main__":
    unittest.main()
