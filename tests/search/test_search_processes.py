"""The gallery index with several processes (Detectron2's ``launch``, gloo on CPU) and after a
real SIGKILL of ``python -m ian_d2.search index``."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
from ian_d2.search import index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.store import list_shards, read_shard_items
from tests.repo_scripts import QUICK_CONFIG, REPO
from tests.search_testing import SMALL_OPTS, make_cfg, save_model


def _detections(index_dir):
    """{image name: (boxes [n, 4] sorted, scores [n])} of an index."""
    by_source = defaultdict(list)
    for path in list_shards(index_dir):
        t = pq.read_table(path, columns=["source", "x1", "y1", "x2", "y2", "score"]).to_pydict()
        for i in range(len(t["score"])):
            row = [t[k][i] for k in ("x1", "y1", "x2", "y2", "score")]
            by_source[os.path.basename(t["source"][i])].append(row)
    return {k: np.asarray(sorted(v)) for k, v in by_source.items()}


@pytest.mark.slow
@pytest.mark.synthetic_cuhk_sysu
class TestIndexProcesses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.gallery = cls.synthetic.images
        cls.weights = save_model(os.path.join(cls._tmp.name, "model.pth"))
        cls.full = os.path.join(cls._tmp.name, "full")
        index_gallery(make_cfg(cls.weights), [cls.gallery], cls.full, score_thresh=0.0,
                      num_workers=0, progress=False)  # fmt: skip
        cls.reference = _detections(cls.full)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def assertSameDetections(self, index_dir):
        got = _detections(index_dir)
        self.assertEqual(sorted(got), sorted(self.reference))
        for name, ref in self.reference.items():
            np.testing.assert_allclose(got[name], ref, atol=1e-3, err_msg=name)

    def _index_argv(self, out, *extra):
        """``index`` arguments; the config overrides come last (they take the rest)."""
        return ["index", "--config-file", QUICK_CONFIG, "--gallery", self.gallery, "--out", out,
                "--score-thresh", "0", "--num-workers", "0", *extra,
                *[str(v) for v in SMALL_OPTS], "MODEL.WEIGHTS", self.weights]  # fmt: skip

    def test_two_processes(self):
        out = os.path.join(self._tmp.name, "two")
        # the command line, as a user runs it: `launch` starts the 2 processes
        search_main(self._index_argv(out, "--num-gpus", "2", "--batch-size", "2",
                                     "--shard-size", "4"))  # fmt: skip
        shards = list_shards(out)
        ranks = {os.path.basename(p)[:4] for p in shards}
        self.assertEqual(ranks, {"r000", "r001"})  # each process wrote its own shards
        keys = [item.key for p in shards for item in read_shard_items(p)]
        self.assertEqual(len(keys), 30)
        self.assertEqual(len(set(keys)), 30)  # every image once
        r0 = [it.source for p in shards if "r000" in p for it in read_shard_items(p)]
        self.assertEqual(len(r0), 15)  # the k-th image belongs to process k % 2
        self.assertSameDetections(out)
        self.assertTrue(os.path.isfile(os.path.join(out, "vectors", "flat.faiss")))

    def test_sigkill_then_resume(self):
        out = os.path.join(self._tmp.name, "killed")
        cmd = [sys.executable, "-m", "ian_d2.search"]
        cmd += self._index_argv(out, "--batch-size", "1", "--shard-size", "2")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        try:
            while not (os.path.isdir(os.path.join(out, "shards")) and len(list_shards(out)) >= 2):
                self.assertIsNone(proc.poll(), "the index ended before its second shard")
                self.assertLess(time.time(), deadline)
                time.sleep(0.02)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        committed = list_shards(out)
        done = sum(len(read_shard_items(p)) for p in committed)
        self.assertLess(done, 30)
        stats = index_gallery(make_cfg(self.weights), [self.gallery], out, resume=True,
                              num_workers=0, progress=False)  # fmt: skip
        self.assertEqual(stats["items"], 30 - done)  # nothing committed redone
        self.assertSameDetections(out)  # nothing lost, nothing twice
        self.assertEqual(stats["stored_detections"], 240)


if __name__ == "__main__":
    unittest.main()
