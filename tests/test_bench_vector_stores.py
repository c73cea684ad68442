"""benchmarks.bench_vector_stores at a tiny size (1,500 vectors, a few queries) on the CPU: the
JSON's shape, the exact stores' recall, the filters' effect, the Milvus caps."""

import contextlib
import io
import json
import os
import tempfile
import unittest

import numpy as np

from benchmarks import bench_vector_stores as bench

TINY = ["--sizes", "1500", "--faiss-queries", "12", "--milvus-queries", "3",
        "--milvus-hnsw-max-size", "1000"]  # fmt: skip


class TestBenchVectorStores(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls._tmp.name, "vs.json")
        with contextlib.redirect_stdout(io.StringIO()):
            cls.out = bench.main(TINY + ["--output", cls.path])

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_output_file_matches(self):
        with open(self.path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(self.out)))

    def test_runs_and_skips(self):
        runs = [(r["store"], r["kind"]) for r in self.out["results"]]
        self.assertEqual(runs, [("faiss", "flat"), ("faiss", "hnsw"), ("milvus-lite", "FLAT")])
        self.assertEqual(
            self.out["skipped"], ["milvus-lite HNSW at N=1500 (> --milvus-hnsw-max-size)"]
        )
        for r in self.out["results"]:
            self.assertEqual(sorted(r["cases"]), ["all", "camera", "hour"])
            self.assertGreater(r["insert_per_s"], 0)
            want = 12 if r["store"] == "faiss" else 3
            for case in r["cases"].values():
                self.assertEqual(case["latency_ms"]["queries"], want)
                self.assertLessEqual(case["latency_ms"]["p50"], case["latency_ms"]["p99"])
        exact = [r for r in self.out["results"] if r["kind"] in ("flat", "FLAT")]
        for r in exact:  # exact stores find the exact top-100 of each filter
            for case in r["cases"].values():
                self.assertEqual(case["recall_at_100"], 1.0)

    def test_fields_and_exact_topk(self):
        sources, cam, t, score = bench.make_fields(10_000)
        self.assertEqual(len(sources), 20)
        self.assertAlmostEqual(np.mean(cam == 7), 1 / 20, delta=0.01)
        hour = bench.CASES["hour"].mask(sources, cam, t, score)
        self.assertAlmostEqual(hour.mean(), 1 / 24, delta=0.01)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((300, 8)).astype(np.float32)
        q = x[:2].copy()
        mask = np.arange(300) % 2 == 1
        ids = bench.exact_topk(x, q, mask, 5)
        self.assertTrue((ids % 2 == 1).all())
        want = np.argsort(-np.where(mask, x @ q[1], -np.inf))[:5]
        self.assertEqual(ids[1].tolist(), want.tolist())

    def test_shard_bytes(self):
        rows = self.out["shard_bytes"]
        self.assertEqual([r["detections_per_item"] for r in rows], [1, 4, 10])
        for r in rows:  # at least the float32 embedding, at most twice it
            self.assertGreater(r["bytes_per_detection"], 1024)
            self.assertLess(r["bytes_per_detection"], 2048)


if __name__ == "__main__":
    unittest.main()
