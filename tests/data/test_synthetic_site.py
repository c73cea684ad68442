"""The target site of the synthetic video generator (a second site to adapt to) and its
person-search dataset: videos, look, identities, determinism, the unchanged source site, the
COCO frames dataset, the cross-camera protocol and its evaluation."""

import hashlib
import json
import os
import tempfile
import unittest

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from ian_d2.data.datasets.coco_person_search import (
    load_person_search_coco_test,
    load_person_search_coco_train,
    read_coco_person_search,
    read_person_search_protocol,
    register_coco_dataset_list,
)
from ian_d2.data.synthetic import generate_target_site, generate_video, make_video_config
from ian_d2.data.synthetic.__main__ import main as cli_main
from ian_d2.data.synthetic.identities import UPPER_COLORS, LOWER_COLORS
from ian_d2.data.synthetic.site_dataset import sampled_frames
from ian_d2.data.synthetic.video_site import TARGET_LOOKS, TARGET_PALETTE
from ian_d2.evaluation import PersonSearchPredictions, evaluate_search
from ian_d2.evaluation.coco_protocols import coco_protocols
from ian_d2.evaluation.protocols import build_gallery_table, query_rows

# planned cameras and appearances of the source site's tiny video, seed 0, recorded with the
# generator before the target site existed: the source site's random streams are unchanged
SOURCE_TINY_IDENTITIES_SHA256 = "cef3ee83e0144f06188a72f8f0dd3ce9c9b4f758d051d61364c70d020dd83f51"


def _load(root):
    with open(os.path.join(root, "annotations.json"), encoding="utf-8") as f:
        return json.load(f)


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _identities_digest(anno):
    ids = {k: [v["planned_cameras"], v["appearance"]] for k, v in anno["identities"].items()}
    return hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()


def _appearance_key(app):
    return json.dumps(app, sort_keys=True)


def _chebyshev(color, palette):
    return min(max(abs(a - b) for a, b in zip(color, c)) for c in palette)


class TestTargetSiteVideo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cls.tmp = tmp.name
        cls.root = os.path.join(cls.tmp, "target")
        cls.summary = generate_video(cls.root, size="tiny", seed=0, site="target")
        cls.anno = _load(cls.root)
        cls.source = os.path.join(cls.tmp, "source")
        generate_video(cls.source, size="tiny", seed=0)
        cls.source_anno = _load(cls.source)

    def test_videos_open_with_opencv(self):
        a = self.anno
        cams = sorted(a["cameras"])
        self.assertGreaterEqual(len(cams), 4)
        self.assertEqual(cams, [f"cam{i}" for i in range(1, len(cams) + 1)])
        self.assertEqual((a["site"], a["footage"]), ("target", 0))
        W, H = a["frame_size"]
        means = []
        for cam in cams:
            c = a["cameras"][cam]
            cap = cv2.VideoCapture(os.path.join(self.root, c["file"]))
            try:
                self.assertTrue(cap.isOpened(), cam)
                self.assertAlmostEqual(cap.get(cv2.CAP_PROP_FPS), a["fps"], places=3)
                self.assertEqual(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), c["num_frames"])
                ok, frame = cap.read()
            finally:
                cap.release()
            self.assertTrue(ok, cam)
            self.assertEqual(frame.shape, (H, W, 3))
            self.assertEqual(len(c["frames"]), c["num_frames"])
            means.append(frame.reshape(-1, 3).mean(axis=0))
        # every camera has its own colour cast and lighting
        for i in range(len(means)):
            for j in range(i):
                self.assertGreater(np.abs(means[i] - means[j]).max(), 10.0, (i, j))

    def test_look_differs_from_the_source(self):
        looks = self.anno["looks"]
        self.assertEqual(
            [looks[f"cam{i + 1}"]["name"] for i in range(4)], [t.name for t in TARGET_LOOKS]
        )
        self.assertTrue(all(v["blur"] > 0 for v in looks.values()))
        self.assertTrue(self.anno["occluders"])  # pillars or posts in some cameras...
        self.assertLess(len(self.anno["occluders"]), len(looks))  # ...not all

        def heights(anno):
            H = anno["frame_size"][1]
            return np.array(
                [
                    (p["box"][3] - p["box"][1]) / H
                    for c in anno["cameras"].values()
                    for fr in c["frames"]
                    for p in fr
                ]
            )

        # the steeper perspective: persons over a wider range of sizes (far smaller ones), their
        # median near the source's, so that a detector trained at the source's scale still
        # finds many of them (a shift like CUHK-SYSU -> PRW's, not beyond)
        tgt, src = heights(self.anno), heights(self.source_anno)
        self.assertLess(np.percentile(tgt, 10), 0.7 * np.percentile(src, 10))
        spread = [np.percentile(h, 90) / np.percentile(h, 10) for h in (tgt, src)]
        self.assertGreater(spread[0], 1.3 * spread[1], spread)
        self.assertTrue(0.75 < np.median(tgt) / np.median(src) < 1.0)

    def test_identities_are_not_training_identities(self):
        target = [v["appearance"] for v in self.anno["identities"].values()]
        source = [v["appearance"] for v in self.source_anno["identities"].values()]
        self.assertFalse(
            {_appearance_key(a) for a in target} & {_appearance_key(a) for a in source}
        )
        # the clothes are of the target palette, farther from every training colour than the
        # training sampler's jitter (10): no training generator can draw these people
        for app in target:
            for key, palette, train in (
                ("upper", TARGET_PALETTE.upper, UPPER_COLORS),
                ("lower", TARGET_PALETTE.lower, LOWER_COLORS),
            ):
                self.assertLessEqual(_chebyshev(app[key], palette), 10, app)
                self.assertGreater(_chebyshev(app[key], train), 10, app)

    def test_identities_walk_through_several_cameras(self):
        n_cams = len(self.anno["cameras"])
        planned = [len(v["planned_cameras"]) for v in self.anno["identities"].values()]
        self.assertTrue(all(1 <= n < n_cams for n in planned), planned)  # never all cameras
        self.assertGreaterEqual(sum(n >= 2 for n in planned), 0.75 * len(planned))
        self.assertIn(3, planned)
        self.assertGreaterEqual(self.summary["shared_identities"], 4)
        seen = [len(v["cameras"]) for v in self.anno["identities"].values()]
        self.assertGreaterEqual(sum(n >= 2 for n in seen), 4)

    def test_determinism_and_footage_sets(self):
        again = os.path.join(self.tmp, "again")
        generate_video(again, size="tiny", seed=0, site="target")
        self.assertEqual(_load(again), self.anno)
        for cam in self.anno["cameras"]:
            self.assertEqual(
                _sha256(os.path.join(again, f"{cam}.avi")),
                _sha256(os.path.join(self.root, f"{cam}.avi")),
            )
        other = os.path.join(self.tmp, "footage1")
        generate_video(other, size="tiny", seed=0, site="target", footage=1)
        anno1 = _load(other)
        self.assertEqual(anno1["looks"], self.anno["looks"])  # the same cameras...
        apps0 = {_appearance_key(v["appearance"]) for v in self.anno["identities"].values()}
        apps1 = {_appearance_key(v["appearance"]) for v in anno1["identities"].values()}
        self.assertFalse(apps0 & apps1)  # ...other people
        sig0 = {tuple(v["appearance"]["signature"]) for v in self.anno["identities"].values()}
        sig1 = {tuple(v["appearance"]["signature"]) for v in anno1["identities"].values()}
        self.assertFalse(sig0 & sig1)

    def test_source_site_unchanged(self):
        self.assertNotIn("site", self.source_anno)
        self.assertEqual(_identities_digest(self.source_anno), SOURCE_TINY_IDENTITIES_SHA256)
        explicit = os.path.join(self.tmp, "source_explicit")
        generate_video(explicit, size="tiny", seed=0, site="source", num_cameras=2, footage=0)
        for f in ("annotations.json", "cam1.avi", "cam2.avi"):
            self.assertEqual(
                _sha256(os.path.join(explicit, f)), _sha256(os.path.join(self.source, f)), f
            )
        self.assertEqual(sorted(os.listdir(explicit)), ["annotations.json", "cam1.avi", "cam2.avi"])

    def test_cli_and_config(self):
        out = os.path.join(self.tmp, "cli5")
        summary = cli_main(
            ["--format", "video", "--site", "target", "--cameras", "5", "--size", "tiny"]
            + ["--out", out, "--duration", "6", "--seed", "2", "--image-size", "192", "144"]
        )
        self.assertEqual(sorted(summary["frames"]), [f"cam{i}" for i in range(1, 6)])
        self.assertEqual(summary["fps"], 5.0)
        self.assertEqual(_load(out)["looks"]["cam5"]["scene"], TARGET_LOOKS[0].scene)
        self.assertEqual(make_video_config("default", site="target").duration, 600.0)
        self.assertEqual(make_video_config("default", site="target").num_cameras, 4)
        with self.assertRaisesRegex(ValueError, "4 to 8 cameras"):
            make_video_config("tiny", site="target", num_cameras=3)
        with self.assertRaisesRegex(ValueError, "unknown site"):
            make_video_config("tiny", site="elsewhere")
        with self.assertRaisesRegex(ValueError, "one footage set"):
            make_video_config("tiny", footage=1)


class TestTargetSiteDataset(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cls.out = tmp.name
        cls.summary = generate_target_site(cls.out, size="tiny", seed=0, name="_site_t")
        cls.test_json = os.path.join(cls.out, "test", "coco.json")
        cls.protocol = os.path.join(cls.out, "test", "protocol.json")
        cls.frames = os.path.join(cls.out, "test", "frames")

    def test_files(self):
        self.assertEqual(
            sorted(os.listdir(self.out)), ["datasets.json", "site.json", "test", "train"]
        )
        for split in ("train", "test"):
            names = sorted(os.listdir(os.path.join(self.out, split)))
            self.assertIn("coco.json", names)
            self.assertIn("annotations.json", names)
            self.assertEqual(
                [n for n in names if n.endswith(".avi")], [f"cam{i}.avi" for i in range(1, 5)]
            )
        self.assertIn("protocol.json", os.listdir(os.path.join(self.out, "test")))
        img = cv2.imread(os.path.join(self.frames, "cam3", "000005.jpg"))
        self.assertEqual(img.shape, (240, 320, 3))
        # 2 frames per second of a 5 fps video
        self.assertEqual(sampled_frames(10, 5.0, 2.0), [0, 2, 5, 7])
        self.assertEqual(self.summary["test"]["images"], 4 * len(sampled_frames(80, 5.0, 2.0)))

    def test_coco_reader(self):
        data = read_coco_person_search(self.test_json)
        self.assertTrue(data.has_cameras)
        self.assertEqual(sorted(set(data.cameras)), [1, 2, 3, 4])
        self.assertEqual(len(data.file_names), self.summary["test"]["images"])
        self.assertEqual(sum(len(p) for p in data.pids), self.summary["test"]["boxes"])
        self.assertTrue(all((p >= 1).all() for p in data.pids))  # every person is labeled
        records, pid_map = load_person_search_coco_train(
            os.path.join(self.out, "train", "coco.json"), os.path.join(self.out, "train", "frames")
        )
        self.assertEqual(len(pid_map), self.summary["train"]["identities"])
        self.assertTrue(os.path.isfile(records[0]["file_name"]))

    def test_train_and_test_identities_are_disjoint(self):
        apps = {}
        for split in ("train", "test"):
            anno = _load(os.path.join(self.out, split))
            self.assertEqual(anno["footage"], {"train": 0, "test": 1}[split])
            apps[split] = {_appearance_key(v["appearance"]) for v in anno["identities"].values()}
        self.assertFalse(apps["train"] & apps["test"])

    def test_protocol(self):
        proto = read_person_search_protocol(self.protocol)
        self.assertEqual(proto.num_queries, self.summary["test"]["queries"])
        self.assertGreaterEqual(proto.num_queries, 8)
        main = proto.protocol("search")
        self.assertTrue(all(g.rule == "all" and g.other_cameras_only for g in main.galleries))
        data = read_coco_person_search(self.test_json)
        cams_of = {}
        for cam, pids in zip(data.cameras, data.pids):
            for p in pids.tolist():
                cams_of.setdefault(p, set()).add(cam)
        pairs = set()
        for name, box, pid in zip(proto.query_images, proto.query_boxes, proto.query_pids):
            cam = int(name.split("/")[0][3:])
            self.assertNotIn((cam, int(pid)), pairs)  # one query per (identity, camera)
            pairs.add((cam, int(pid)))
            self.assertGreaterEqual(len(cams_of[int(pid)] - {cam}), 1)
            k = data.file_names.index(name)
            hit = np.flatnonzero(data.pids[k] == pid)
            np.testing.assert_array_equal(data.boxes[k][hit[0]], box)
        expected = {(c, p) for p, cs in cams_of.items() if len(cs) >= 2 for c in cs}
        self.assertEqual(pairs, expected)

    def _evaluate(self, gallery, queries, protocol_file):
        """Perfect predictions (GT boxes, one-hot identity embeddings) through the evaluator's
        protocol builder and search metrics; returns (protocols, results, gallery cameras)."""
        pids = sorted({a["person_id"] for r in gallery for a in r["annotations"]})
        dim = {p: i for i, p in enumerate(pids)}

        def onehot(pid):
            e = np.zeros(len(pids), np.float32)
            e[dim[pid]] = 1.0
            return e

        g_entries = [
            {
                "image_id": r["image_id"],
                "height": r["height"],
                "width": r["width"],
                "boxes": np.asarray([a["bbox"] for a in r["annotations"]], np.float32).reshape(
                    -1, 4
                ),
                "scores": np.ones(len(r["annotations"]), np.float32),
                "embeds": (
                    np.stack([onehot(a["person_id"]) for a in r["annotations"]])
                    if r["annotations"]
                    else np.zeros((0, len(pids)), np.float32)
                ),
            }
            for r in gallery
        ]
        q_entries = [
            {
                "query_index": r["query_index"],
                "image_id": r["image_id"],
                "height": r["height"],
                "width": r["width"],
                "box": np.asarray(r["annotations"][0]["bbox"], np.float32),
                "embed": onehot(r["annotations"][0]["person_id"]),
            }
            for r in queries
        ]
        preds = PersonSearchPredictions.from_entries(g_entries, q_entries, "coco", "t", len(pids))
        table = build_gallery_table(preds, gallery)
        protos = coco_protocols(protocol_file, table, gallery, queries, query_rows(preds, queries))
        res = evaluate_search(
            preds.query_embeddings[protos[0].query_rows], table, protos[0].galleries
        )
        return protos, res

    def test_galleries_exclude_the_query_camera(self):
        gallery, queries, used = load_person_search_coco_test(
            self.test_json, self.frames, self.protocol
        )
        self.assertEqual(used, self.protocol)
        self.assertEqual(len(queries), self.summary["test"]["queries"])
        protos, res = self._evaluate(gallery, queries, self.protocol)
        self.assertEqual([p.key for p in protos], ["search"])
        g = protos[0].galleries
        cams = np.asarray([r["camera_id"] for r in gallery])
        for q, rec in enumerate(queries):
            images, _ = g.entries(q)
            self.assertTrue(images.size > 0)
            self.assertNotIn(rec["camera_id"], set(cams[images].tolist()), q)
            self.assertEqual(images.size, int((cams != rec["camera_id"]).sum()))
        self.assertTrue((g.count_gt() > 0).all())  # every query has a match: none skipped
        self.assertEqual(int(res.skipped.sum()), 0)
        self.assertAlmostEqual(res.metrics()["mAP"], 100.0, places=4)

    def test_registered_split_is_evaluated(self):
        with open(os.path.join(self.out, "datasets.json")) as f:
            self.assertEqual(sorted(json.load(f)), ["_site_t_test", "_site_t_train"])
        names = register_coco_dataset_list(os.path.join(self.out, "datasets.json"))
        try:
            self.assertEqual(sorted(names), ["_site_t_test", "_site_t_train"])
            meta = MetadataCatalog.get("_site_t_test")
            self.assertEqual((meta.split, meta.protocol_file), ("test", self.protocol))
            records = DatasetCatalog.get("_site_t_test")
            gallery = [r for r in records if "query_index" not in r]
            queries = [r for r in records if "query_index" in r]
            self.assertEqual(len(gallery), self.summary["test"]["images"])
            protos, res = self._evaluate(gallery, queries, meta.protocol_file)
            self.assertEqual(int(res.skipped.sum()), 0)
            self.assertEqual(
                len(DatasetCatalog.get("_site_t_train")), self.summary["train"]["images"]
            )
        finally:
            for n in names:
                DatasetCatalog.remove(n)
                MetadataCatalog.remove(n)


if __name__ == "__main__":
    unittest.main()
