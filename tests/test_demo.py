"""demo/demo.py on a tiny generated gallery with a saved random-weight model: outputs, the kept
index (extended, not redone, on the next call) and input errors."""

import json
import os
import tempfile
import unittest

import pytest

from tests.repo_scripts import QUICK_CONFIG, load_script
from tests.search_testing import SMALL_OPTS, save_model


@pytest.mark.synthetic_cuhk_sysu
class TestDemo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.images = cls.synthetic.images
        cls.weights = save_model(os.path.join(cls._tmp.name, "model.pth"))
        cls.demo = load_script("demo/demo.py", "ian_demo")

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
            "--opts", *[str(v) for v in SMALL_OPTS], "MODEL.WEIGHTS", self.weights,
        ]  # fmt: skip

    def test_ranking_written_and_index_kept(self):
        out = os.path.join(self._tmp.name, "out")
        gallery = [os.path.join(self.images, f"s{i}.jpg") for i in (2, 3, 4)]
        with self.assertLogs("ian_d2.search.indexer", "INFO") as logs:
            ranking = self.demo.main(self._argv(out, gallery))
        self.assertIn("indexed 3 items", "\n".join(logs.output))
        self.assertEqual(len(ranking), 3)
        sims = [m["similarity"] for m in ranking]
        self.assertEqual(sims, sorted(sims, reverse=True))
        self.assertTrue(all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in sims))
        with open(os.path.join(out, "ranking.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["matches"], ranking)
        self.assertEqual(saved["stored_detections"], 3 * 8)
        self.assertTrue(os.path.isfile(os.path.join(out, "ranking.jpg")))
        self.assertTrue(os.path.isfile(os.path.join(out, "index", "manifest.json")))
        # a second query: nothing is detected again; a new gallery image is added
        gallery.append(os.path.join(self.images, "s5.jpg"))
        with self.assertLogs("ian_d2.search.indexer", "INFO") as logs:
            self.demo.main(self._argv(out, gallery, box=("30", "40", "80", "160")))
        self.assertIn("indexed 1 items", "\n".join(logs.output))

    def test_errors(self):
        out = os.path.join(self._tmp.name, "err")
        with self.assertRaisesRegex(
            ValueError, r"query box .*must satisfy.*query image '.*s1.jpg' is 400x300"
        ):
            self.demo.main(self._argv(out, [self.images], box=("10", "20", "500", "150")))
        with self.assertRaisesRegex(ValueError, r"image '.*nope.jpg' does not exist"):
            self.demo.main(self._argv(out, [self.images], query="nope.jpg"))
        empty = os.path.join(self._tmp.name, "empty")
        os.makedirs(empty)
        with self.assertRaisesRegex(ValueError, "holds no image or video"):
            self.demo.main(self._argv(os.path.join(self._tmp.name, "err2"), [empty]))


if __name__ == "__main__":
    unittest.main()
