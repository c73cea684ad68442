"""The search service as a real process: an indexing job survives a SIGKILL of the server.

``python -m ian_d2.search serve`` runs on 127.0.0.1 (a free port); a job indexes a synthetic
video in shards of 2 items; the server is killed (SIGKILL) once the job has committed a shard
and before it is done, then started again: the job resumes and finishes, and the index holds
exactly the detections of a reference index built directly with ``index_gallery`` on the same
file and model, every (source, frame) item once.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from ian_d2.data.synthetic import generate_video
from ian_d2.search import IndexManifest, index_gallery
from ian_d2.search.indexer import load_search_model
from ian_d2.search.searcher import index_config
from ian_d2.search.store import list_shards, read_shard_items
from tests.repo_scripts import REPO
from tests.search_testing import make_cfg, save_model

START_TIMEOUT = 180  # seconds for the server to load the model and answer
JOB_TIMEOUT = 180


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(index_dir, name):
    """[n, 6] (frame, x1, y1, x2, y2, score) of the stored detections of the source file
    ``name``, sorted."""
    out = []
    for path in list_shards(index_dir):
        t = pq.read_table(path).to_pydict()
        for i in range(len(t["score"])):
            if os.path.basename(t["source"][i]) == name:
                out.append([t[k][i] for k in ("frame", "x1", "y1", "x2", "y2", "score")])
    return np.asarray(sorted(out))


@pytest.mark.slow
class TestServeProcess(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        videos = os.path.join(tmp, "videos")
        generate_video(videos, size="tiny", seed=0)
        cls.root = os.path.join(tmp, "footage")
        os.makedirs(os.path.join(cls.root, "first"))
        shutil.copy(os.path.join(videos, "cam1.avi"), os.path.join(cls.root, "first"))
        shutil.copy(os.path.join(videos, "cam2.avi"), cls.root)
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cfg = make_cfg(cls.weights)
        model = load_search_model(cfg)
        opts = dict(fps=10, score_thresh=0.0, model=model, num_workers=0, progress=False,
                    batch_size=1)  # fmt: skip
        cls.index_dir = os.path.join(tmp, "index")  # served: cam1 now, cam2 by the job
        index_gallery(cfg, [os.path.join(cls.root, "first")], cls.index_dir, **opts)
        # cam2 indexed directly, with the model as the server rebuilds it from the index (its
        # MODEL.* and INPUT.*; TEST.DETECTIONS_PER_IMAGE is not part of an index's config)
        ref_cfg = index_config(IndexManifest.load(cls.index_dir), device="cpu")
        opts["model"] = load_search_model(ref_cfg)
        cls.reference = os.path.join(tmp, "reference")
        index_gallery(ref_cfg, [os.path.join(cls.root, "cam2.avi")], cls.reference, **opts)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def setUp(self):
        self.proc = None
        self.log = open(os.path.join(self._tmp.name, "server.log"), "ab")

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()

    def _log_tail(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def _start(self):
        self.port = _free_port()
        cmd = [sys.executable, "-m", "ian_d2.search", "serve", self.index_dir,
               "--host", "127.0.0.1", "--port", str(self.port), "--footage-root", self.root,
               "--device", "cpu", "--job-shard-size", "2", "--job-batch-size", "1"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + START_TIMEOUT
        while True:
            self.assertIsNone(self.proc.poll(), "the server ended:\n" + self._log_tail())
            self.assertLess(
                time.time(), deadline, "the server never answered:\n" + self._log_tail()
            )
            try:
                return self._call("GET", "/api/index")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.port}{path}"
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def _kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.assertEqual(self.proc.returncode, -signal.SIGKILL)

    def _cam2_items(self):
        return sum(
            1
            for p in list_shards(self.index_dir)
            for it in read_shard_items(p)
            if os.path.basename(it.source) == "cam2.avi"
        )

    def test_job_resumes_after_sigkill(self):
        info = self._start()
        self.assertEqual(info["frames"], 30)
        job = self._call("POST", "/api/index/jobs", {"paths": ["cam2.avi"]})
        deadline = time.time() + JOB_TIMEOUT
        while self._cam2_items() == 0:  # the first shard of the job
            self.assertLess(time.time(), deadline, self._log_tail())
            self.assertIsNone(self.proc.poll(), self._log_tail())
            time.sleep(0.02)
        self._kill()
        done_before = self._cam2_items()
        self.assertLess(done_before, 30, "the job was done before the kill: nothing resumed")
        with open(os.path.join(self.index_dir, "jobs", f"{job['id']}.json")) as f:
            self.assertEqual(json.load(f)["state"], "running")

        self._start()  # resumes the job
        deadline = time.time() + JOB_TIMEOUT
        while True:
            job = self._call("GET", f"/api/index/jobs/{job['id']}")
            if job["state"] not in ("queued", "running"):
                break
            self.assertLess(time.time(), deadline, self._log_tail())
            time.sleep(0.1)
        self.assertEqual(job["state"], "done", job)
        self.assertEqual((job["items_done"], job["items_total"]), (30, 30))
        # nothing lost, nothing twice: the reference's detections, every item once
        got, ref = _rows(self.index_dir, "cam2.avi"), _rows(self.reference, "cam2.avi")
        self.assertEqual(got.shape, ref.shape)
        np.testing.assert_allclose(got, ref, atol=1e-3)
        keys = Counter(it.key for p in list_shards(self.index_dir) for it in read_shard_items(p))
        self.assertEqual(len(keys), 60)
        self.assertEqual(set(keys.values()), {1})
        info = self._call("GET", "/api/index")
        self.assertEqual(info["frames"], 60)
        self.assertEqual(
            info["detections"],
            len(_rows(self.index_dir, "cam1.avi")) + len(_rows(self.reference, "cam2.avi")),
        )


if __name__ == "__main__":
    unittest.main()
