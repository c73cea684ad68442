"""The gallery index on a tiny synthetic gallery: build, query, resume, append, bad inputs.

The model is a randomly initialised small IAN saved as a checkpoint: the tests check the
index itself (what is stored, that a query finds exactly the stored detection it was given,
that nothing committed is redone or lost), not the model's accuracy.
"""

import glob
import json
import os
import shutil
import tempfile
import unittest

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from ian_d2.search import GallerySearcher, IndexManifest, index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.store import list_shards
from tests.search_testing import SMALL_OPTS, CrashingModel, Interrupt, make_cfg, save_model


def _rows(index_dir):
    """Stored detections as a sorted list of (source, frame, box, score)."""
    out = []
    for path in list_shards(index_dir):
        t = pq.read_table(path).to_pydict()
        for i in range(len(t["score"])):
            box = tuple(round(t[k][i], 3) for k in ("x1", "y1", "x2", "y2"))
            out.append(
                (os.path.basename(t["source"][i]), t["frame"][i], box, round(t["score"][i], 4))
            )
    return sorted(out)


@pytest.mark.synthetic_cuhk_sysu
class TestGalleryIndex(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.gallery = cls.synthetic.images  # 30 images
        cls.images = sorted(glob.glob(os.path.join(cls.gallery, "*.jpg")))
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        from ian_d2.search.indexer import load_search_model

        cls.model = load_search_model(cls.cfg)
        cls.full = os.path.join(tmp, "full")
        cls.stats = cls.index(cls.full, [cls.gallery])

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def index(cls, out, gallery, **kwargs):
        kwargs.setdefault("score_thresh", 0.0)
        kwargs.setdefault("model", cls.model)
        kwargs.setdefault("num_workers", 0)
        return index_gallery(cls.cfg, gallery, out, progress=False, **kwargs)

    def test_index_contents(self):
        manifest = IndexManifest.load(self.full)
        self.assertEqual(manifest.embed_dim, 256)
        self.assertEqual(manifest.model["weights"], os.path.abspath(self.weights))
        self.assertEqual(self.stats["items"], 30)
        self.assertEqual(self.stats["stored_detections"], self.stats["detections"])
        self.assertEqual(self.stats["detections"], 30 * 8)  # DETECTIONS_PER_IMAGE, threshold 0
        table = pq.read_table(list_shards(self.full)[0])
        self.assertEqual(table.schema.field("embedding").type.list_size, 256)
        emb = np.asarray(table.column("embedding").to_pylist(), np.float32)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        self.assertTrue(all(f == -1 for f in table.column("frame").to_pylist()))
        self.assertEqual(set(table.column("image_width").to_pylist()), {400})
        self.assertTrue(os.path.isfile(os.path.join(self.full, "vectors", "flat.faiss")))

    def test_query_finds_the_stored_detection(self):
        """Querying with a stored detection's own box returns that detection first: the query
        path embeds a given box exactly as the gallery path embedded it."""
        searcher = GallerySearcher(self.full, model=self.model)
        t = pq.read_table(list_shards(self.full)[0]).to_pydict()
        for row in (0, 13, 37):
            box = [t[k][row] for k in ("x1", "y1", "x2", "y2")]
            res = searcher.query(t["source"][row], box, top_k=5)
            top = res["matches"][0]
            self.assertEqual(top["source"], t["source"][row])
            np.testing.assert_allclose(top["box"], box, atol=0.01)
            self.assertGreater(top["similarity"], 0.999)
            sims = [m["similarity"] for m in res["matches"]]
            self.assertEqual(sims, sorted(sims, reverse=True))
            self.assertEqual(res["stored_detections"], 240)
            self.assertLess(res["search_ms"], 1000.0)

    def test_resume_redoes_nothing_and_loses_nothing(self):
        out = os.path.join(self._tmp.name, "resumed")
        with self.assertRaises(Interrupt):  # killed after 5 batches of 2: 2 shards of 4 items
            self.index(out, [self.gallery], batch_size=2, shard_size=4,
                       model=CrashingModel(self.model, 5))  # fmt: skip
        committed = list_shards(out)
        self.assertEqual(len(committed), 2)
        before = {p: open(p, "rb").read() for p in committed}
        with open(os.path.join(out, "shards", "r000-000003.parquet.tmp.999"), "wb") as f:
            f.write(b"half a shard")  # what a kill during a write leaves
        with self.assertRaisesRegex(ValueError, "already holds a search index.*--resume"):
            self.index(out, [self.gallery])
        stats = self.index(out, [self.gallery], batch_size=2, shard_size=4, resume=True)
        self.assertEqual(stats["skipped_committed"], 8)
        self.assertEqual(stats["items"], 30 - 8)  # nothing committed is redone
        for p, data in before.items():  # committed shards untouched
            self.assertEqual(open(p, "rb").read(), data)
        self.assertEqual(glob.glob(os.path.join(out, "shards", "*.tmp.*")), [])
        self.assertEqual(_rows(out), _rows(self.full))  # nothing lost, nothing twice
        again = self.index(out, [self.gallery], resume=True)
        self.assertEqual(again["items"], 0)

    def test_append(self):
        out = os.path.join(self._tmp.name, "appended")
        first, rest = self.images[:12], self.images[12:]
        self.index(out, first)
        ids_before = GallerySearcher(out, model=self.model).vectors.ntotal
        stats = self.index(out, first + rest, append=True)
        self.assertEqual(stats["items"], len(rest))
        self.assertEqual(stats["stored_detections"], 240)
        self.assertEqual(ids_before, 12 * 8)
        with open(os.path.join(out, "vectors", "flat.json")) as f:
            self.assertEqual(
                json.load(f)["shards"], [os.path.basename(p) for p in list_shards(out)]
            )
        self.assertEqual(_rows(out), _rows(self.full))

    def test_other_model_refused(self):
        other = save_model(os.path.join(self._tmp.name, "other.pth"), seed=1)
        with self.assertRaisesRegex(ValueError, "built with another model: weights"):
            index_gallery(make_cfg(other), [self.gallery], self.full, append=True,
                          score_thresh=0.0, progress=False)  # fmt: skip
        with self.assertRaisesRegex(ValueError, "built with another model: weights"):
            GallerySearcher(self.full, weights=other)
        small = os.path.join(self._tmp.name, "dim128.pth")
        save_model(small, 0, "MODEL.REID.EMBED_DIM", 128)
        cfg = make_cfg(small, "MODEL.REID.EMBED_DIM", 128)
        with self.assertRaisesRegex(ValueError, "embedding size 128 vs the index's 256"):
            index_gallery(cfg, [self.gallery], self.full, append=True, progress=False)

    def test_bad_inputs(self):
        tmp = self._tmp.name
        with self.assertRaisesRegex(ValueError, "index folder '.*nowhere' does not exist"):
            GallerySearcher(os.path.join(tmp, "nowhere"))
        os.makedirs(os.path.join(tmp, "not_an_index"), exist_ok=True)
        with self.assertRaisesRegex(ValueError, "is not a search index: it has no manifest.json"):
            GallerySearcher(os.path.join(tmp, "not_an_index"))
        with self.assertRaisesRegex(ValueError, "--resume: '.*' holds no search index"):
            self.index(os.path.join(tmp, "fresh"), [self.gallery], resume=True)
        searcher = GallerySearcher(self.full, model=self.model)
        with self.assertRaisesRegex(ValueError, r"query box .* must satisfy .*is 400x300"):
            searcher.query(self.images[0], [10, 20, 500, 150])
        with self.assertRaisesRegex(ValueError, "image '.*nope.jpg' does not exist"):
            searcher.query(os.path.join(tmp, "nope.jpg"), [10, 20, 50, 150])

        # an unreadable image stops the run, naming it; what was committed stays
        bad_dir = os.path.join(tmp, "bad_gallery")
        os.makedirs(bad_dir)
        for p in self.images[:6]:
            shutil.copy(p, bad_dir)
        with open(os.path.join(bad_dir, "zz_broken.jpg"), "w") as f:
            f.write("not an image")
        out = os.path.join(tmp, "bad_index")
        with self.assertRaisesRegex(ValueError, "image '.*zz_broken.jpg' is not a readable image"):
            self.index(out, [bad_dir], batch_size=2, shard_size=2)
        self.assertEqual(len(list_shards(out)), 3)  # the 6 good images, committed
        with self.assertRaisesRegex(ValueError, "'.*notes.doc' is neither an image"):
            self.index(out, [os.path.join(bad_dir, "notes.doc")], append=True)
        fake_video = os.path.join(tmp, "broken.mp4")
        with open(fake_video, "w") as f:
            f.write("not a video")
        with self.assertRaisesRegex(ValueError, "video '.*broken.mp4' is not a video that OpenCV"):
            self.index(out, [fake_video], append=True)

        # a corrupt shard is named, with what to do
        corrupt = os.path.join(tmp, "corrupt")
        shutil.copytree(self.full, corrupt)
        shard = list_shards(corrupt)[0]
        with open(shard, "r+b") as f:
            f.truncate(100)
        with self.assertRaisesRegex(
            ValueError, "shard '.*r000-000001.parquet' is corrupt.*--resume"
        ):
            self.index(corrupt, [self.gallery], resume=True)

    def test_command_line(self):
        tmp = self._tmp.name
        out = os.path.join(tmp, "cli_index")
        opts = [str(v) for v in SMALL_OPTS] + ["MODEL.WEIGHTS", self.weights]
        from tests.repo_scripts import QUICK_CONFIG

        argv = ["index", "--config-file", QUICK_CONFIG, "--gallery", *self.images[:5],
                "--out", out, "--score-thresh", "0", "--num-workers", "0", *opts]  # fmt: skip
        stats = search_main(argv)
        self.assertEqual(stats["items"], 5)
        csv_path = os.path.join(tmp, "queries.csv")
        t = pq.read_table(list_shards(out)[0]).to_pydict()
        with open(csv_path, "w") as f:
            f.write("image,x1,y1,x2,y2,name\n")
            for row, name in ((0, "first"), (9, "second")):
                box = ",".join(str(t[k][row]) for k in ("x1", "y1", "x2", "y2"))
                f.write(f"{t['source'][row]},{box},{name}\n")
        res_dir = os.path.join(tmp, "cli_results")
        results = search_main(["query", out, "--queries", csv_path, "--top-k", "3",
                               "--output", res_dir, "--device", "cpu"])  # fmt: skip
        self.assertEqual(len(results), 2)
        for name, row, res in (("first", 0, results[0]), ("second", 9, results[1])):
            self.assertEqual(res["matches"][0]["source"], t["source"][row])
            self.assertGreater(res["matches"][0]["similarity"], 0.999)
            img = cv2.imread(os.path.join(res_dir, name, "ranking.jpg"))
            self.assertEqual(img.shape[0], 240)
            with open(os.path.join(res_dir, name, "ranking.json")) as f:
                self.assertEqual(len(json.load(f)["matches"]), 3)
        with self.assertRaisesRegex(ValueError, "needs the header image,x1,y1,x2,y2"):
            bad = os.path.join(tmp, "bad.csv")
            with open(bad, "w") as f:
                f.write("a,b\n1,2\n")
            search_main(["query", out, "--queries", bad])


if __name__ == "__main__":
    unittest.main()
