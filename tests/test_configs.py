"""Every config in configs/ loads (Base-* files are only loaded through their children)."""

import glob
import os
import unittest

import torch

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer

import ian_d2.modeling  # noqa: F401  (registers PersonSearchROIHeads and CropClassifier)
from ian_d2.config import add_ian_config, get_ian_cfg
from ian_d2.modeling import resolve_num_pids, with_num_pids
from ian_d2.modeling.losses import build_center_loss
from ian_d2.engine import check_batch_size, per_process_batch
from ian_d2.utils.testing import CONFIG_DIR


def _config_files():
    files = glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
    return sorted(f for f in files if not os.path.basename(f).startswith("Base-"))


def _load(path):
    cfg = get_ian_cfg(path)
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
        for root, pattern in (
            ("CUHK-SYSU", "IAN_R101_step[123]_*.yaml"),
            ("CUHK-SYSU", "IAN_R101_paper_step[123]_*.yaml"),
            ("PRW", "IAN_R101_step[123]_*.yaml"),
            ("PRW", "IAN_R101_paper_step[123]_*.yaml"),
            ("quick_schedules", "*step[123]_*.yaml"),
            ("Synthetic", "*step[123]_*.yaml"),
            (os.path.join("Synthetic", "ablations"), "step[123]_*.yaml"),
        ):
            files = sorted(glob.glob(os.path.join(CONFIG_DIR, root, pattern)))
            steps = [_load(f) for f in files]
            self.assertEqual(len(steps), 3, (root, pattern))
            self.assertEqual(steps[0].MODEL.META_ARCHITECTURE, "CropClassifier")
            for prev, nxt in zip(steps[:-1], steps[1:]):
                self.assertEqual(
                    nxt.MODEL.WEIGHTS, os.path.join(prev.OUTPUT_DIR, "model_final.pth")
                )
            self.assertEqual(steps[1].MODEL.CENTER_LOSS.WEIGHT, 0.0)
            self.assertGreater(steps[2].MODEL.CENTER_LOSS.WEIGHT, 0.0)
            self.assertEqual(len({s.OUTPUT_DIR for s in steps}), 3)

    def test_paper_schedule(self):
        """The paper's schedule, pinned (docs/TRAINING.md: paper vs tuned)."""
        for root, pids, train in (
            ("CUHK-SYSU", 5532, "cuhk_sysu_train"),
            ("PRW", 482, "prw_train"),
        ):
            step1, step2, step3 = (
                _load(os.path.join(CONFIG_DIR, root, f"IAN_R101_paper_{name}.yaml"))
                for name in ("step1_crop_pretrain", "step2_det_rss", "step3_center")
            )
            for cfg in (step1, step2, step3):
                with self.subTest(root=root, out=cfg.OUTPUT_DIR):
                    self.assertEqual(cfg.MODEL.RESNETS.DEPTH, 101)
                    self.assertEqual(cfg.MODEL.REID.NUM_PIDS, pids)
                    self.assertEqual(cfg.DATASETS.TRAIN, (train,))
                    self.assertEqual(cfg.SOLVER.REFERENCE_WORLD_SIZE, 1)  # one GPU as written
                    self.assertEqual(cfg.SOLVER.WARMUP_ITERS, 0)
                    self.assertEqual(cfg.MODEL.REID.EMBED_DIM, 256)
            crops = step1.MODEL.REID.PRETRAIN_CROPS
            self.assertEqual(tuple(crops.CROP_SIZE), (224, 224))
            self.assertEqual((crops.PERSONS_PER_IMAGE, crops.NUM_BG_PER_IMAGE), (1, -1))
            # batch of 8 crops: 4 images x (1 person + as many background crops)
            self.assertEqual(step1.SOLVER.IMS_PER_BATCH * 2, 8)
            self.assertAlmostEqual(step1.SOLVER.BASE_LR, 0.001)
            self.assertEqual((step1.SOLVER.MAX_ITER, tuple(step1.SOLVER.STEPS)), (20000, ()))
            self.assertEqual(step2.SOLVER.IMS_PER_BATCH, 2)
            self.assertAlmostEqual(step2.SOLVER.BASE_LR, 0.001)
            self.assertEqual(step2.SOLVER.MAX_ITER, 120000)
            self.assertEqual(tuple(step2.SOLVER.STEPS), (100000,))
            self.assertAlmostEqual(step2.SOLVER.GAMMA, 0.1)
            self.assertEqual(step2.MODEL.CENTER_LOSS.WEIGHT, 0.0)
            self.assertEqual(step3.SOLVER.IMS_PER_BATCH, 2)
            self.assertAlmostEqual(step3.SOLVER.BASE_LR, 0.0001)
            self.assertEqual((step3.SOLVER.MAX_ITER, tuple(step3.SOLVER.STEPS)), (20000, ()))
            self.assertAlmostEqual(step3.MODEL.CENTER_LOSS.WEIGHT, 0.032)
            self.assertEqual(step3.MODEL.CENTER_LOSS.INPUT, "gt")

    def test_any_gpu_count(self):
        """Every training config splits on 1, 2, 4 and 8 processes with the same images per
        process; the learning rate and schedule follow Detectron2's linear scaling."""
        for path in _config_files():
            cfg = _load(path)
            per_process = per_process_batch(cfg, 1)
            for n in (1, 2, 4, 8):
                with self.subTest(config=os.path.relpath(path, CONFIG_DIR), gpus=n):
                    check_batch_size(cfg, n)
                    scaled = DefaultTrainer.auto_scale_workers(cfg, n)
                    self.assertEqual(scaled.SOLVER.IMS_PER_BATCH % n, 0)
                    self.assertEqual(scaled.SOLVER.IMS_PER_BATCH // n, per_process)
                    ratio = scaled.SOLVER.IMS_PER_BATCH / cfg.SOLVER.IMS_PER_BATCH
                    self.assertAlmostEqual(scaled.SOLVER.BASE_LR, cfg.SOLVER.BASE_LR * ratio)
                    self.assertGreater(scaled.SOLVER.MAX_ITER, 0)
        paper = _load(os.path.join(CONFIG_DIR, "CUHK-SYSU", "IAN_R101_paper_step2_det_rss.yaml"))
        eight = DefaultTrainer.auto_scale_workers(paper, 8)
        self.assertEqual((eight.SOLVER.IMS_PER_BATCH, eight.SOLVER.MAX_ITER), (16, 15000))
        self.assertEqual(tuple(eight.SOLVER.STEPS), (12500,))
        self.assertAlmostEqual(eight.SOLVER.BASE_LR, 0.008)

    def test_unsplittable_batch_says_what_to_set(self):
        cfg = _load(os.path.join(CONFIG_DIR, "IAN_R101.yaml"))
        cfg.SOLVER.REFERENCE_WORLD_SIZE = 0
        check_batch_size(cfg, 4)
        with self.assertRaisesRegex(ValueError, r"IMS_PER_BATCH=4 images .* over 8 processes.*"
                                    r"SOLVER.REFERENCE_WORLD_SIZE"):  # fmt: skip
            check_batch_size(cfg, 8)
        cfg.SOLVER.REFERENCE_WORLD_SIZE = 3
        with self.assertRaisesRegex(ValueError, "not a multiple of SOLVER.REFERENCE_WORLD_SIZE=3"):
            check_batch_size(cfg, 1)

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

    def test_num_pids_resolved_once_losses_read_the_config(self):
        cfg = _load(os.path.join(CONFIG_DIR, "quick_schedules", "IAN_R18_GN_instant_test.yaml"))
        cfg.DATASETS.TRAIN = ("ian_test_configs_once_train",)
        # a loss reads MODEL.REID.NUM_PIDS only: 0 is refused, whatever the training set says
        with self.assertRaisesRegex(ValueError, "MODEL.REID.NUM_PIDS is 0.*build_model"):
            build_center_loss(cfg)
        MetadataCatalog.get("ian_test_configs_once_train").set(num_train_pids=5)
        try:
            cfg.freeze()
            resolved = with_num_pids(cfg)
            self.assertEqual(resolved.MODEL.REID.NUM_PIDS, 5)
            self.assertTrue(resolved.is_frozen())
            self.assertEqual(cfg.MODEL.REID.NUM_PIDS, 0)  # the caller's config is untouched
            self.assertEqual(build_center_loss(resolved).centers.shape[0], 5)
            self.assertIs(with_num_pids(resolved), resolved)  # set: nothing resolved again
        finally:
            MetadataCatalog.remove("ian_test_configs_once_train")

    def test_add_ian_config_does_not_touch_global_defaults(self):
        add_ian_config(get_cfg())
        self.assertFalse(hasattr(get_cfg().MODEL, "REID"))


if __name__ == "__main__":
    unittest.main()
