"""``index --num-machines 2``: two "machines" on this host, each a separate process group
started by the test (``python -m ian_d2.search index --machine-rank R --dist-url tcp://...``,
Detectron2's ``launch``, gloo on CPU), writing to one index folder both see."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from collections import Counter

import pyarrow.parquet as pq
import pytest

from ian_d2.search import index_gallery
from ian_d2.search.manifest import IndexManifest
from ian_d2.search.store import list_shards, read_shard_items
from ian_d2.search.store_sync import open_vector_store
from tests.repo_scripts import QUICK_CONFIG, REPO
from tests.search.test_search_processes import _detections
from tests.search_testing import SMALL_OPTS, make_cfg, save_model

_INDEXED = re.compile(r"Rank (\d+) indexed (\d+) items")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# in the fast tier (about 35 s): issue 22 asks `make test` to run it
@pytest.mark.synthetic_cuhk_sysu
class TestIndexTwoMachines(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.gallery = cls.synthetic.images
        cls.weights = save_model(os.path.join(cls._tmp.name, "model.pth"))
        full = os.path.join(cls._tmp.name, "full")
        index_gallery(make_cfg(cls.weights), [cls.gallery], full, score_thresh=0.0,
                      num_workers=0, progress=False, tracks=False)  # fmt: skip
        cls.reference = _detections(full)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def start(self, out, rank, port, *extra):
        """Machine ``rank``: its own process group; its output in ``<out>.m<rank>.log``."""
        argv = [sys.executable, "-m", "ian_d2.search", "index", "--config-file", QUICK_CONFIG,
                "--gallery", self.gallery, "--out", out, "--score-thresh", "0",
                "--num-workers", "0", "--num-machines", "2", "--machine-rank", str(rank),
                "--dist-url", f"tcp://127.0.0.1:{port}", *extra,
                *[str(v) for v in SMALL_OPTS], "MODEL.WEIGHTS", self.weights]  # fmt: skip
        log = open(f"{out}.m{rank}.log", "ab")
        self.addCleanup(log.close)
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        self.addCleanup(self.kill, proc)
        return proc

    @staticmethod
    def kill(proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @staticmethod
    def log(out, rank) -> str:
        with open(f"{out}.m{rank}.log", errors="replace") as f:
            return f.read()

    def wait(self, procs, limit=240):
        deadline = time.time() + limit
        for p in procs:
            p.wait(timeout=max(1, deadline - time.time()))

    def assertEveryItemOnce(self, out):
        shards = list_shards(out)
        keys = [it.key for p in shards for it in read_shard_items(p)]
        self.assertEqual(len(keys), 30)
        self.assertEqual(len(set(keys)), 30)
        got = _detections(out)
        self.assertEqual(sorted(got), sorted(self.reference))
        for name, ref in self.reference.items():
            self.assertEqual(got[name].shape, ref.shape, name)
            self.assertLess(abs(got[name] - ref).max(), 1e-3, name)

    def test_two_machines_into_milvus_lite(self):
        out = os.path.join(self._tmp.name, "two")
        db = f"milvus-lite://{self._tmp.name}/two.db"
        port = _free_port()
        procs = [self.start(out, r, port, "--vector-store", db, "--shard-size", "4",
                            "--batch-size", "2", "--no-tracks") for r in (0, 1)]  # fmt: skip
        self.wait(procs)
        self.assertEqual([p.returncode for p in procs], [0, 0], self.log(out, 1)[-3000:])
        ranks = Counter(os.path.basename(p)[:4] for p in list_shards(out))
        self.assertEqual(set(ranks), {"r000", "r001"})  # each machine wrote its own shards
        r1 = [it for p in list_shards(out) if "r001" in p for it in read_shard_items(p)]
        self.assertEqual(len(r1), 15)  # the k-th image belongs to process k % 2
        self.assertEveryItemOnce(out)
        # the store: updated once, by rank 0 (machine 0), and it holds every row once
        self.assertIn("Vector store collection", self.log(out, 0))
        self.assertNotIn("Vector store", self.log(out, 1))
        store = open_vector_store(IndexManifest.load(out))
        rows = sum(pq.read_metadata(p).num_rows for p in list_shards(out))
        self.assertEqual(store.count(), rows)
        store.close()

    def test_machine_killed_then_resume(self):
        out = os.path.join(self._tmp.name, "killed")
        port = _free_port()
        extra = ("--batch-size", "1", "--shard-size", "2", "--no-tracks")
        procs = [self.start(out, r, port, *extra) for r in (0, 1)]
        deadline = time.time() + 180
        while not any("r001" in p for p in (list_shards(out) if os.path.isdir(
                os.path.join(out, "shards")) else [])):  # fmt: skip
            self.assertIsNone(procs[1].poll(), self.log(out, 1)[-3000:])
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        self.kill(procs[1])  # machine 1 dies mid-run
        try:  # machine 0 then fails (its peer is gone) or waits at a barrier: stopped too
            procs[0].wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill(procs[0])
        committed = Counter()
        for p in list_shards(out):
            committed[os.path.basename(p)[:4]] += len(read_shard_items(p))
        self.assertLess(committed["r001"], 15)
        # both machines again with --resume: each redoes only its own uncommitted items
        port = _free_port()
        procs = [self.start(out, r, port, "--resume", *extra) for r in (0, 1)]
        self.wait(procs)
        self.assertEqual([p.returncode for p in procs], [0, 0], self.log(out, 1)[-3000:])
        for rank in (0, 1):
            runs = [m for m in _INDEXED.finditer(self.log(out, rank)) if int(m.group(1)) == rank]
            self.assertEqual(int(runs[-1].group(2)), 15 - committed[f"r{rank:03d}"], rank)
        self.assertEveryItemOnce(out)
        self.assertTrue(os.path.isfile(os.path.join(out, "vectors", "flat.faiss")))


if __name__ == "__main__":
    unittest.main()
