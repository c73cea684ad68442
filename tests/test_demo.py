"""demo.py on a tiny generated gallery with a random-weight model: outputs and input errors."""

import json
import os
import tempfile
import unittest

from ian_d2.data.synthetic import generate_cuhk_sysu
from repo_scripts import QUICK_CONFIG, load_script


class TestDemo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        root = os.path.join(cls._tmp.name, "cuhk")
        generate_cuhk_sysu(root, size="tiny", seed=0)
        cls.images = os.path.join(root, "Image", "SSM")
        cls.demo = load_script("demo.py", "ian_demo")

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _argv(self, out, gallery, box=("10", "20", "60", "150"), query="s1.jpg"):
        return [
            "--config-file", QUICK_CONFIG,
            "--query-image", os.path.join(self.images, query),
            "--query-box", *box,
            "--gallery", *gallery,
            "--top-k", "3", "--det-thresh", "0.0", "--output", out,
            "--opts", "MODEL.WEIGHTS", "", "MODEL.REID.NUM_PIDS", "8",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        ]  # fmt: skip

    def test_ranking_written(self):
        out = os.path.join(self._tmp.name, "out")
        gallery = [os.path.join(self.images, f"s{i}.jpg") for i in (2, 3, 4)]
        ranking = self.demo.main(self._argv(out, gallery))
        self.assertEqual(len(ranking), 3)
        sims = [m["similarity"] for m in ranking]
        self.assertEqual(sims, sorted(sims, reverse=True))
        self.assertTrue(all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in sims))
        with open(os.path.join(out, "ranking.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["gallery_images"], 3)
        self.assertEqual(saved["ranking"], ranking)
        for name in ("query.jpg", "ranking.jpg"):
            self.assertTrue(os.path.isfile(os.path.join(out, name)))
        self.assertEqual(len([f for f in os.listdir(out) if f.startswith("rank_")]), 3)

    def test_gallery_sources(self):
        self.assertEqual(len(self.demo.list_gallery([self.images])), 30)
        lst = os.path.join(self._tmp.name, "list.txt")
        with open(lst, "w") as f:
            f.write(os.path.join(self.images, "s1.jpg") + "\n\ns2.jpg\n")
        self.assertEqual(
            self.demo.list_gallery([lst]),
            [os.path.join(self.images, "s1.jpg"), os.path.join(self._tmp.name, "s2.jpg")],
        )

    def test_errors(self):
        out = os.path.join(self._tmp.name, "err")
        with self.assertRaisesRegex(
            ValueError, r"query box .*must satisfy.*the query image is 400x300"
        ):
            self.demo.main(self._argv(out, [self.images], box=("10", "20", "500", "150")))
        with self.assertRaisesRegex(ValueError, r"image '.*nope.jpg' does not exist"):
            self.demo.main(self._argv(out, [self.images], query="nope.jpg"))
        bad = os.path.join(self._tmp.name, "bad.jpg")
        with open(bad, "w") as f:
            f.write("not an image")
        with self.assertRaisesRegex(ValueError, r"bad.jpg' is not a readable image"):
            self.demo.main(self._argv(out, [bad]))
        empty = os.path.join(self._tmp.name, "empty")
        os.makedirs(empty)
        with self.assertRaisesRegex(ValueError, "holds no image"):
            self.demo.main(self._argv(out, [empty]))


if __name__ == "__main__":
    unittest.main()
