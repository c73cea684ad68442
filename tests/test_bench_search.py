"""benchmarks.bench_search at tiny sizes (2,000 vectors, 20 queries) on the CPU."""

import contextlib
import io
import json
import os
import tempfile
import unittest

import numpy as np

from benchmarks import bench_search

TINY = ["--sizes", "2000", "--queries", "20", "--nprobe", "4", "64", "--ef-search", "16", "64"]


def _quiet(fn, *args):
    """Calls ``fn(*args)`` without its JSON on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


class TestBenchSearch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bench = bench_search
        cls._tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls._tmp.name, "search.json")
        cls.out = _quiet(cls.bench.main, TINY + ["--output", cls.path])

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_output_file_matches(self):
        with open(self.path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(self.out)))

    def test_header(self):
        out = self.out
        self.assertEqual(out["data"], "clustered")
        self.assertEqual(out["queries"], 20)
        self.assertGreaterEqual(out["omp_threads"], 1)
        self.assertEqual(out["skipped"], [])
        desc = out["datasets"]["2000"]
        self.assertEqual(desc["data"], "clustered")
        self.assertAlmostEqual(desc["measured_within_identity_cos"], 0.7, delta=0.05)

    def test_results(self):
        runs = self.out["results"]
        kinds = [r["params"]["kind"] for r in runs]
        # flat once, ivf and hnsw at each of the two search settings
        self.assertEqual(kinds, ["flat", "ivf", "ivf", "hnsw", "hnsw"])
        # the automatic nlist at 2,000 vectors is 51: nprobe 64 is capped to it (exact)
        self.assertEqual(
            [r["params"]["nprobe"] for r in runs[1:3]], [4, runs[2]["params"]["nlist"]]
        )
        self.assertEqual([r["params"].get("ef_search") for r in runs[3:]], [16, 64])
        for r in runs:
            self.assertEqual(r["n"], 2000)
            self.assertGreaterEqual(r["build_s"], 0)  # a flat index of 2,000 builds in < 1 ms
            self.assertGreaterEqual(r["bytes_per_vector"], 4 * 256)
            lat = r["latency_ms"]
            self.assertGreater(lat["median"], 0)
            self.assertGreaterEqual(lat["p99"], lat["median"])
            self.assertGreater(r["cpu_ms_per_query"], 0)
            self.assertGreater(r["batch_queries_per_s"], 0)
            for key in ("recall_at_10", "recall_at_100", "identity_recall_at_100"):
                self.assertGreaterEqual(r[key], 0.0)
                self.assertLessEqual(r[key], 1.0)
        self.assertEqual(runs[0]["recall_at_10"], 1.0)
        self.assertEqual(runs[0]["recall_at_100"], 1.0)
        self.assertEqual(runs[0]["identity_recall_at_100"], 1.0)
        self.assertAlmostEqual(runs[0]["bytes_per_vector"], 4 * 256, delta=1)  # + a header
        # more cells probed: no lower recall; all of them: exact
        self.assertGreaterEqual(runs[2]["recall_at_100"], runs[1]["recall_at_100"])
        self.assertEqual(runs[2]["recall_at_100"], 1.0)

    def test_uniform_and_recall(self):
        out = _quiet(
            self.bench.main,
            ["--sizes", "500", "--queries", "5", "--kinds", "ivf", "--data", "uniform"],
        )
        self.assertEqual(out["data"], "uniform")
        self.assertEqual(out["datasets"]["500"]["data"], "uniform")
        (run,) = out["results"]
        self.assertEqual(run["params"]["kind"], "ivf")
        self.assertNotIn("identity_recall_at_100", run)  # no identities
        exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
        approx = np.array([[1, 2, 9, -1], [8, 7, 6, 5]])
        self.assertAlmostEqual(self.bench.recall_at(approx, exact, 2), 0.5)
        self.assertAlmostEqual(self.bench.recall_at(approx, exact, 4), 0.75)

    def test_cache_reuse(self):
        cache = os.path.join(self._tmp.name, "cache")
        argv = ["--sizes", "500", "--queries", "5", "--kinds", "ivf", "--cache-dir", cache]
        first = _quiet(self.bench.main, argv)["results"][0]
        self.assertNotIn("build_cached", first)
        self.assertEqual(len([f for f in os.listdir(cache) if f.endswith(".faiss")]), 1)
        again = _quiet(self.bench.main, argv)["results"][0]
        self.assertTrue(again["build_cached"])
        self.assertEqual(again["build_s"], first["build_s"])
        self.assertEqual(again["recall_at_100"], first["recall_at_100"])


if __name__ == "__main__":
    unittest.main()
