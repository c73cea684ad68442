"""benchmarks.bench_model and benchmarks.gpu_check (and gpu_check.sh) at tiny sizes on the CPU."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d

from benchmarks import bench_model, gpu_check
from tests.repo_scripts import QUICK_CONFIG, REPO

R50_CONFIG = os.path.join(REPO, "configs", "IAN_R50.yaml")
TINY = ["--iters", "1", "--warmup", "0", "--batch", "1", "--amp", "0", "--num-pids", "8"]
# R-50 C4 with FrozenBN at 64x96: res5 on 10 proposals keeps a forward pass around a second.
R50_TINY = ["--config", R50_CONFIG, "--size", "64", "96", "--skip-train"] + TINY
R50_OPTS = ["MODEL.RPN.POST_NMS_TOPK_TEST", "10"]


def _quiet(fn, *args):
    """Calls ``fn(*args)`` without its JSON on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


class TestBenchModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bench = bench_model
        cls._tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_quick_config_counts_boxes(self):
        path = os.path.join(self._tmp.name, "quick.json")
        argv = ["--config", QUICK_CONFIG, "--size", "96", "128", "--output", path] + TINY
        out = _quiet(self.bench.main, argv)
        self.assertTrue(out["complete"])
        with open(path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(out)))
        (run,) = out["inference"]
        for key in ("amp", "batch", "input_size", "images_per_sec", "peak_memory_mb"):
            self.assertIn(key, run)
        # R-18-GN: the proposals reach the ROI heads without calibration, all 100 of them
        self.assertEqual(run["proposals_per_image"], out["post_nms_topk_test"])
        self.assertEqual(run["proposals_per_image"], 100)
        self.assertGreater(run["detections_per_image"], 0)
        self.assertLessEqual(run["detections_per_image"], 100)
        train = out["train"]
        self.assertEqual(train["batch"], 2)  # SOLVER.IMS_PER_BATCH of the quick config
        self.assertGreater(train["sec_per_iter"], 0)
        self.assertGreater(train["proposals_per_image"], 0)
        # sampled boxes: ROI_HEADS.BATCH_SIZE_PER_IMAGE (64), ground truth kept (keep_all_gt)
        self.assertGreaterEqual(train["roi_boxes_per_image"], 6)
        self.assertLessEqual(train["roi_boxes_per_image"], 64 + 6)
        self.assertIn("ru_maxrss", out["peak_memory_kind"])

    def test_calibration_normalises_frozen_bn(self):
        cfg = self.bench.make_cfg(R50_CONFIG, "cpu", (64, 96), 8, R50_OPTS)
        g = torch.Generator().manual_seed(0)
        inputs = self.bench.make_inputs(1, 64, 96, 8, g, with_instances=False)
        raw, n0 = self.bench.build_benchmark_model(cfg, None, seed=0)
        calibrated, n = self.bench.build_benchmark_model(cfg, inputs, seed=0)
        self.assertEqual(n0, 0)
        frozen = [m for m in calibrated.modules() if isinstance(m, FrozenBatchNorm2d)]
        self.assertGreater(len(frozen), 50)
        self.assertGreaterEqual(n, len(frozen))  # + the embedding head's BatchNorm1d
        for m in calibrated.modules():
            self.assertFalse(m._forward_pre_hooks, "calibration hooks left behind")

        @torch.no_grad()
        def res4_std(model):
            images = model.preprocess_image(inputs)
            return model.backbone(images.tensor)["res4"].std().item()

        self.assertGreater(res4_std(raw), 100.0)  # random FrozenBN: activations explode
        self.assertLess(res4_std(calibrated), 10.0)

    def test_frozen_bn_model_gets_proposals_when_calibrated(self):
        out = _quiet(self.bench.main, R50_TINY + R50_OPTS)
        self.assertTrue(out["norm_stats_calibrated"])
        (run,) = out["inference"]
        self.assertEqual(run["proposals_per_image"], 10)
        self.assertGreater(run["detections_per_image"], 0)

    def test_uncalibrated_frozen_bn_run_is_refused(self):
        path = os.path.join(self._tmp.name, "refused.json")
        argv = R50_TINY + ["--no-calibrate", "--output", path] + R50_OPTS
        with self.assertRaisesRegex(self.bench.NoROIBoxesError, "figures refused"):
            _quiet(self.bench.main, argv)
        with open(path) as f:
            out = json.load(f)
        self.assertFalse(out["complete"])
        self.assertIn("NoROIBoxesError", out["error"])
        self.assertNotIn("inference", out)


class TestGpuCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.check = gpu_check
        cls._tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_gpu_plan(self):
        steps = {s.name: s for s in self.check.plan(smoke=False)}
        self.assertEqual(
            list(steps), ["env", "parity", "infer_R50", "infer_R101", "train_R101", "train_R50"]
        )
        self.assertLess(sum(s.timeout_s for s in steps.values()), 12 * 60)
        self.assertIn("cuda", steps["parity"].argv)
        for name in ("infer_R50", "infer_R101", "train_R101", "train_R50"):
            argv = steps[name].argv
            self.assertIn("cuda", argv)
            self.assertTrue(os.path.isfile(argv[argv.index("--config") + 1]))
            # every bench step parses
            self.check.bench_model.parse_args(argv)

    def test_smoke_in_process(self):
        out_dir = os.path.join(self._tmp.name, "smoke")
        res = _quiet(self.check.main, ["--smoke", "--out", out_dir])
        self.assertTrue(res["all_ok"], {k: v["status"] for k, v in res["steps"].items()})
        with open(os.path.join(out_dir, "gpu_check.json")) as f:
            self.assertEqual(json.load(f)["all_ok"], True)
        parity = res["steps"]["parity"]["result"]
        self.assertEqual(
            parity["tf32"], {"cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": False}
        )
        fp32 = parity["fp32"]
        for key in (
            "box_matched_iou_min",
            "score_max_abs_diff",
            "embed_min_cosine",
            "query_embed_min_cosine",
            "feature_max_rel_diff",
        ):
            self.assertIn(key, fp32)
        self.assertTrue(parity["fp32_ok"])  # CPU against CPU: identical up to rounding
        self.assertGreater(fp32["detections_a"], 0)
        self.assertIn("amp", parity)
        self.assertEqual(res["env"]["torch"], torch.__version__)
        infer = res["steps"]["infer_quick"]["result"]["inference"][0]
        self.assertEqual(infer["proposals_per_image"], 100)
        train = res["steps"]["train_quick"]["result"]["train"]
        self.assertGreater(train["roi_boxes_per_image"], 0)
        self.assertEqual(
            {r["step"] for r in res["summary"]}, {"parity", "infer_quick", "train_quick"}
        )

    def test_failed_step_is_recorded(self):
        out_dir = os.path.join(self._tmp.name, "failed")
        os.makedirs(out_dir)
        bad = self.check.Step("train_quick", 10, "bench", ["--config", "/nonexistent.yaml"])
        self.assertEqual(self.check.run_step(bad, out_dir), 1)
        with open(os.path.join(out_dir, "steps.tsv"), "w") as f:
            f.write("env\t124\t60\ntrain_quick\t1\t2\n")
        res = self.check.combine(out_dir, smoke=True)
        self.assertFalse(res["all_ok"])
        steps = res["steps"]
        self.assertEqual(steps["env"]["status"], "timeout")
        self.assertEqual(steps["train_quick"]["status"], "failed")
        self.assertIn("error", steps["train_quick"]["result"])
        self.assertEqual(steps["parity"]["status"], "not_run")

    @pytest.mark.slow
    @unittest.skipUnless(shutil.which("bash") and shutil.which("timeout"), "needs bash, timeout")
    def test_shell_script_smoke(self):
        out_dir = os.path.join(self._tmp.name, "shell")
        env = dict(os.environ, GPU_CHECK_STEPS="env parity")
        proc = subprocess.run(
            ["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), out_dir, "--smoke"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        with open(os.path.join(out_dir, "gpu_check.json")) as f:
            res = json.load(f)
        statuses = {k: v["status"] for k, v in res["steps"].items()}
        self.assertEqual(statuses["env"], "ok", res["steps"]["env"].get("log_tail"))
        self.assertEqual(statuses["parity"], "ok", res["steps"]["parity"].get("log_tail"))
        self.assertEqual(statuses["infer_quick"], "not_run")
        self.assertTrue(res["steps"]["parity"]["result"]["fp32_ok"])
        self.assertTrue(os.path.isfile(os.path.join(out_dir, "env.txt")))


if __name__ == "__main__":
    unittest.main()
