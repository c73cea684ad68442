"""ian_d2.utils.testing, the helpers that the tests and the benchmarks share."""

import os
import unittest
from unittest import mock

import torch

from ian_d2.utils import testing
from ian_d2.utils.testing import NUM_PIDS, quick_cfg, synthetic_inputs


class TestQuickCfg(unittest.TestCase):
    def test_tiny_defaults(self):
        cfg = quick_cfg()
        self.assertEqual(cfg.MODEL.DEVICE, "cpu")
        self.assertEqual(cfg.MODEL.WEIGHTS, "")
        self.assertEqual(cfg.MODEL.REID.NUM_PIDS, NUM_PIDS)
        self.assertEqual(cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION, 4)
        self.assertEqual(cfg.MODEL.BACKBONE.NAME, "build_resnet_backbone")
        self.assertEqual(cfg.MODEL.RESNETS.DEPTH, 18)

    def test_opts_then_keyword_overrides(self):
        cfg = quick_cfg(
            opts=["MODEL.REID.LOSS_TYPE", "OIM", "MODEL.REID.EMBED_DIM", 64],
            MODEL__REID__EMBED_DIM=32,
            MODEL__CENTER_LOSS__WEIGHT=0.0,
        )
        self.assertEqual(cfg.MODEL.REID.LOSS_TYPE, "OIM")
        self.assertEqual(cfg.MODEL.REID.EMBED_DIM, 32)  # the keyword comes last
        self.assertEqual(cfg.MODEL.CENTER_LOSS.WEIGHT, 0.0)

    def test_file_as_it_is_without_tiny(self):
        cfg = quick_cfg(tiny=False)
        self.assertEqual(cfg.MODEL.REID.NUM_PIDS, 0)  # the quick config reads it from the data
        self.assertNotEqual(cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION, 4)
        path = os.path.join(testing.CONFIG_DIR, testing.QUICK_CONFIG)
        self.assertEqual(quick_cfg(path, tiny=False), cfg)  # an absolute path works too

    def test_missing_configs_are_named(self):
        with self.assertRaisesRegex(FileNotFoundError, "nope.yaml"):
            quick_cfg("nope.yaml")
        with mock.patch.object(testing, "CONFIG_DIR", "/nonexistent/configs"):
            with self.assertRaisesRegex(FileNotFoundError, "installed without its repository"):
                quick_cfg()


class TestSyntheticInputs(unittest.TestCase):
    def test_seeded_and_labeled(self):
        a, b = synthetic_inputs(seed=3), synthetic_inputs(seed=3)
        self.assertEqual(len(a), 2)
        for x, y in zip(a, b):
            self.assertTrue(torch.equal(x["image"], y["image"]))
            self.assertEqual(tuple(x["image"].shape), (3, 96, 128))
            self.assertEqual((x["height"], x["width"]), (192, 256))
            pids = x["instances"].gt_pids
            self.assertEqual(int(pids[-1]), -1)  # one unlabeled person per image
            self.assertTrue(bool(((pids >= -1) & (pids < NUM_PIDS)).all()))
        self.assertNotIn("height", synthetic_inputs(1, with_original_size=False)[0])


if __name__ == "__main__":
    unittest.main()
