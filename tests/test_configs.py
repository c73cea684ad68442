"""Every config in configs/ loads (Base-* files are only loaded through their children)."""

import glob
import os
import unittest

import torch

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

import ian_d2.modeling  # noqa: F401  (registers PersonSearchROIHeads and CropClassifier)
from ian_d2.config import add_ian_config, resolve_num_pids

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")


def _config_files():
    files = glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
    return sorted(f for f in files if not os.path.basename(f).startswith("Base-"))


def _load(path):
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(path)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


class TestConfigs(unittest.TestCase):
    def test_all_configs_load(self):
        files = _config_files()
        self.assertGreater(len(files), 10)
        for path in files:
            with self.subTest(config=os.path.relpath(path, CONFIG_DIR)):
                cfg = _load(path)
                self.assertEqual(cfg.VERSION, 2)
                self.assertEqual(cfg.MODEL.ROI_HEADS.NAME, "PersonSearchROIHeads")
                self.assertIn(cfg.MODEL.META_ARCHITECTURE, ("PersonSearchRCNN", "CropClassifier"))
                self.assertEqual(cfg.MODEL.ROI_HEADS.NUM_CLASSES, 1)
                self.assertTrue(cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG)
                self.assertIn(cfg.MODEL.REID.LOSS_TYPE, ("RSS", "OIM"))
                self.assertIn(cfg.MODEL.CENTER_LOSS.INPUT, ("gt", "all_pos"))
                self.assertTrue(cfg.OUTPUT_DIR.startswith("./output/"))

    def test_paper_settings(self):
        cfg = _load(os.path.join(CONFIG_DIR, "IAN_R101.yaml"))
        self.assertEqual(cfg.MODEL.RESNETS.DEPTH, 101)
        self.assertEqual(cfg.MODEL.REID.EMBED_DIM, 256)
        self.assertEqual(cfg.MODEL.REID.NUM_PIDS, 5532)
        self.assertAlmostEqual(cfg.MODEL.CENTER_LOSS.WEIGHT, 0.032)
        self.assertEqual(cfg.DATASETS.TRAIN, ("cuhk_sysu_train",))
        self.assertEqual(cfg.INPUT.MIN_SIZE_TEST, 900)
        self.assertEqual(cfg.INPUT.MAX_SIZE_TEST, 1500)
        prw = _load(os.path.join(CONFIG_DIR, "PRW", "IAN_R101_OIM.yaml"))
        self.assertEqual(prw.MODEL.REID.OIM.CQ_SIZE, 500)
        self.assertEqual(prw.DATASETS.TEST, ("prw_test",))
        ablation = _load(os.path.join(CONFIG_DIR, "CUHK-SYSU", "E2E-PS_R101.yaml"))
        self.assertEqual(ablation.MODEL.CENTER_LOSS.WEIGHT, 0.0)

    def test_steps_chain(self):
        for root in ("CUHK-SYSU", "PRW", "quick_schedules"):
            steps = [
                _load(f)
                for f in sorted(glob.glob(os.path.join(CONFIG_DIR, root, "*step[123]_*.yaml")))
            ]
            self.assertEqual(len(steps), 3, root)
            self.assertEqual(steps[0].MODEL.META_ARCHITECTURE, "CropClassifier")
            for prev, nxt in zip(steps[:-1], steps[1:]):
                self.assertEqual(
                    nxt.MODEL.WEIGHTS, os.path.join(prev.OUTPUT_DIR, "model_final.pth")
                )
            self.assertEqual(steps[1].MODEL.CENTER_LOSS.WEIGHT, 0.0)
            self.assertGreater(steps[2].MODEL.CENTER_LOSS.WEIGHT, 0.0)

    def test_num_pids_from_metadata(self):
        cfg = _load(os.path.join(CONFIG_DIR, "quick_schedules", "IAN_R18_GN_instant_test.yaml"))
        cfg.DATASETS.TRAIN = ("ian_test_configs_train",)
        self.assertEqual(cfg.MODEL.REID.NUM_PIDS, 0)
        with self.assertRaises(ValueError):
            resolve_num_pids(cfg)
        MetadataCatalog.get("ian_test_configs_train").set(num_train_pids=7)
        try:
            self.assertEqual(resolve_num_pids(cfg), 7)
            cfg.MODEL.REID.NUM_PIDS = 9  # an explicit value wins
            self.assertEqual(resolve_num_pids(cfg), 9)
        finally:
            MetadataCatalog.remove("ian_test_configs_train")

    def test_add_ian_config_does_not_touch_global_defaults(self):
        add_ian_config(get_cfg())
        self.assertFalse(hasattr(get_cfg().MODEL, "REID"))


if __name__ == "__main__":
    unittest.main()
