"""benchmarks.bench_compact at a tiny size (3,000 vectors, 10 queries) on the CPU."""

import contextlib
import io
import json
import os
import tempfile
import unittest

from benchmarks import bench_compact

TINY = ["--rows", "3000", "--queries", "10", "--append-rows", "700", "--dim", "64"]


class TestBenchCompact(unittest.TestCase):
    def test_output(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "compact.json")
            with contextlib.redirect_stdout(io.StringIO()):
                out = bench_compact.main(TINY + ["--output", path])
            with open(path) as f:
                self.assertEqual(json.load(f), json.loads(json.dumps(out)))
        results = {r["precision"]: r for r in out["results"]}
        self.assertEqual(set(results), {"int8", "fp16", "fp32"})
        for r in results.values():
            self.assertEqual(r["recall_served_at_100"], 1.0)  # exact by construction
        self.assertAlmostEqual(results["int8"]["vector_bytes_per_detection"], 64 + 8 * 64 / 3000, 1)
        self.assertEqual(results["fp16"]["float32_file_bytes_per_detection"], 4 * 64)
        self.assertEqual(results["fp32"]["vector_bytes_per_detection"], 4 * 64)
        self.assertGreater(results["int8"]["recall_compact_only_at_100"], 0.5)
        self.assertEqual(out["chosen"], "int8")


if __name__ == "__main__":
    unittest.main()
