"""Indexing and querying video: sampled frames, their numbers and times, matches in videos.

The videos are the synthetic generator's (two MJPG cameras, 10 fps, 30 frames each); the model
is the search tests' small random one (the mapping from stored rows to video frames is what is
checked here, not the model's accuracy).
"""

import json
import os
import shutil
import tempfile
import unittest

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from ian_d2.data.synthetic import generate_video
from ian_d2.search import GallerySearcher, expand_gallery, index_gallery, write_ranking
from ian_d2.search.indexer import load_search_model
from ian_d2.search.sources import iter_source_items, read_video_frames
from ian_d2.search.store import list_shards, read_shard_items
from tests.search_testing import make_cfg, save_model


@pytest.mark.synthetic_cuhk_sysu
class TestVideoIndex(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.videos = os.path.join(tmp, "videos")
        cls.summary = generate_video(cls.videos, size="tiny", seed=0)
        with open(os.path.join(cls.videos, "annotations.json")) as f:
            cls.ann = json.load(f)
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        cls.model = load_search_model(cls.cfg)
        cls.index_dir = os.path.join(tmp, "index")
        cls.stats = index_gallery(cls.cfg, [cls.videos], cls.index_dir, fps=5, score_thresh=0.0,
                                  model=cls.model, num_workers=1, progress=False)  # fmt: skip

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_sampled_frames_and_times(self):
        sources = expand_gallery([self.videos])
        self.assertEqual([os.path.basename(s.path) for s in sources], ["cam1.avi", "cam2.avi"])
        self.assertEqual([(s.kind, s.video_fps, s.num_frames) for s in sources],
                         [("video", 10.0, 30)] * 2)  # fmt: skip
        self.assertEqual(self.stats["items"], 2 * 15)  # 5 of every 10 frames per second
        items = sorted(it.key + (it.time,) for p in list_shards(self.index_dir)
                       for it in read_shard_items(p))  # fmt: skip
        for cam in ("cam1.avi", "cam2.avi"):
            mine = [(f, t) for src, f, t in items if src.endswith(cam)]
            self.assertEqual([f for f, _ in mine], list(range(0, 30, 2)))
            np.testing.assert_allclose([t for _, t in mine], np.arange(0, 30, 2) / 10.0)
        # sampling rates: every frame at >= the video's rate, every 3rd of 10 at 10/3 fps
        every = [it.frame for it, _ in iter_source_items(sources[0], 30.0)]
        self.assertEqual(every, list(range(30)))
        third = [it.frame for it, _ in iter_source_items(sources[0], 10.0 / 3)]
        self.assertEqual(third, list(range(0, 30, 3)))

    def test_query_finds_the_video_frame(self):
        """A stored detection of a video frame, queried from that frame saved as an image,
        comes first with its video, frame number, time and box."""
        t = pq.read_table(list_shards(self.index_dir)[0]).to_pydict()
        rows = [i for i in range(len(t["score"])) if t["source"][i].endswith("cam2.avi")]
        row = rows[len(rows) // 2]
        source, frame = t["source"][row], t["frame"][row]
        image = os.path.join(self._tmp.name, "query_frame.png")  # lossless: the same pixels
        cv2.imwrite(image, read_video_frames(source, [frame])[frame])
        box = [t[k][row] for k in ("x1", "y1", "x2", "y2")]
        searcher = GallerySearcher(self.index_dir, model=self.model)
        res = searcher.query(image, box, top_k=4)
        top = res["matches"][0]
        self.assertEqual((top["source"], top["frame"]), (source, frame))
        self.assertAlmostEqual(top["time_s"], frame / 10.0, places=6)
        np.testing.assert_allclose(top["box"], box, atol=0.01)
        self.assertGreater(top["similarity"], 0.999)
        out = os.path.join(self._tmp.name, "ranking")
        files = write_ranking(res, out)
        self.assertEqual(cv2.imread(files["image"]).shape[0], 240)
        with open(files["json"]) as f:
            saved = json.load(f)
        self.assertEqual(saved["matches"][0]["time_s"], top["time_s"])

    def test_images_and_video_in_one_gallery(self):
        mixed = os.path.join(self._tmp.name, "mixed")
        images = self.synthetic.images
        shutil.copytree(images, os.path.join(mixed, "photos"))
        shutil.copy(os.path.join(self.videos, "cam1.avi"), mixed)
        out = os.path.join(self._tmp.name, "mixed_index")
        stats = index_gallery(self.cfg, [mixed], out, fps=2, score_thresh=0.0, model=self.model,
                              num_workers=0, progress=False)  # fmt: skip
        self.assertEqual(stats["items"], 30 + 6)  # 30 images + 6 frames of a 3 s video at 2 fps
        searcher = GallerySearcher(out, model=self.model)
        frames = {int(f) for f in searcher.table["frame"]}
        self.assertEqual(frames, {-1, 0, 5, 10, 15, 20, 25})


if __name__ == "__main__":
    unittest.main()
