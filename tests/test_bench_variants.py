"""benchmarks.bench_variants: the paired differences, the goal check and the exported model
behind the eager model's call (the benchmark itself needs the trained demo model)."""

import unittest

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from benchmarks import bench_variants as bv


def _record(ap, top1):
    q = list(range(len(ap)))
    return {
        "per_query": {
            p: {"query_index": q, "ap": list(ap), "top1": list(top1)} for p in bv.PROTOCOLS.values()
        }
    }


class TestBenchVariants(unittest.TestCase):
    def test_calibration_list_holds_absolute_paths(self):
        """The list holds wherever --work-dir is: its paths are absolute (a relative
        'datasets/...' list under a work dir outside the repository was unreadable)."""
        import os
        import tempfile

        from benchmarks.variants.build import calibration_list

        with tempfile.TemporaryDirectory() as work:
            rel = os.path.join("datasets", "ablation", "s10.jpg")
            path = calibration_list(work, {"train_images": [rel]})
            with open(path) as f:
                self.assertEqual(f.read().split(), [os.path.abspath(rel)])

    def test_cpu_recorded_with_the_figures(self):
        from benchmarks.machine import cpu_record

        record = cpu_record()
        self.assertIsInstance(record["model"], str)
        for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                     "amx_int8"):  # fmt: skip
            self.assertIn(flag, record["flags"])
        self.assertIn("native_bf16", record)

    def test_variants(self):
        names = [v[0] for v in bv.variants()]
        self.assertEqual(len(names), 8)
        self.assertEqual(names[0], "eager_fp32")
        self.assertIn("onnx_int8+final", names)

    def test_paired_deltas(self):
        rng = np.random.default_rng(0)
        ap = rng.random(200)
        top1 = (ap > 0.5).astype(float)
        same = bv.paired_deltas(_record(ap, top1), _record(ap, top1), 200)
        d = same["gallery 100"]["delta_mAP"]
        self.assertEqual(d["mean"], 0.0)
        self.assertEqual(d["ci95"], [0.0, 0.0])
        better = bv.paired_deltas(_record(ap, top1), _record(np.minimum(ap + 0.1, 1), top1), 200)
        d = better["full pool"]["delta_mAP"]
        self.assertGreater(d["ci95"][0], 0)  # a paired shift: the interval excludes 0
        self.assertAlmostEqual(d["mean"], 100 * (np.minimum(ap + 0.1, 1) - ap).mean(), places=2)
        skipped = ap.copy()
        skipped[:10] = np.nan  # queries skipped by one variant are left out of both
        self.assertEqual(
            bv.paired_deltas(_record(ap, top1), _record(skipped, top1), 50)["gallery 100"][
                "n_queries"
            ],
            190,
        )

    def test_goal(self):
        self.assertIsNone(bv.goal({"accuracy": {}}))

        def acc(mean, lo, hi):
            d = {"delta_mAP": {"mean": mean, "ci95": [lo, hi]}}
            return {"vs_eager_fp32": {"gallery 100": d}}

        result = {
            "accuracy": {
                "variants": {
                    "eager_fp32": {},
                    "onnx_int8": acc(-0.2, -0.9, 0.4),
                    "torchscript_bf16": acc(-0.8, -1.5, -0.1),
                    "onnx_fp32": acc(0.0, 0.0, 0.0),
                    "onnx_int8+final": dict(
                        acc(1.0, 0.2, 1.8),
                        **{"vs_eager_fp32+final": acc(0.1, -0.5, 0.6)["vs_eager_fp32"]},
                    ),
                }
            },
            "speed": {
                "r50_900x1500": {
                    "variants": {
                        "eager_fp32": {"speedup_vs_eager_fp32": 1.0},
                        "onnx_int8": {"speedup_vs_eager_fp32": 2.6},
                        "torchscript_bf16": {"speedup_vs_eager_fp32": 2.7},
                        "onnx_fp32": {"speedup_vs_eager_fp32": 1.7},
                        "onnx_int8+final": {"speedup_vs_eager_fp32": 2.5},
                    }
                }
            },
        }
        g = bv.goal(result)
        self.assertEqual(g["met_by"], ["onnx_int8"])
        self.assertFalse(g["variants"]["torchscript_bf16"]["accuracy_ok"])
        self.assertFalse(g["variants"]["onnx_fp32"]["speed_ok"])
        # a gain of 1 point with final boxes is outside ±0.5 of eager fp32 (the test),
        # but its int8 costs nothing against eager fp32 with final boxes
        final = g["variants"]["onnx_int8+final"]
        self.assertTrue(final["speed_ok"])
        self.assertFalse(final["accuracy_ok"])
        self.assertTrue(final["precision_cost_ok"])
        self.assertFalse(final["meets_goal"])

    def test_runtime_as_model(self):
        """Gallery inputs -> the runtime's detections; query inputs -> the given box (resized
        coordinates in, original out) with its embedding; both as PersonSearchRCNN returns."""

        class FakeRuntime:
            def detect_preprocessed(self, inp):
                self.gallery = inp
                return {
                    "boxes": np.array([[1, 2, 30, 40]], np.float32),
                    "scores": np.array([0.9], np.float32),
                    "embeddings": np.ones((1, 4), np.float32) / 2,
                }

            def embed_preprocessed(self, inp, boxes):
                self.query_boxes = boxes
                return np.ones((len(boxes), 4), np.float32) / 2

        rt = FakeRuntime()
        model = bv.RuntimeAsModel(rt)
        gt = Instances((50, 100))
        gt.gt_boxes = Boxes(torch.tensor([[10.0, 5, 20, 25]]))
        image = torch.zeros(3, 50, 100)
        out = model(
            [
                {"image": image, "height": 100, "width": 200},
                {"image": image, "height": 100, "width": 200, "query_index": 3, "instances": gt},
            ]
        )
        self.assertEqual(out[0]["instances"].pred_boxes.tensor.tolist(), [[1, 2, 30, 40]])
        self.assertEqual(rt.gallery["height"], 100)
        np.testing.assert_allclose(rt.query_boxes, [[20, 10, 40, 50]])
        q = out[1]["instances"]
        self.assertEqual(q.image_size, (100, 200))
        self.assertEqual(q.pred_boxes.tensor.tolist(), [[20, 10, 40, 50]])
        self.assertEqual(q.scores.tolist(), [1.0])
        self.assertEqual(q.pred_embeds.shape, (1, 4))
