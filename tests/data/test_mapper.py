import os
import tempfile
import unittest

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from ian_d2.data import PersonSearchDatasetMapper


def _record(path, boxes, pids):
    return {
        "file_name": path,
        "image_id": os.path.basename(path),
        "height": 60,
        "width": 100,
        "camera_id": 3,
        "annotations": [
            {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": p}
            for b, p in zip(boxes, pids)
        ],
    }


class TestPersonSearchDatasetMapper(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls._tmp.name, "img.jpg")
        cv2.imwrite(cls.path, np.random.RandomState(0).randint(0, 255, (60, 100, 3), np.uint8))
        # distinct widths so each box is identifiable after the transform
        cls.boxes = [(0.0, 0.0, 10.0, 20.0), (30.0, 5.0, 50.0, 50.0), (60.0, 10.0, 90.0, 58.0)]
        cls.pids = [7, -1, 2]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _mapper(self, augs, is_train=True):
        return PersonSearchDatasetMapper(is_train=is_train, augmentations=augs, image_format="BGR")

    def test_pids_follow_boxes_through_flip_and_resize(self):
        mapper = self._mapper([T.Resize((120, 200)), T.RandomFlip(prob=1.0, horizontal=True)])
        out = mapper(_record(self.path, self.boxes, self.pids))
        inst = out["instances"]
        self.assertEqual(tuple(out["image"].shape), (3, 120, 200))
        self.assertEqual(inst.gt_pids.dtype, torch.int64)
        # expected: scale x2 then mirror x -> 200 - x
        for b, p in zip(self.boxes, self.pids):
            exp = torch.tensor([200 - 2 * b[2], 2 * b[1], 200 - 2 * b[0], 2 * b[3]])
            k = int(torch.nonzero((inst.gt_boxes.tensor - exp).abs().sum(1) < 1e-3)[0])
            self.assertEqual(int(inst.gt_pids[k]), p)
        self.assertEqual(out["camera_id"], 3)

    def test_empty_box_filtering_keeps_alignment(self):
        # the crop removes the first box entirely; the others keep their ids
        mapper = self._mapper([T.CropTransform(20, 0, 80, 60)])
        out = mapper(_record(self.path, self.boxes, self.pids))
        inst = out["instances"]
        self.assertEqual(inst.gt_pids.tolist(), [-1, 2])
        self.assertTrue(torch.allclose(inst.gt_boxes.tensor[0], torch.tensor([10.0, 5, 30, 50])))

    def test_no_annotations_gives_empty_instances(self):
        mapper = self._mapper([])
        out = mapper(_record(self.path, [], []))
        self.assertEqual(len(out["instances"]), 0)
        self.assertEqual(tuple(out["instances"].gt_pids.shape), (0,))

    def test_test_time_keeps_query_box_in_resized_coordinates(self):
        mapper = self._mapper([T.Resize((30, 50))], is_train=False)
        out = mapper(_record(self.path, [self.boxes[2]], [2]))
        self.assertTrue(
            torch.allclose(out["instances"].gt_boxes.tensor, torch.tensor([[30.0, 5, 45, 29]]))
        )
        mapper.keep_test_annotations = False
        self.assertNotIn("instances", mapper(_record(self.path, [self.boxes[2]], [2])))

    def test_from_config(self):
        cfg = get_cfg()
        cfg.INPUT.MIN_SIZE_TRAIN = (30,)
        cfg.INPUT.MAX_SIZE_TRAIN = 50
        mapper = PersonSearchDatasetMapper(cfg, is_train=True)
        out = mapper(_record(self.path, self.boxes, self.pids))
        self.assertEqual(tuple(out["image"].shape[1:]), (30, 50))
        self.assertEqual(sorted(out["instances"].gt_pids.tolist()), sorted(self.pids))


if __name__ == "__main__":
    unittest.main()


class TestColorJitter(unittest.TestCase):
    """INPUT.COLOR_JITTER: per-channel gains, brightness and contrast, training only."""

    def test_gains_per_channel_boxes_unchanged(self):
        from ian_d2.data.color import RandomChannelGain

        np.random.seed(0)
        image = np.full((4, 5, 3), 100, np.uint8)
        aug = T.AugInput(image.copy())
        tfm = RandomChannelGain(0.3)(aug)
        means = aug.image.reshape(-1, 3).mean(0)
        self.assertTrue(np.all((means >= 70) & (means <= 130)), means)
        self.assertGreater(np.ptp(means), 1.0)  # the channels got different gains
        boxes = np.array([[1.0, 1.0, 3.0, 4.0]])
        self.assertTrue(np.array_equal(tfm.apply_box(boxes), boxes))
        with self.assertRaisesRegex(ValueError, "COLOR_JITTER"):
            RandomChannelGain(1.5)

    def test_config_adds_it_to_training_only(self):
        from ian_d2.config import add_ian_config
        from ian_d2.data.color import RandomChannelGain
        from ian_d2.utils.fingerprint import model_config_yaml

        cfg = get_cfg()
        add_ian_config(cfg)
        plain = model_config_yaml(cfg)
        cfg.INPUT.COLOR_JITTER = 0.2
        train = PersonSearchDatasetMapper(cfg, is_train=True)
        test = PersonSearchDatasetMapper(cfg, is_train=False)
        self.assertIsInstance(train.augmentations.augs[0], RandomChannelGain)
        self.assertFalse(any(isinstance(a, RandomChannelGain) for a in test.augmentations.augs))
        self.assertEqual(model_config_yaml(cfg), plain)  # not part of the model fingerprint
