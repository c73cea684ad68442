"""benchmarks.bench_serve at a tiny setting on the CPU: the real server as a subprocess, 10^4
stand-in rows, 1 and 2 clients for half a second per phase, the tiny synthetic video indexed by a
job meanwhile. Checked: the JSON's structure, no request error, the index's integrity (timings
are the benchmark's business, not asserted here)."""

import contextlib
import io
import json
import os
import tempfile
import unittest

import pytest

from benchmarks import bench_serve

TINY = ["--quick", "--clients", "1", "2", "--duration", "0.5", "--max-requests", "20",
        "--model-calls", "2", "--job-shard-size", "4"]  # fmt: skip
PHASE_KEYS = ("requests", "errors", "p50_ms", "p99_ms", "mean_ms", "throughput_rps",
              "server_embed_ms_median", "server_search_ms_median", "job_active_share")  # fmt: skip


@pytest.mark.slow
class TestBenchServe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls._tmp.name, "serve.json")
        argv = TINY + ["--workdir", os.path.join(cls._tmp.name, "work"), "--output", cls.path]
        with contextlib.redirect_stdout(io.StringIO()):
            cls.out = bench_serve.main(argv)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_output_file_matches(self):
        with open(self.path) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(self.out)))

    def test_settings_and_machine(self):
        out = self.out
        self.assertEqual(out["settings"]["rows"], 10_000)
        self.assertEqual(out["settings"]["clients"], [1, 2])
        machine = out["machine"]
        for key in ("cpu_count", "cpu_model", "load_avg_before", "load_avg_after",
                    "busy_processes_before", "busy_processes_after"):  # fmt: skip
            self.assertIn(key, machine)
        self.assertEqual(len(machine["load_avg_before"]), 3)
        self.assertEqual(out["index"]["rows"], 10_000)
        self.assertEqual(out["index"]["embed_dim"], 256)
        self.assertGreater(out["index"]["sources"], 1)
        self.assertGreater(out["server"]["startup_s"], 0)

    def test_load(self):
        load = self.out["load"]
        self.assertEqual(set(load), {"find_similar", "upload_box"})
        for kind, phases in load.items():
            self.assertEqual(set(phases), {"1", "2"})
            for clients, r in phases.items():
                with self.subTest(kind=kind, clients=clients):
                    for key in PHASE_KEYS:
                        self.assertIn(key, r)
                    self.assertEqual(r["errors"], 0, r.get("error_examples"))
                    self.assertGreater(r["requests"], 0)
                    self.assertLessEqual(r["requests"], 20 * int(clients))
                    self.assertLessEqual(r["p50_ms"], r["p99_ms"])
                    self.assertGreater(r["throughput_rps"], 0)
        self.assertEqual(load["find_similar"]["1"]["server_embed_ms_median"], 0.0)
        self.assertGreater(load["upload_box"]["1"]["server_embed_ms_median"], 0.0)
        self.assertGreater(self.out["model_ms"], 0)
        self.assertAlmostEqual(
            self.out["overhead_ms"],
            load["upload_box"]["1"]["p50_ms"] - self.out["model_ms"],
            delta=0.02,
        )

    def test_job_and_integrity(self):
        job, integrity = self.out["job"], self.out["integrity"]
        self.assertEqual(job["state"], "done", job)
        self.assertEqual(job["items"], 30)  # tiny video: 2 cameras x 3 s at the index's 5 fps
        self.assertGreater(job["detections"], 0)
        self.assertTrue(integrity["ok"], integrity)
        self.assertEqual(integrity["rows"], 10_000 + job["detections"])
        self.assertEqual(integrity["rows"], integrity["expected_rows"])
        self.assertEqual(integrity["duplicates"], 0)
        self.assertEqual(integrity["missing_items"], 0)
        self.assertEqual(integrity["server_detections"], integrity["rows"])

    def test_goals_reported(self):
        goals = self.out["goals"]
        self.assertEqual(
            set(goals),
            {"find_similar_p50_le_20ms_at_16", "find_similar_p99_le_100ms_at_16",
             "upload_box_overhead_le_30ms", "zero_errors"},
        )  # fmt: skip
        self.assertIsNone(goals["find_similar_p50_le_20ms_at_16"])  # 16 clients not run
        self.assertTrue(goals["zero_errors"])


if __name__ == "__main__":
    unittest.main()
