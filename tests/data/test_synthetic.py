"""The synthetic CUHK-SYSU / PRW generator: determinism, files, and the exact real formats."""

import glob
import hashlib
import os
import tempfile
import unittest

import numpy as np
import scipy.io

from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw, make_config
from ian_d2.data.synthetic.__main__ import main as cli_main

_REAL_TESTG100 = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "..",
    "shared",
    "fixtures",
    "cuhk_sysu",
    "TestG100.mat",
)


def _digests(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _mat(path):
    return scipy.io.loadmat(path)


def _var(path):
    names = [k for k in _mat(path) if not k.startswith("__")]
    assert len(names) == 1, (path, names)
    return names[0], _mat(path)[names[0]]


def _str(a):
    return str(np.asarray(a).ravel()[0])


def _box(a):
    return tuple(int(v) for v in np.asarray(a).ravel())


class _TmpMixin:
    @classmethod
    def _tmpdir(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        return tmp.name


class TestSyntheticCUHKSYSU(_TmpMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = os.path.join(cls._tmpdir(), "cuhk")
        cls.summary = generate_cuhk_sysu(cls.root, size="tiny", seed=0)
        cls.ann = os.path.join(cls.root, "annotation")
        cls.tt = os.path.join(cls.ann, "test", "train_test")

    def test_files_exist(self):
        s = self.summary
        for i in range(1, s["images"] + 1):
            self.assertTrue(os.path.isfile(os.path.join(self.root, "Image", "SSM", f"s{i}.jpg")))
        self.assertEqual(s["gallery_sizes"], [5, 10])
        for rel in ("Images.mat", "Person.mat", "pool.mat", "test/train_test/Train.mat"):
            self.assertTrue(os.path.isfile(os.path.join(self.ann, rel)), rel)
        for g in s["gallery_sizes"]:
            self.assertTrue(os.path.isfile(os.path.join(self.tt, f"TestG{g}.mat")))
        # The tiny preset makes sure both subsets have a query.
        self.assertGreater(s["occlusion_queries"], 0)
        self.assertGreater(s["resolution_queries"], 0)
        for name in ("Occlusion", "Resolution"):
            var, _ = _var(os.path.join(self.ann, "test", "subset", f"{name}.mat"))
            self.assertEqual(var, name)

    def test_images_mat(self):
        img = _mat(os.path.join(self.ann, "Images.mat"))["Img"]
        self.assertEqual(img.shape, (1, self.summary["images"]))
        self.assertEqual(img.dtype.names, ("imname", "nAppear", "box"))
        n_valid = n_zero = 0
        for e in img[0]:
            boxes = e["box"]
            self.assertEqual(boxes.shape[0], 1)
            self.assertEqual(boxes.dtype.names, ("idlocate",))
            self.assertEqual(float(e["nAppear"].ravel()[0]), boxes.shape[1])
            for b in boxes[0]:
                self.assertEqual(b["idlocate"].dtype, np.uint16)
                self.assertEqual(b["idlocate"].shape, (1, 4))
                x, y, w, h = (float(v) for v in b["idlocate"].ravel())
                if w == 0 or h == 0:
                    n_zero += 1
                    continue
                n_valid += 1
                self.assertTrue(0 <= x and x + w <= 400 and 0 <= y and y + h <= 300)
        self.assertEqual(n_zero, self.summary["zero_size_boxes"])
        self.assertGreater(n_zero, 0)
        self.assertEqual(n_valid, self.summary["boxes"])

    def test_train_identities(self):
        img = _mat(os.path.join(self.ann, "Images.mat"))["Img"]
        boxes = {_str(e["imname"]): {_box(b["idlocate"]) for b in e["box"][0]} for e in img[0]}
        pool = _mat(os.path.join(self.ann, "pool.mat"))["pool"]
        self.assertEqual(pool.shape, (self.summary["test_images"], 1))
        pool_names = {_str(c) for c in pool[:, 0]}
        train = _mat(os.path.join(self.tt, "Train.mat"))["Train"]
        self.assertEqual(train.shape, (self.summary["train_identities"], 1))
        n_boxes = 0
        for cell in train[:, 0]:
            self.assertEqual(cell.shape, (1, 1))
            self.assertEqual(cell.dtype.names, ("idname", "nAppear", "scene"))
            scene = cell[0, 0]["scene"]
            self.assertEqual(scene.dtype.names, ("imname", "idlocate", "ishard"))
            images = [_str(s["imname"]) for s in scene[0]]
            self.assertGreaterEqual(len(set(images)), 2)
            for s in scene[0]:
                name = _str(s["imname"])
                self.assertNotIn(name, pool_names)
                self.assertEqual(s["idlocate"].dtype, np.uint16)
                self.assertEqual(s["ishard"].dtype, np.uint8)
                self.assertIn(_box(s["idlocate"]), boxes[name])  # exact box match
                n_boxes += 1
        self.assertEqual(n_boxes, self.summary["train_boxes"])
        person = _mat(os.path.join(self.ann, "Person.mat"))["Person"]
        self.assertEqual(
            person.shape,
            (1, self.summary["train_identities"] + self.summary["test_identities"]),
        )
        self.assertEqual(person.dtype.names, ("idname", "nAppear", "scene"))

    def test_protocol_matches_real_structure(self):
        if not os.path.isdir(os.path.dirname(_REAL_TESTG100)):
            self.skipTest(f"real fixture folder {os.path.dirname(_REAL_TESTG100)} is absent")
        real = _mat(_REAL_TESTG100)["TestG100"]
        ours = _mat(os.path.join(self.tt, "TestG10.mat"))["TestG10"]
        self.assertEqual(ours.dtype, real.dtype)
        self.assertEqual(ours.shape[0], 1)
        rq, oq = real[0, 0]["Query"], ours[0, 0]["Query"]
        self.assertEqual(oq.dtype, rq.dtype)
        self.assertEqual(oq.shape, rq.shape)
        for f in rq.dtype.names:
            self.assertEqual(oq[0, 0][f].dtype.kind, rq[0, 0][f].dtype.kind, f)
            if f in ("idlocate", "ishard"):
                self.assertEqual(oq[0, 0][f].dtype, rq[0, 0][f].dtype, f)
                self.assertEqual(oq[0, 0][f].shape, rq[0, 0][f].shape, f)
        rg, og = real[0, 0]["Gallery"], ours[0, 0]["Gallery"]
        self.assertEqual(og.dtype, rg.dtype)
        self.assertEqual(og.shape, (1, 10))
        real_pos = rg[0, 0]
        real_neg = next(e for e in rg[0] if e["idlocate"].size == 0)
        our_pos = og[0, 0]
        our_neg = next(e for e in og[0] if e["idlocate"].size == 0)
        for ours_e, real_e in ((our_pos, real_pos), (our_neg, real_neg)):
            for f in rg.dtype.names:
                self.assertEqual(ours_e[f].shape, real_e[f].shape, f)
                if f == "imname":  # '<U..' with the length of the name
                    self.assertEqual(ours_e[f].dtype.kind, real_e[f].dtype.kind)
                else:  # uint16 / uint8 for a positive, float64 1x0 for a negative
                    self.assertEqual(ours_e[f].dtype, real_e[f].dtype, f)

    def test_queries_and_galleries(self):
        pool = {_str(c) for c in _mat(os.path.join(self.ann, "pool.mat"))["pool"][:, 0]}
        query_lists = []
        for g in self.summary["gallery_sizes"]:
            prot = _mat(os.path.join(self.tt, f"TestG{g}.mat"))[f"TestG{g}"]
            self.assertEqual(prot.shape, (1, self.summary["queries"]))
            qs = []
            for item in prot[0]:
                q = item["Query"][0, 0]
                qname = _str(q["imname"])
                qs.append((_str(q["idname"]), qname, _box(q["idlocate"])))
                gal = item["Gallery"][0]
                self.assertEqual(len(gal), g)
                names = [_str(e["imname"]) for e in gal]
                self.assertNotIn(qname, names)
                self.assertTrue(set(names) <= pool and qname in pool)
                has = [e["idlocate"].size == 4 for e in gal]
                self.assertTrue(has[0], "each query needs a gallery positive, listed first")
                npos = sum(has)
                self.assertEqual(has, [True] * npos + [False] * (g - npos))
            query_lists.append(qs)
        self.assertTrue(all(q == query_lists[0] for q in query_lists))

    def test_determinism(self):
        same = os.path.join(self._tmpdir(), "same")
        other = os.path.join(self._tmpdir(), "other")
        generate_cuhk_sysu(same, size="tiny", seed=0)
        generate_cuhk_sysu(other, size="tiny", seed=1)
        a, b, c = _digests(self.root), _digests(same), _digests(other)
        self.assertEqual(a, b)
        self.assertNotEqual(a["Image/SSM/s1.jpg"], c["Image/SSM/s1.jpg"])
        self.assertNotEqual(a["annotation/Images.mat"], c["annotation/Images.mat"])

    def test_cli_overrides(self):
        out = os.path.join(self._tmpdir(), "cli")
        s = cli_main(
            [
                "--format",
                "cuhk_sysu",
                "--out",
                out,
                "--size",
                "tiny",
                "--num-images",
                "24",
                "--num-identities",
                "10",
                "--image-size",
                "320",
                "240",
                "--gallery-sizes",
                "4",
                "500",
            ]
        )
        self.assertEqual(s["images"], 24)
        self.assertEqual(s["gallery_sizes"], [4])  # 500 does not fit: skipped
        import cv2

        self.assertEqual(
            cv2.imread(os.path.join(out, "Image", "SSM", "s1.jpg")).shape, (240, 320, 3)
        )


class TestAblationPreset(_TmpMixin, unittest.TestCase):
    def test_ablation_preset(self):
        """The ablations' test set: 300 queries (one per test identity), galleries 50-400 that
        fit in the pool, identities as seen in the demo's training set."""
        cfg = make_config("cuhk_sysu", "ablation")
        self.assertEqual(cfg.num_test_identities, 300)
        n_pool = int(round(cfg.num_images * cfg.test_image_fraction))
        self.assertEqual(n_pool, 520)
        self.assertEqual(cfg.gallery_sizes, (50, 100, 200, 400))
        self.assertLess(max(cfg.gallery_sizes), n_pool)
        self.assertEqual(cfg.num_identities - cfg.num_test_identities, 60)
        demo = make_config("cuhk_sysu", "default")
        self.assertEqual(cfg.appearances, demo.appearances)
        self.assertEqual(cfg.min_person_frac, demo.min_person_frac)
        self.assertIsNone(demo.test_appearances)
        with self.assertRaisesRegex(ValueError, "unknown prw size 'ablation'"):
            make_config("prw", "ablation")

    def test_test_appearances(self):
        """test_appearances sets how often a test identity appears, train identities unchanged."""
        root = os.path.join(self._tmpdir(), "cuhk")
        s = generate_cuhk_sysu(root, size="tiny", seed=0, test_appearances=(2, 2))
        tt = os.path.join(root, "annotation", "test", "train_test")
        g = s["gallery_sizes"][0]
        prot = _mat(os.path.join(tt, f"TestG{g}.mat"))[f"TestG{g}"]
        for item in prot[0]:  # the query's one other appearance is its only positive
            self.assertEqual(sum(e["idlocate"].size == 4 for e in item["Gallery"][0]), 1)
        base = generate_cuhk_sysu(os.path.join(self._tmpdir(), "base"), size="tiny", seed=0)
        self.assertEqual(s["train_boxes"], base["train_boxes"])
        self.assertEqual(s["queries"], base["queries"])


class TestSyntheticPRW(_TmpMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = os.path.join(cls._tmpdir(), "prw")
        cls.summary = generate_prw(cls.root, size="tiny", seed=0)

    def _split(self, split):
        var, cell = _var(os.path.join(self.root, f"frame_{split}.mat"))
        self.assertEqual(var, f"img_index_{split}")
        self.assertEqual(cell.shape[1], 1)
        return [_str(c) for c in cell[:, 0]]

    def _annotations(self):
        out = {}
        for path in sorted(glob.glob(os.path.join(self.root, "annotations", "*.jpg.mat"))):
            var, arr = _var(path)
            out[os.path.basename(path)[: -len(".jpg.mat")]] = (var, arr)
        return out

    def test_files_and_splits(self):
        s = self.summary
        train, test = self._split("train"), self._split("test")
        self.assertEqual(len(train), s["train_frames"])
        self.assertEqual(len(test), s["test_frames"])
        self.assertFalse(set(train) & set(test))
        for name in train + test:
            self.assertFalse(name.endswith(".jpg"))
            self.assertRegex(name, r"^c[1-6]s\d+_\d{6}$")
            self.assertTrue(os.path.isfile(os.path.join(self.root, "frames", name + ".jpg")))
        anns = self._annotations()
        self.assertEqual(set(anns), set(train) | set(test))
        self.assertEqual({n[:2] for n in anns}, {f"c{c}" for c in range(1, 7)})

    def test_annotation_variables_and_values(self):
        anns = self._annotations()
        self.assertEqual({v for v, _ in anns.values()}, {"box_new", "anno_file", "anno_previous"})
        rows = np.concatenate([a for _, a in anns.values()])
        self.assertEqual(rows.dtype, np.float64)
        self.assertEqual(rows.shape[1], 5)
        self.assertEqual(len(rows), self.summary["boxes"])
        self.assertTrue(np.any(rows[:, 0] == -2))
        self.assertTrue(np.all((rows[:, 0] == -2) | (rows[:, 0] > 0)))
        self.assertTrue(np.any(rows[:, 1:] != np.round(rows[:, 1:])))  # non-integer values
        self.assertTrue(np.any(rows[:, 1:3] < 0))  # some persons cut at the left / top

    def test_ids(self):
        var, tr = _var(os.path.join(self.root, "ID_train.mat"))
        self.assertEqual(var, "ID_train")
        var, te = _var(os.path.join(self.root, "ID_test.mat"))
        self.assertEqual(var, "ID_test2")
        self.assertEqual(tr.shape[0], 1)
        self.assertEqual(te.shape[0], 1)
        tr, te = [int(v) for v in tr.ravel()], [int(v) for v in te.ravel()]
        self.assertFalse(set(tr) & set(te))
        self.assertNotEqual(tr, list(range(1, len(tr) + 1)), "train ids must not be contiguous")
        self.assertEqual(max(tr), max(tr + te))
        # Train identities: >= 2 train frames each, never in test frames.
        train, test = set(self._split("train")), set(self._split("test"))
        frames_of = {}
        for name, (_, arr) in self._annotations().items():
            for pid in arr[:, 0]:
                frames_of.setdefault(int(pid), set()).add(name)
        for pid in tr:
            self.assertGreaterEqual(len(frames_of.get(pid, ())), 2, pid)
            self.assertTrue(frames_of[pid] <= train, pid)
        for pid in te:
            self.assertTrue(frames_of.get(pid, set()) <= test, pid)

    def test_queries(self):
        with open(os.path.join(self.root, "query_info.txt"), "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\r\n"))
        self.assertEqual(raw.count(b"\n"), raw.count(b"\r\n"))
        lines = raw.decode().split("\r\n")[:-1]
        self.assertEqual(len(lines), self.summary["queries"])
        self.assertEqual(len(lines), self.summary["test_identities"])
        anns = self._annotations()
        test = set(self._split("test"))
        _, te = _var(os.path.join(self.root, "ID_test.mat"))
        te = {int(v) for v in te.ravel()}
        for line in lines:
            parts = line.split()
            self.assertEqual(len(parts), 6)
            pid, box, frame = int(parts[0]), [float(v) for v in parts[1:5]], parts[5]
            self.assertIn(pid, te)
            self.assertIn(frame, test)
            arr = anns[frame][1]
            self.assertTrue(any(r[0] == pid and np.allclose(r[1:], box) for r in arr))
            others = [
                n for n, (_, a) in anns.items() if n != frame and n in test and pid in a[:, 0]
            ]
            self.assertTrue(others, f"query {pid} has no gallery positive")
            crop = os.path.join(self.root, "query_box", f"{pid}_{frame}.jpg")
            self.assertTrue(os.path.isfile(crop))
        self.assertTrue(any("." in p for line in lines for p in line.split()[1:5]))

    def test_determinism(self):
        same = os.path.join(self._tmpdir(), "same")
        other = os.path.join(self._tmpdir(), "other")
        generate_prw(same, size="tiny", seed=0)
        generate_prw(other, size="tiny", seed=5)
        a, b, c = _digests(self.root), _digests(same), _digests(other)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)


if __name__ == "__main__":
    unittest.main()
