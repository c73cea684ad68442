"""The real CUHK-SYSU / PRW loaders and their registration, on tiny generated datasets."""

import logging
import os
import shutil
import tempfile
import unittest

import numpy as np
from detectron2.structures import BoxMode
import scipy.io
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from ian_d2.data import PersonSearchDatasetMapper, get_num_train_pids
from ian_d2.data import register_person_search_dataset
from ian_d2.data.datasets._common import DatasetFormatError
from ian_d2.data.datasets.cuhk_sysu import (
    find_cuhk_sysu_protocols,
    load_cuhk_sysu_gallery,
    load_cuhk_sysu_protocol,
    load_cuhk_sysu_query,
    load_cuhk_sysu_subset_indices,
    load_cuhk_sysu_train,
)
from ian_d2.data.datasets.prw import load_prw_gallery, load_prw_query, load_prw_train
from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw
from tests.synthetic_testing import unregister


class _Registered:
    """Register a root under a unique prefix; remove the names afterwards."""

    def __init__(self, family, root):
        self.family, self.root = family, root

    def __enter__(self):
        self.names = register_person_search_dataset(self.family, f"_t_{id(self)}", self.root)
        return self.names

    def __exit__(self, *exc):
        unregister(self.names)


class TestCuhkSysuSynthetic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.root = os.path.join(cls._tmp.name, "cuhk_sysu")
        cls.summary = generate_cuhk_sysu(cls.root, size="tiny", seed=0)
        with cls().assertLogs("ian_d2.data.datasets.cuhk_sysu", logging.INFO) as logs:
            cls.train = load_cuhk_sysu_train(cls.root)
        cls.train_logs = "\n".join(logs.output)
        cls.gallery = load_cuhk_sysu_gallery(cls.root)
        cls.query = load_cuhk_sysu_query(cls.root)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_counts(self):
        s = self.summary
        self.assertEqual(len(self.train), s["train_images"])
        self.assertEqual(len(self.gallery), s["test_images"])
        n_boxes = sum(len(r["annotations"]) for r in self.train + self.gallery)
        self.assertEqual(n_boxes, s["boxes"])  # zero-size boxes dropped
        self.assertIn(f"dropped {s['zero_size_boxes']} zero-size boxes", self.train_logs)
        self.assertEqual(len(self.query), s["queries"])

    def test_train_identities(self):
        pids = [a["person_id"] for r in self.train for a in r["annotations"]]
        labeled = [p for p in pids if p >= 0]
        self.assertEqual(len(labeled), self.summary["train_boxes"])
        self.assertEqual(sorted(set(labeled)), list(range(self.summary["train_identities"])))
        for pid in set(labeled):  # each identity in >= 2 images
            imgs = {
                r["image_id"] for r in self.train for a in r["annotations"] if a["person_id"] == pid
            }
            self.assertGreaterEqual(len(imgs), 2)
        self.assertIn(-1, pids)

    def test_record_format(self):
        r = self.train[0]
        self.assertTrue(os.path.isfile(r["file_name"]))
        self.assertEqual(r["image_id"], os.path.basename(r["file_name"]))
        a = r["annotations"][0]
        # the integer value of Detectron2's IntEnum (the readers do not import torch)
        self.assertEqual(a["bbox_mode"], BoxMode.XYXY_ABS)
        self.assertEqual(BoxMode(a["bbox_mode"]), BoxMode.XYXY_ABS)
        self.assertEqual(a["category_id"], 0)
        for rec in self.train + self.gallery:
            b = np.asarray([x["bbox"] for x in rec["annotations"]]).reshape(-1, 4)
            self.assertTrue(np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1]))
            self.assertTrue(np.all(b >= 0) and np.all(b[:, 2] <= rec["width"]))
        pool = {r["image_id"] for r in self.gallery}
        self.assertFalse(pool & {r["image_id"] for r in self.train})

    def test_queries_and_protocols(self):
        sizes = find_cuhk_sysu_protocols(self.root)
        self.assertEqual(sorted(sizes), self.summary["gallery_sizes"])
        ref = None
        for n in sizes:
            p = load_cuhk_sysu_protocol(self.root, n)
            self.assertEqual(p.gallery_imnames.shape, (self.summary["queries"], n))
            self.assertTrue(np.all(p.count_gt() >= 1))
            if ref is not None:  # the same queries in every protocol file
                self.assertEqual(p.query_imnames, ref.query_imnames)
                np.testing.assert_array_equal(p.query_boxes, ref.query_boxes)
            ref = p
        q = self.query[0]
        self.assertEqual(q["query_index"], 0)
        self.assertEqual(len(q["annotations"]), 1)
        np.testing.assert_array_equal(q["annotations"][0]["bbox"], ref.query_boxes[0])
        # gallery boxes of query identities carry the identity's number
        pid = q["annotations"][0]["person_id"]
        self.assertGreater(pid, 0)
        hits = [a for r in self.gallery for a in r["annotations"] if a["person_id"] == pid]
        self.assertGreaterEqual(len(hits), int(ref.count_gt()[0]) + 1)

    def test_records_without_images(self):
        sizes = {r["image_id"]: (r["height"], r["width"]) for r in self.gallery}
        root = os.path.join(self._tmp.name, "annotations_only")
        shutil.copytree(os.path.join(self.root, "annotation"), os.path.join(root, "annotation"))
        self.assertEqual(load_cuhk_sysu_gallery(root, image_sizes=sizes), self.gallery_in(root))
        self.assertEqual(
            [r["annotations"] for r in load_cuhk_sysu_query(root, image_sizes=sizes)],
            [r["annotations"] for r in self.query],
        )
        with self.assertRaisesRegex(KeyError, "no image size given for 1 image"):
            load_cuhk_sysu_gallery(root, image_sizes=dict(list(sizes.items())[1:]))

    def gallery_in(self, root):
        image_root = os.path.join(root, "Image", "SSM")
        return [dict(r, file_name=os.path.join(image_root, r["image_id"])) for r in self.gallery]

    def test_subsets(self):
        for name, key in (("occlusion", "occlusion_queries"), ("resolution", "resolution_queries")):
            idx = load_cuhk_sysu_subset_indices(self.root, name)
            self.assertEqual(len(idx), self.summary[key])
            self.assertTrue(np.all((idx >= 0) & (idx < len(self.query))))

    def test_registration_and_metadata(self):
        with _Registered("cuhk_sysu", self.root) as names:
            meta = MetadataCatalog.get(names["train"])
            self.assertEqual(meta.thing_classes, ["person"])
            self.assertEqual(meta.evaluator_type, "person_search")
            self.assertEqual(meta.query_dataset, names["query"])
            self.assertEqual(get_num_train_pids(names["train"]), self.summary["train_identities"])
            self.assertEqual(meta.num_train_pids, self.summary["train_identities"])
            test = DatasetCatalog.get(names["test"])
            self.assertEqual(len(test), len(self.gallery) + len(self.query))
            self.assertEqual(sum("query_index" in r for r in test), len(self.query))

    def test_ids_survive_mapper_with_flip(self):
        mapper = PersonSearchDatasetMapper(
            is_train=True,
            augmentations=[T.ResizeShortestEdge(120, 200), T.RandomFlip(prob=1.0)],
            image_format="BGR",
        )
        for rec in self.train[:6]:
            out = mapper(rec)
            inst = out["instances"]
            scale = out["image"].shape[2] / rec["width"]
            w = out["image"].shape[2]
            exp = {
                (round(w - a["bbox"][2] * scale, 2), round(a["bbox"][1] * scale, 2)): a["person_id"]
                for a in rec["annotations"]
            }
            got = {
                (round(b[0], 2), round(b[1], 2)): p
                for b, p in zip(inst.gt_boxes.tensor.tolist(), inst.gt_pids.tolist())
            }
            self.assertEqual(len(got), len(exp))
            for k, p in got.items():
                match = min(exp, key=lambda e: abs(e[0] - k[0]) + abs(e[1] - k[1]))
                self.assertLess(abs(match[0] - k[0]) + abs(match[1] - k[1]), 0.1)
                self.assertEqual(exp[match], p)
            self.assertEqual(inst.gt_pids.dtype, torch.int64)


class TestCuhkSysuErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.pristine = os.path.join(cls._tmp.name, "pristine")
        generate_cuhk_sysu(cls.pristine, size="tiny", seed=1)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def setUp(self):
        self.root = os.path.join(self._tmp.name, self.id().rsplit(".", 1)[-1])
        shutil.copytree(self.pristine, self.root)

    def test_missing_root(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere.*DETECTRON2_DATASETS"):
            load_cuhk_sysu_train(os.path.join(self.root, "nowhere"))

    def test_missing_file(self):
        os.remove(os.path.join(self.root, "annotation", "pool.mat"))
        with self.assertRaisesRegex(FileNotFoundError, r"pool.mat' does not exist"):
            load_cuhk_sysu_gallery(self.root)

    def test_missing_variable(self):
        path = os.path.join(self.root, "annotation", "test", "train_test", "Train.mat")
        scipy.io.savemat(path, {"Trian": np.zeros(3)})
        with self.assertRaisesRegex(DatasetFormatError, r"Train.mat' has no variable 'Train'"):
            load_cuhk_sysu_train(self.root)

    def test_image_listed_but_absent(self):
        name = load_cuhk_sysu_train(self.pristine)[1]["image_id"]
        os.remove(os.path.join(self.root, "Image", "SSM", name))
        with self.assertRaisesRegex(FileNotFoundError, rf"1 listed image\(s\) are missing.*{name}"):
            load_cuhk_sysu_train(self.root)

    def test_malformed_box(self):
        path = os.path.join(self.root, "annotation", "Images.mat")
        mat = scipy.io.loadmat(path)
        img = mat["Img"]
        img[0, 3]["box"][0, 0]["idlocate"] = np.array([[1, 2, 3]], dtype=np.uint16)
        name = str(img[0, 3]["imname"][0])
        scipy.io.savemat(path, {"Img": img})
        with self.assertRaisesRegex(DatasetFormatError, f"malformed box 0 of image '{name}'"):
            load_cuhk_sysu_train(self.root)

    def test_no_protocol_for_queries(self):
        for f in find_cuhk_sysu_protocols(self.root).values():
            os.remove(f)
        with self.assertRaisesRegex(FileNotFoundError, "no TestG<N>.mat protocol file"):
            load_cuhk_sysu_query(self.root)
        with self.assertRaisesRegex(FileNotFoundError, "TestG100.mat"):
            load_cuhk_sysu_protocol(self.root, 100)


class TestPrwSynthetic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.root = os.path.join(cls._tmp.name, "PRW")
        cls.summary = generate_prw(cls.root, size="tiny", seed=0)
        cls.train, cls.pid_map = load_prw_train(cls.root)
        cls.gallery = load_prw_gallery(cls.root)
        cls.query = load_prw_query(cls.root)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_counts(self):
        s = self.summary
        self.assertEqual(len(self.train), s["train_frames"])
        self.assertEqual(len(self.gallery), s["test_frames"])
        self.assertEqual(sum(len(r["annotations"]) for r in self.train + self.gallery), s["boxes"])
        self.assertEqual(len(self.query), s["queries"])

    def test_train_ids_remapped_contiguously(self):
        ids = self.summary["train_ids"]
        self.assertNotEqual(ids, list(range(1, len(ids) + 1)))  # the generator leaves gaps
        self.assertEqual(self.pid_map, {p: i for i, p in enumerate(sorted(ids))})
        pids = {a["person_id"] for r in self.train for a in r["annotations"]}
        self.assertEqual(pids - {-1}, set(range(len(ids))))
        self.assertIn(-1, pids)  # -2 -> -1

    def test_gallery_keeps_original_ids_and_cameras(self):
        pids = {a["person_id"] for r in self.gallery for a in r["annotations"]}
        self.assertEqual(pids - {-1}, set(self.summary["test_ids"]))
        for r in self.gallery + self.train + self.query:
            self.assertEqual(r["camera_id"], int(r["image_id"][1]))

    def test_negative_coordinates_clipped(self):
        self.assertGreater(self.summary["negative_xy_boxes"], 0)
        b = np.asarray([a["bbox"] for r in self.train + self.gallery for a in r["annotations"]])
        self.assertGreaterEqual(b.min(), 0.0)

    def test_queries(self):
        test_frames = {r["image_id"] for r in self.gallery}
        for i, q in enumerate(self.query):
            self.assertEqual(q["query_index"], i)
            self.assertIn(q["image_id"], test_frames)
            pid = q["annotations"][0]["person_id"]
            self.assertIn(pid, self.summary["test_ids"])
            others = [
                r
                for r in self.gallery
                if r["image_id"] != q["image_id"]
                and any(a["person_id"] == pid for a in r["annotations"])
            ]
            self.assertGreaterEqual(len(others), 1)

    def test_records_without_images(self):
        sizes = {r["image_id"]: (r["height"], r["width"]) for r in self.gallery}
        root = os.path.join(self._tmp.name, "annotations_only")
        shutil.copytree(self.root, root, ignore=shutil.ignore_patterns("*.jpg"))
        self.assertEqual(
            [r["annotations"] for r in load_prw_gallery(root, image_sizes=sizes)],
            [r["annotations"] for r in self.gallery],
        )
        self.assertEqual(
            [r["annotations"] for r in load_prw_query(root, image_sizes=sizes)],
            [r["annotations"] for r in self.query],
        )

    def test_registration_and_metadata(self):
        with _Registered("prw", self.root) as names:
            self.assertEqual(get_num_train_pids(names["train"]), self.summary["train_identities"])
            DatasetCatalog.get(names["train"])
            self.assertEqual(MetadataCatalog.get(names["train"]).pid_map, self.pid_map)

    def test_errors(self):
        root = os.path.join(self._tmp.name, "broken")
        shutil.copytree(self.root, root)
        frame = self.gallery[0]["image_id"]
        os.remove(os.path.join(root, "frames", frame))
        with self.assertRaisesRegex(FileNotFoundError, f"missing.*{frame}"):
            load_prw_gallery(root)
        os.remove(os.path.join(root, "annotations", frame + ".mat"))
        with self.assertRaisesRegex(FileNotFoundError, f"{frame}.mat' does not exist"):
            load_prw_gallery(root)
        scipy.io.savemat(os.path.join(root, "frame_test.mat"), {"img_index": np.zeros(1)})
        with self.assertRaisesRegex(
            DatasetFormatError, "frame_test.mat' has no variable 'img_index_test'"
        ):
            load_prw_gallery(root)
        with open(os.path.join(root, "query_info.txt"), "a") as f:
            f.write("5 1 1 10 10 c9s9_000001\r\n")
        with self.assertRaisesRegex(DatasetFormatError, "frame_test.mat"):
            load_prw_query(root)


if __name__ == "__main__":
    unittest.main()
