"""COCO-format person-search datasets: registration, the derived and the explicit protocol, the
converters' round trip (exactly the built-in numbers) and the error paths."""

import json
import logging
import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from ian_d2.modeling import resolve_num_pids
from ian_d2.data import get_num_train_pids, register_person_search_coco
from ian_d2.data.convert import main as convert_main
from ian_d2.data.datasets._common import DatasetFormatError
from ian_d2.data.datasets.coco_person_search import (
    COCO_FAMILY,
    derived_protocol_path,
    load_person_search_coco_test,
    load_person_search_coco_train,
    read_person_search_protocol,
    register_coco_dataset_list,
    register_coco_dataset_lists,
    xyxy_to_xywh,
)
from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_gallery, load_cuhk_sysu_query
from ian_d2.data.datasets.prw import load_prw_gallery, load_prw_query
from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw
from ian_d2.evaluation import (
    PersonSearchPredictions,
    cuhk_sysu_protocols,
    evaluate_search,
    prw_protocols,
    save_predictions,
)
from ian_d2.evaluation.coco_protocols import coco_protocols
from ian_d2.evaluation.protocols import build_gallery_table, query_rows
from ian_d2.evaluation.rescore import rescore

EMBED_DIM = 16


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def make_images(root, names, size=(64, 48)):
    """Small gray images (width, height = size) at root/name."""
    for n in names:
        path = os.path.join(root, n)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.new("RGB", size, (128, 128, 128)).save(path)


def coco(images, annotations, categories=({"id": 1, "name": "person"},)):
    return {"images": images, "annotations": annotations, "categories": list(categories)}


def ann(aid, image_id, bbox, pid, category_id=1, **kw):
    out = {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": bbox}
    if pid is not None:
        out["person_id"] = pid
    out.update(kw)
    return out


def small_dataset(cameras=True):
    """6 images of 64x48 on 2 cameras; identities 5 (images 1, 2, 4), 9 (1, 3), 7 (image 6
    only), unlabeled persons, and a car."""
    images = [
        {"id": i, "file_name": f"c{1 + (i > 3)}/{i:03d}.jpg", "height": 48, "width": 64}
        for i in range(1, 7)
    ]
    if cameras:
        for im in images:
            im["camera_id"] = 1 + (im["id"] > 3)
    annotations = [
        ann(1, 1, [2, 3, 10, 20], 5),
        ann(2, 1, [30, 5, 12, 30], 9),
        ann(3, 2, [4, 4, 10, 22], 5),
        ann(4, 2, [40, 2, 10, 20], -1),
        ann(5, 3, [20, 10, 10, 25], 9),
        ann(6, 4, [1, 1, 15, 30], 5),
        ann(7, 4, [50, 10, 30, 30], -1),  # clipped to the image (x2 = 64)
        ann(8, 5, [10, 10, 0, 20], -1),  # zero width: dropped
        ann(9, 6, [5, 5, 10, 20], 7),
        ann(10, 6, [20, 20, 20, 10], None, category_id=3),  # a car
    ]
    return coco(images, annotations, [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}])


def fake_predictions(gallery, queries, seed=0):
    """A mediocre model on records: GT boxes jittered by up to 2 pixels, random scores (a third
    dropped), one-hot embeddings of the identity plus noise; queries embed their given box."""
    rng = np.random.default_rng(seed)
    pids = sorted({a["person_id"] for r in gallery + queries for a in r["annotations"]} - {-1})
    dim = {p: i % EMBED_DIM for i, p in enumerate(pids)}

    def embed(annos):
        e = rng.normal(scale=0.5, size=(len(annos), EMBED_DIM)).astype(np.float32)
        for k, a in enumerate(annos):
            if a["person_id"] >= 0:
                e[k, dim[a["person_id"]]] += 1.0
        return e

    g_entries = []
    for r in gallery:
        annos = r["annotations"]
        boxes = np.asarray([a["bbox"] for a in annos], np.float32).reshape(-1, 4)
        boxes = boxes + rng.uniform(-2, 2, size=boxes.shape).astype(np.float32)
        keep = rng.uniform(size=len(annos)) > 0.33
        g_entries.append(
            {
                "image_id": r["image_id"],
                "height": r["height"],
                "width": r["width"],
                "boxes": boxes[keep],
                "scores": rng.uniform(0.3, 1.0, size=len(annos)).astype(np.float32)[keep],
                "embeds": embed(annos)[keep].reshape(-1, EMBED_DIM),
            }
        )
    q_entries = [
        {
            "query_index": r["query_index"],
            "image_id": r["image_id"],
            "height": r["height"],
            "width": r["width"],
            "box": np.asarray(r["annotations"][0]["bbox"], np.float32),
            "embed": embed(r["annotations"])[0],
        }
        for r in queries
    ]
    return PersonSearchPredictions.from_entries(g_entries, q_entries, "test", "test", EMBED_DIM)


def search_results(protocols, preds, table):
    """{key: metrics and skip count} of every protocol on the same predictions."""
    out = {}
    for p in protocols:
        res = evaluate_search(
            preds.query_embeddings[p.query_rows], table, p.galleries, det_thresh=0.5
        )
        out[p.key] = dict(res.metrics(), n_skipped=int(res.skipped.sum()))
    return out


class _TmpCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name
        self.names = []

    def tearDown(self):
        for n in self.names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
        self._tmp.cleanup()

    def register(self, name, *args, **kwargs):
        register_person_search_coco(name, *args, **kwargs)
        self.names.append(name)
        return name

    def write_small(self, cameras=True, name="test.json"):
        data = small_dataset(cameras)
        make_images(self.tmp, [im["file_name"] for im in data["images"]])
        return write_json(os.path.join(self.tmp, name), data)


# ---------------------------------------------------------------------------------------------
# Registration, train split
# ---------------------------------------------------------------------------------------------
class TestTrainSplit(_TmpCase):
    def test_records_and_contiguous_ids(self):
        path = self.write_small(name="train.json")
        with self.assertLogs("ian_d2.data.datasets.coco_person_search", logging.INFO) as logs:
            records, pid_map = load_person_search_coco_train(path, self.tmp)
        text = "\n".join(logs.output)
        self.assertIn("dropped 1 annotation(s) of categories other than 'person': {'car': 1}", text)
        self.assertIn("dropped 1 zero-size boxes, clipped 1 to the image", text)
        self.assertEqual(pid_map, {5: 0, 7: 1, 9: 2})
        self.assertEqual(
            [r["image_id"] for r in records],
            [f"c1/00{i}.jpg" for i in (1, 2, 3)] + [f"c2/00{i}.jpg" for i in (4, 5, 6)],
        )
        r0 = records[0]
        self.assertEqual(r0["file_name"], os.path.join(self.tmp, "c1/001.jpg"))
        self.assertEqual((r0["height"], r0["width"], r0["camera_id"]), (48, 64, 1))
        self.assertEqual(r0["annotations"][0]["bbox"], [2.0, 3.0, 12.0, 23.0])  # XYXY
        self.assertEqual([a["person_id"] for a in r0["annotations"]], [0, 2])
        self.assertEqual(records[3]["annotations"][1]["bbox"], [50.0, 10.0, 64.0, 40.0])
        self.assertEqual(records[4]["annotations"], [])
        self.assertEqual([a["person_id"] for a in records[5]["annotations"]], [1])

    def test_registered_train_split(self):
        path = self.write_small(name="train.json")
        name = self.register("_coco_t_train", path, self.tmp)  # split inferred from the name
        meta = MetadataCatalog.get(name)
        self.assertEqual(
            (meta.dataset_family, meta.evaluator_type, meta.split),
            (COCO_FAMILY, "person_search", "train"),
        )
        self.assertEqual(meta.thing_classes, ["person"])
        self.assertEqual(get_num_train_pids(name), 3)  # read without loading the split
        self.assertEqual(meta.pid_map, {5: 0, 7: 1, 9: 2})
        records = DatasetCatalog.get(name)
        self.assertEqual(len(records), 6)
        from ian_d2.config import add_ian_config
        from detectron2.config import get_cfg

        cfg = get_cfg()
        add_ian_config(cfg)
        cfg.DATASETS.TRAIN = (name,)
        cfg.MODEL.REID.NUM_PIDS = 0
        self.assertEqual(resolve_num_pids(cfg), 3)

    def test_images_without_sizes_are_read(self):
        data = small_dataset()
        for im in data["images"]:
            del im["height"], im["width"]
        make_images(self.tmp, [im["file_name"] for im in data["images"]], size=(80, 60))
        path = write_json(os.path.join(self.tmp, "train.json"), data)
        records, _ = load_person_search_coco_train(path, self.tmp)
        self.assertEqual({(r["height"], r["width"]) for r in records}, {(60, 80)})

    def test_split_argument(self):
        path = self.write_small()
        self.register("_coco_t_a", path, self.tmp, split="train")
        self.assertEqual(MetadataCatalog.get("_coco_t_a").split, "train")
        self.register("_coco_t_b", path, self.tmp)
        self.assertEqual(MetadataCatalog.get("_coco_t_b").split, "test")
        with self.assertRaisesRegex(ValueError, "belongs to a test split"):
            register_person_search_coco("_coco_t_c", path, self.tmp, "p.json", split="train")
        with self.assertRaisesRegex(ValueError, "is a COCO person-search test split"):
            get_num_train_pids("_coco_t_b")


# ---------------------------------------------------------------------------------------------
# Test split: explicit and derived protocols, and the search galleries built from them
# ---------------------------------------------------------------------------------------------
class TestProtocols(_TmpCase):
    def explicit_protocol(self, **extra):
        obj = {
            "format": "ian_d2.person_search_protocol",
            "version": 1,
            "queries": [
                {
                    "image": "c1/001.jpg",
                    "box": [2, 3, 10, 20],
                    "person_id": 5,
                    "gallery": [
                        "c1/002.jpg",  # looked up: identity 5 is there
                        {"image": "c1/003.jpg", "box": [1, 1, 5, 5]},  # explicit positive
                        {"image": "c2/004.jpg", "box": None},  # explicit negative
                        "c2/005.jpg",  # looked up: not there
                    ],
                },
                {
                    "image": "c1/003.jpg",
                    "box": [20, 10, 10, 25],
                    "person_id": 9,
                    "gallery": "all",
                    "other_cameras_only": True,
                },
            ],
            "protocols": [
                {"key": "search_all", "gallery": "all"},
                {"key": "search_second", "queries": [1], "gallery_from": "search"},
                {
                    "key": "search_full",
                    "queries": [0],
                    "gallery_from": "search",
                    "add_all_other_images": True,
                },
            ],
        }
        obj.update(extra)
        return write_json(os.path.join(self.tmp, "protocol.json"), obj)

    def build(self, gallery, queries, protocol_file):
        preds = fake_predictions(gallery, queries)
        table = build_gallery_table(preds, gallery)
        rows = query_rows(preds, queries)
        return coco_protocols(protocol_file, table, gallery, queries, rows), table

    def test_registered_test_split(self):
        path = self.write_small()
        proto = self.explicit_protocol()
        name = self.register("_coco_t_test", path, self.tmp, proto)
        meta = MetadataCatalog.get(name)
        self.assertEqual(
            (meta.dataset_family, meta.evaluator_type, meta.split, meta.protocol_file),
            (COCO_FAMILY, "person_search", "test", proto),
        )
        self.assertFalse(meta.protocol_derived)
        records = DatasetCatalog.get(name)
        self.assertEqual(len(records), 6 + 2)
        self.assertTrue(all("query_index" not in r for r in records[:6]))
        q = records[6:]
        self.assertEqual([r["query_index"] for r in q], [0, 1])
        self.assertEqual(q[1]["image_id"], "c1/003.jpg")
        self.assertEqual(q[1]["annotations"][0]["bbox"], [20.0, 10.0, 30.0, 35.0])
        self.assertEqual(q[1]["annotations"][0]["person_id"], 9)
        self.assertEqual(q[1]["camera_id"], 1)
        self.assertEqual(q[0]["file_name"], os.path.join(self.tmp, "c1/001.jpg"))
        self.assertEqual(records[3]["annotations"][0]["person_id"], 5)  # test ids are kept

    def test_explicit_galleries(self):
        path = self.write_small()
        gallery, queries, used = load_person_search_coco_test(
            path, self.tmp, self.explicit_protocol()
        )
        protos, table = self.build(gallery, queries, used)
        by_key = {p.key: p for p in protos}
        self.assertEqual(list(by_key), ["search", "search_all", "search_second", "search_full"])
        g = by_key["search"].galleries
        images, boxes = g.entries(0)
        self.assertEqual(images.tolist(), [1, 2, 3, 4])
        np.testing.assert_array_equal(boxes[0], [4, 4, 14, 26])  # identity 5 in image 2
        np.testing.assert_array_equal(boxes[1], [1, 1, 6, 6])
        self.assertTrue(np.isnan(boxes[2:]).all())
        images, boxes = g.entries(1)  # "all", other cameras: images 4, 5, 6 (none has 9)
        self.assertEqual(sorted(images.tolist()), [3, 4, 5])
        self.assertEqual(g.count_gt().tolist(), [2, 0])
        self.assertEqual(by_key["search"].settings["queries_without_match"], 1)
        g = by_key["search_all"].galleries  # every image but the query's own
        images, boxes = g.entries(0)
        self.assertEqual(sorted(images.tolist()), [1, 2, 3, 4, 5])
        self.assertEqual(g.count_gt().tolist(), [2, 1])
        np.testing.assert_array_equal(by_key["search_second"].query_rows, [1])
        self.assertEqual(by_key["search_second"].galleries.count_gt().tolist(), [0])
        images, boxes = by_key["search_full"].galleries.entries(0)
        self.assertEqual(images.tolist(), [1, 2, 3, 4, 5])  # the list + image 6, not image 1
        self.assertEqual(by_key["search_full"].galleries.count_gt().tolist(), [2])
        res = search_results(protos, fake_predictions(gallery, queries), table)
        self.assertEqual(res["search"]["n_skipped"], 1)  # the query without a match is skipped

    def test_without_images_given_their_sizes(self):
        path = self.write_small()
        proto = self.explicit_protocol()
        gallery, queries, _ = load_person_search_coco_test(path, self.tmp, proto)
        sizes = {r["image_id"]: (r["height"], r["width"]) for r in gallery}
        for r in gallery:
            os.remove(r["file_name"])
        with self.assertRaisesRegex(FileNotFoundError, "6 listed image"):
            load_person_search_coco_test(path, self.tmp, proto)
        again = load_person_search_coco_test(path, None, proto, image_sizes=sizes)
        strip = lambda recs: [dict(r, file_name=None) for r in recs]  # noqa: E731
        self.assertEqual(strip(again[0]), strip(gallery))
        self.assertEqual(strip(again[1]), strip(queries))

    def test_query_without_match_is_reported(self):
        path = self.write_small()
        gallery, queries, used = load_person_search_coco_test(
            path, self.tmp, self.explicit_protocol()
        )
        with self.assertLogs("ian_d2.evaluation.coco_protocols", logging.WARNING) as logs:
            self.build(gallery, queries, used)
        text = "\n".join(logs.output)
        self.assertIn("protocol 'search': 1 of 2 queries have their identity in none", text)
        self.assertIn("1 ('c1/003.jpg', person_id 9)", text)

    def test_derived_protocol(self):
        path = self.write_small()
        name = self.register("_coco_t_derived", path, self.tmp)
        meta = MetadataCatalog.get(name)
        expected = os.path.join(self.tmp, "test.derived_protocol.json")
        self.assertEqual(meta.protocol_file, expected)
        self.assertTrue(meta.protocol_derived)
        with self.assertLogs("ian_d2.data.datasets.coco_person_search", logging.INFO) as logs:
            records = DatasetCatalog.get(name)
        self.assertIn(f"saved to '{expected}'", "\n".join(logs.output))
        with open(expected) as f:
            obj = json.load(f)
        # identities 5 and 9 are in >= 2 images (7 is in one): a query each, sorted by id
        self.assertEqual(
            obj["queries"],
            [
                {
                    "image": "c1/001.jpg",
                    "box": [2.0, 3.0, 10.0, 20.0],
                    "person_id": 5,
                    "gallery": "all",
                },
                {
                    "image": "c1/001.jpg",
                    "box": [30.0, 5.0, 12.0, 30.0],
                    "person_id": 9,
                    "gallery": "all",
                },
            ],
        )
        self.assertEqual(len(records), 6 + 2)
        gallery, queries = records[:6], records[6:]
        protos, _ = self.build(gallery, queries, expected)
        self.assertEqual([p.key for p in protos], ["search"])
        self.assertEqual(protos[0].galleries.count_gt().tolist(), [2, 1])
        # loaded again: the saved file is reused, not rewritten
        mtime = os.stat(expected).st_mtime_ns
        self.assertEqual(DatasetCatalog.get(name), records)
        self.assertEqual(os.stat(expected).st_mtime_ns, mtime)
        # the JSON changes: derived again
        data = small_dataset()
        data["annotations"][8]["person_id"] = 5
        write_json(path, data)
        with self.assertLogs("ian_d2.data.datasets.coco_person_search", logging.WARNING):
            records = DatasetCatalog.get(name)
        with open(expected) as f:
            obj = json.load(f)
        self.assertEqual([q["person_id"] for q in obj["queries"]], [5, 9])
        self.assertEqual(read_person_search_protocol(expected).num_queries, 2)

    def test_derived_protocol_in_cache_when_not_writable(self):
        path = self.write_small()
        cache = os.path.join(self.tmp, "cache")
        with (
            mock.patch.dict(os.environ, {"IAN_D2_CACHE": cache}),
            mock.patch("os.access", return_value=False),
        ):
            where = derived_protocol_path(path)
        self.assertTrue(where.startswith(os.path.join(cache, "protocols", "test-")))
        self.assertTrue(where.endswith(".derived_protocol.json"))
        gallery, queries, used = load_person_search_coco_test(path, self.tmp, derived_path=where)
        self.assertEqual(used, where)
        self.assertTrue(os.path.isfile(where))
        self.assertEqual(len(queries), 2)

    def test_dataset_list(self):
        path = self.write_small()
        proto = self.explicit_protocol()
        lst = write_json(
            os.path.join(self.tmp, "datasets.json"),
            {
                "_coco_l_train": {"json_file": "test.json", "image_root": ".", "split": "train"},
                "_coco_l_test": {
                    "json_file": os.path.basename(path),
                    "image_root": ".",
                    "protocol_file": os.path.basename(proto),
                },
            },
        )
        with mock.patch.dict(os.environ, {"IAN_D2_COCO_DATASETS": lst}):
            names = register_coco_dataset_lists()
        self.names += names
        self.assertEqual(names, ["_coco_l_train", "_coco_l_test"])
        self.assertEqual(MetadataCatalog.get("_coco_l_test").protocol_file, proto)
        self.assertEqual(len(DatasetCatalog.get("_coco_l_test")), 8)
        self.assertEqual(get_num_train_pids("_coco_l_train"), 3)
        self.assertEqual(register_coco_dataset_list(lst), names)  # again: left as it is
        write_json(lst, {"_coco_l_test": {"json_file": "other.json"}})
        with self.assertRaisesRegex(ValueError, "already registered"):
            register_coco_dataset_list(lst)
        write_json(lst, {"x": {"json_file": "a.json", "protocol": "p.json"}})
        with self.assertRaisesRegex(DatasetFormatError, r"unknown key\(s\) \['protocol'\]"):
            register_coco_dataset_list(lst)

    def test_box_round_trip_is_exact(self):
        rng = np.random.default_rng(0)
        boxes = rng.uniform(0, 2000, size=(2000, 2))
        boxes = np.concatenate([boxes, boxes + rng.uniform(0.01, 500, size=(2000, 2))], 1)
        for b in boxes[:, [0, 1, 2, 3]]:
            x, y, w, h = xyxy_to_xywh(b)
            self.assertEqual((x + w, y + h), (b[2], b[3]))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
class TestErrors(_TmpCase):
    def check(self, data, regex, exc=DatasetFormatError, images=True):
        if images:
            make_images(self.tmp, [im["file_name"] for im in data["images"]])
        path = write_json(os.path.join(self.tmp, "bad.json"), data)
        with self.assertRaisesRegex(exc, regex) as cm:
            load_person_search_coco_train(path, self.tmp)
        self.assertIn(path, str(cm.exception))
        return cm.exception

    def test_plain_coco_without_person_id(self):
        data = small_dataset()
        for a in data["annotations"]:
            a.pop("person_id", None)
        self.check(data, "no person annotation has a 'person_id'.*-1 for an unlabeled person")

    def test_person_box_without_person_id(self):
        data = small_dataset()
        del data["annotations"][2]["person_id"]
        self.check(
            data,
            r"1 person annotation\(s\) have no 'person_id'.*annotation 3 \(image 'c1/002.jpg'\)",
        )

    def test_identity_on_a_non_person_box(self):
        data = small_dataset()
        data["annotations"][9]["person_id"] = 4
        self.check(
            data, r"annotation 10 \(image 'c2/006.jpg'\): person_id 4 on a box of category 'car'"
        )

    def test_bad_person_id(self):
        data = small_dataset()
        data["annotations"][0]["person_id"] = -2
        self.check(data, "person_id -2 is not valid; expected an integer identity >= 0, or -1")
        data["annotations"][0]["person_id"] = "p5"
        self.check(data, "person_id 'p5' is not valid")

    def test_no_person_category(self):
        data = small_dataset()
        data["categories"] = [{"id": 1, "name": "pedestrian"}]
        self.check(data, r"no category named 'person' in 'categories' \(found \['pedestrian'\]\)")

    def test_image_listed_twice(self):
        data = small_dataset()
        data["images"].append(dict(data["images"][0], id=99))
        self.check(data, r"image 'c1/001.jpg' is listed twice \(ids 1 and 99\)")
        data = small_dataset()
        data["images"].append(dict(data["images"][0], file_name="x.jpg"))
        self.check(data, r"image id 1 is listed twice \(file names 'c1/001.jpg' and 'x.jpg'\)")

    def test_missing_image_file(self):
        data = small_dataset()
        make_images(self.tmp, [im["file_name"] for im in data["images"][1:]])
        missing = os.path.join(self.tmp, "c1/001.jpg")
        e = self.check(data, r"1 listed image\(s\) are missing", FileNotFoundError, images=False)
        self.assertIn(missing, str(e))

    def test_bad_box_and_unknown_image(self):
        data = small_dataset()
        data["annotations"][0]["bbox"] = [1, 2, -3, 4]
        self.check(data, r"annotation 1 \(image 'c1/001.jpg'\) bbox: box \[1, 2, -3, 4\].*negative")
        data = small_dataset()
        data["annotations"][0]["image_id"] = 42
        self.check(data, "annotation 1 refers to image id 42, which is not in 'images'")

    def protocol_error(self, query, regex, exc=DatasetFormatError, cameras=True):
        path = self.write_small(cameras)
        proto = write_json(os.path.join(self.tmp, "protocol.json"), {"queries": [query]})
        with self.assertRaisesRegex(exc, regex) as cm:
            load_person_search_coco_test(path, self.tmp, proto)
        self.assertIn(proto, str(cm.exception))

    def test_query_box_outside_its_image(self):
        q = {"image": "c1/001.jpg", "box": [70, 3, 10, 20], "person_id": 5, "gallery": "all"}
        self.protocol_error(
            q,
            r"query 0: box \[70.0, 3.0, 10.0, 20.0\] \[x, y, w, h\] lies outside its image "
            r"'c1/001.jpg' \(width 64, height 48\)",
        )

    def test_bad_queries(self):
        base = {"image": "c1/001.jpg", "box": [2, 3, 10, 20], "person_id": 5, "gallery": "all"}
        self.protocol_error(
            dict(base, image="nope.jpg"), "query 0: image 'nope.jpg' is not an image of the test"
        )
        self.protocol_error(
            dict(base, gallery=["c1/002.jpg", "gone.jpg"]),
            r"protocol 'search' query 0: gallery image\(s\) 'gone.jpg' are not images",
        )
        self.protocol_error(dict(base, person_id=-1), "person_id -1; a query is a labeled identity")
        self.protocol_error(
            dict(base, box=[2, 3, 0, 20]), r"the query box \[2, 3, 0, 20\] has no area"
        )
        self.protocol_error(dict(base, image=3), "'image' must be the image's file_name")
        self.protocol_error({"image": "c1/001.jpg"}, r"missing \['box', 'person_id', 'gallery'\]")
        self.protocol_error(
            dict(base, other_cameras_only=True),
            "'other_cameras_only' needs a camera_id on the query image 'c1/001.jpg'",
            cameras=False,
        )
        self.protocol_error(
            dict(base, gallery=["c1/002.jpg"], other_cameras_only=True),
            '\'other_cameras_only\' applies to "gallery": "all"',
        )

    def test_bad_protocol_file(self):
        path = self.write_small()
        proto = os.path.join(self.tmp, "protocol.json")
        with open(proto, "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(DatasetFormatError, "is not valid JSON"):
            load_person_search_coco_test(path, self.tmp, proto)
        q = {"image": "c1/001.jpg", "box": [2, 3, 10, 20], "person_id": 5, "gallery": "all"}
        for extra, regex in (
            ({"version": 2}, "protocol version 2; this code reads version 1"),
            ({"protocols": [{"key": "search"}]}, "a protocol key is 'search_<name>' and unique"),
            ({"protocols": [{"key": "search_x"}]}, "give exactly one of 'gallery', 'galleries'"),
            (
                {"protocols": [{"key": "search_x", "queries": [3], "gallery": "all"}]},
                r"'queries' must be a list of query indices in \[0, 0\]",
            ),
            (
                {"protocols": [{"key": "search_x", "gallery_from": "search_y"}]},
                "gallery_from 'search_y' is not the main or an earlier protocol",
            ),
        ):
            write_json(proto, dict({"queries": [q]}, **extra))
            with self.assertRaisesRegex(DatasetFormatError, regex):
                load_person_search_coco_test(path, self.tmp, proto)

    def test_no_identity_to_derive_a_query_from(self):
        data = small_dataset()
        for a in data["annotations"]:
            if a.get("person_id", -1) >= 0:
                a["person_id"] = -1
        make_images(self.tmp, [im["file_name"] for im in data["images"]])
        path = write_json(os.path.join(self.tmp, "test.json"), data)
        with self.assertRaisesRegex(DatasetFormatError, "no query can be derived"):
            load_person_search_coco_test(path, self.tmp)

    def test_records_of_another_protocol(self):
        path = self.write_small()
        q = {"image": "c1/001.jpg", "box": [2, 3, 10, 20], "person_id": 5, "gallery": "all"}
        p1 = write_json(os.path.join(self.tmp, "p1.json"), {"queries": [q]})
        p2 = write_json(
            os.path.join(self.tmp, "p2.json"), {"queries": [dict(q, image="c1/002.jpg")]}
        )
        gallery, queries, _ = load_person_search_coco_test(path, self.tmp, p1)
        preds = fake_predictions(gallery, queries)
        table = build_gallery_table(preds, gallery)
        with self.assertRaisesRegex(ValueError, "loaded with another protocol file"):
            coco_protocols(p2, table, gallery, queries, query_rows(preds, queries))
        with self.assertRaisesRegex(ValueError, r"has no protocol \['search_x'\]"):
            coco_protocols(p1, table, gallery, queries, [0], keys=["search_x"])


# ---------------------------------------------------------------------------------------------
# Converters: the converted synthetic datasets give exactly the built-in numbers
# ---------------------------------------------------------------------------------------------
class _RoundTrip:
    """Mixin of the round-trip tests (a unittest.TestCase with ``family`` and ``keys``)."""

    family = None

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.root = os.path.join(cls._tmp.name, cls.family)
        cls.out = os.path.join(cls._tmp.name, "coco")
        gen = generate_cuhk_sysu if cls.family == "cuhk_sysu" else generate_prw
        gen(cls.root, size="tiny", seed=0)
        assert convert_main([cls.family, cls.root, cls.out]) == 0
        if cls.family == "cuhk_sysu":
            cls.gallery, cls.queries = load_cuhk_sysu_gallery(cls.root), load_cuhk_sysu_query(
                cls.root
            )
        else:
            cls.gallery, cls.queries = load_prw_gallery(cls.root), load_prw_query(cls.root)
        cls.c_gallery, cls.c_queries, _ = load_person_search_coco_test(
            os.path.join(cls.out, "test.json"),
            os.path.join(cls.out, "images"),
            os.path.join(cls.out, "test_protocol.json"),
        )

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def builtin_protocols(self, table, rows):
        raise NotImplementedError

    def test_same_records(self):
        strip = lambda recs: [  # noqa: E731
            {k: v for k, v in r.items() if k != "file_name"} for r in recs
        ]
        self.assertEqual(strip(self.c_gallery), strip(self.gallery))
        self.assertEqual(strip(self.c_queries), strip(self.queries))
        self.assertEqual(
            [r["file_name"] for r in self.c_gallery],
            [os.path.join(self.out, "images", r["image_id"]) for r in self.gallery],
        )
        self.assertTrue(
            os.path.samefile(self.c_gallery[0]["file_name"], self.gallery[0]["file_name"])
        )

    def test_same_numbers(self):
        for seed in range(3):
            preds = fake_predictions(self.gallery, self.queries, seed=seed)
            table = build_gallery_table(preds, self.gallery)
            builtin = search_results(
                self.builtin_protocols(table, query_rows(preds, self.queries)), preds, table
            )
            c_table = build_gallery_table(preds, self.c_gallery)
            converted = coco_protocols(
                os.path.join(self.out, "test_protocol.json"),
                c_table,
                self.c_gallery,
                self.c_queries,
                query_rows(preds, self.c_queries),
            )
            converted = search_results(converted, preds, c_table)
            self.assertEqual(list(converted), self.keys)
            self.assertEqual(converted, builtin)  # every metric of every protocol, exactly
            self.assertLess(builtin["search"]["mAP"], 100.0)
            self.assertGreater(builtin["search"]["mAP"], 0.0)
            if seed == 0:
                logging.getLogger(__name__).info("%s round trip: %s", self.family, converted)
                type(self).numbers = converted

    def test_same_galleries(self):
        preds = fake_predictions(self.gallery, self.queries)
        table = build_gallery_table(preds, self.gallery)
        builtin = self.builtin_protocols(table, query_rows(preds, self.queries))
        converted = coco_protocols(
            os.path.join(self.out, "test_protocol.json"),
            build_gallery_table(preds, self.c_gallery),
            self.c_gallery,
            self.c_queries,
            query_rows(preds, self.c_queries),
        )
        self.assertEqual([p.key for p in converted], [p.key for p in builtin])
        for b, c in zip(builtin, converted):
            np.testing.assert_array_equal(c.query_rows, b.query_rows, err_msg=b.key)
            for attr in ("image_index", "pos_query", "pos_col", "pos_boxes"):
                np.testing.assert_array_equal(
                    getattr(c.galleries, attr), getattr(b.galleries, attr), err_msg=b.key
                )

    def test_rescore_same_numbers(self):
        # End to end through the rescore entry point: the same predictions, saved once as the
        # built-in dataset's and once as the converted set's, give the same results.
        preds = fake_predictions(self.gallery, self.queries, seed=1)
        hw = np.repeat(preds.gallery_image_sizes, np.diff(preds.gallery_offsets), axis=0)
        b = preds.gallery_boxes  # jittered boxes clipped to their image (a saved file's rule)
        b[:, 0::2] = np.clip(b[:, 0::2], 0, hw[:, 1:2])
        b[:, 1::2] = np.clip(b[:, 1::2], 0, hw[:, 0:1])
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for family in (self.family, "coco"):
                preds.dataset_family = family
                paths[family] = save_predictions(preds, os.path.join(tmp, f"{family}.npz"))
            builtin, _ = rescore(paths[self.family], self.root, self.family)
            converted, settings = rescore(
                paths["coco"],
                os.path.join(self.out, "test.json"),
                "coco",
                protocol_file=os.path.join(self.out, "test_protocol.json"),
            )
        self.assertEqual(list(converted), self.keys + ["detection", "detection_labeled"])
        self.assertEqual(converted, builtin)  # every metric, exactly
        self.assertIn("test_protocol.json", str(settings["search"]))

    def test_registered_through_dataset_list(self):
        names = register_coco_dataset_list(os.path.join(self.out, "datasets.json"))
        try:
            prefix = f"{self.family}_coco"
            self.assertEqual(names, [f"{prefix}_train", f"{prefix}_test"])
            records = DatasetCatalog.get(f"{prefix}_test")
            self.assertEqual(len(records), len(self.gallery) + len(self.queries))
            self.assertGreater(get_num_train_pids(f"{prefix}_train"), 0)
        finally:
            for n in names:
                DatasetCatalog.remove(n)
                MetadataCatalog.remove(n)


class TestConvertCli(unittest.TestCase):
    def test_missing_root_is_an_error_naming_it(self):
        import contextlib
        import io

        with tempfile.TemporaryDirectory() as tmp:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = convert_main(["prw", os.path.join(tmp, "nope"), os.path.join(tmp, "out")])
        self.assertEqual(rc, 1)
        self.assertIn(os.path.join(tmp, "nope"), err.getvalue())

    def test_images_none_points_to_the_original_folder(self):
        with tempfile.TemporaryDirectory() as tmp:
            root, out = os.path.join(tmp, "prw"), os.path.join(tmp, "out")
            generate_prw(root, size="tiny", seed=1)
            self.assertEqual(convert_main(["prw", root, out, "--images", "none"]), 0)
            self.assertFalse(os.path.lexists(os.path.join(out, "images")))
            with open(os.path.join(out, "datasets.json")) as f:
                lst = json.load(f)
            self.assertEqual(lst["prw_coco_test"]["image_root"], os.path.join(root, "frames"))


class TestCuhkSysuRoundTrip(_RoundTrip, unittest.TestCase):
    family = "cuhk_sysu"
    keys = ["search", "search_g10", "search_full", "search_occlusion", "search_resolution"]

    def builtin_protocols(self, table, rows):
        return cuhk_sysu_protocols(self.root, table, self.queries, rows)

    def test_train_identities(self):
        from ian_d2.data.datasets.cuhk_sysu import cuhk_sysu_num_train_pids, load_cuhk_sysu_train

        train, pid_map = load_person_search_coco_train(
            os.path.join(self.out, "train.json"), os.path.join(self.out, "images")
        )
        self.assertEqual(len(pid_map), cuhk_sysu_num_train_pids(self.root))
        builtin = load_cuhk_sysu_train(self.root)
        self.assertEqual(
            [[(a["bbox"], a["person_id"]) for a in r["annotations"]] for r in train],
            [[(a["bbox"], a["person_id"]) for a in r["annotations"]] for r in builtin],
        )


class TestPrwRoundTrip(_RoundTrip, unittest.TestCase):
    family = "prw"
    keys = ["search", "search_multiview"]

    def builtin_protocols(self, table, rows):
        return prw_protocols(table, self.gallery, self.queries, rows)

    def test_train_identities(self):
        from ian_d2.data.datasets.prw import load_prw_train

        train, pid_map = load_person_search_coco_train(
            os.path.join(self.out, "train.json"), os.path.join(self.out, "images")
        )
        builtin, builtin_map = load_prw_train(self.root)
        self.assertEqual(pid_map, builtin_map)
        self.assertEqual(
            [[(a["bbox"], a["person_id"]) for a in r["annotations"]] for r in train],
            [[(a["bbox"], a["person_id"]) for a in r["annotations"]] for r in builtin],
        )


@pytest.mark.slow  # a training run
class TestTrainNet(unittest.TestCase):
    """train_net.py, unchanged, trains on a COCO person-search set registered by a dataset list;
    MODEL.REID.NUM_PIDS comes from its metadata."""

    def test_two_iterations(self):
        from tests.repo_scripts import QUICK_CONFIG, load_script

        with tempfile.TemporaryDirectory() as tmp:
            root, out = os.path.join(tmp, "prw"), os.path.join(tmp, "coco")
            generate_prw(root, size="tiny", seed=0)
            assert convert_main(["prw", root, out, "--name", "_tn_coco"]) == 0
            names = register_coco_dataset_list(os.path.join(out, "datasets.json"))
            try:
                train_net = load_script("train_net.py", "train_net")
                run = os.path.join(tmp, "run")
                args = train_net.default_argument_parser().parse_args(
                    ["--config-file", QUICK_CONFIG, "OUTPUT_DIR", run,
                     "DATASETS.TRAIN", "('_tn_coco_train',)", "DATASETS.TEST", "()",
                     "MODEL.REID.NUM_PIDS", "0", "SOLVER.MAX_ITER", "2",
                     "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
                     "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
                     "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
                     "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "0"]
                )  # fmt: skip
                train_net.main(args)
                self.assertTrue(os.path.isfile(os.path.join(run, "model_final.pth")))
                with open(os.path.join(run, "config.yaml")) as f:
                    saved = f.read()
                n = get_num_train_pids("_tn_coco_train")
                self.assertGreater(n, 0)
                self.assertIn(f"NUM_PIDS: {n}", saved)
            finally:
                for name in names:
                    DatasetCatalog.remove(name)
                    MetadataCatalog.remove(name)


if __name__ == "__main__":
    unittest.main()
