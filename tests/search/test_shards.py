"""Shard writers that share an index: no shard overwrites another, and a writer's file in
progress survives another writer's clean-up of partial shards."""

import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from ian_d2.search.manifest import SHARDS
from ian_d2.search.shards import (
    ShardWriter,
    committed_keys,
    list_shards,
    read_table,
    remove_partial_shards,
)
from ian_d2.search.sources import GalleryItem

D = 8


def _detections(n: int, seed: int):
    rng = np.random.RandomState(seed)
    emb = rng.randn(n, D).astype(np.float32)
    return {
        "boxes": np.tile(np.array([[1, 2, 11, 22]], np.float32), (n, 1)),
        "scores": np.full(n, 0.9, np.float32),
        "embeds": emb / np.linalg.norm(emb, axis=1, keepdims=True),
    }


class TestShardWriters(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.index = self._tmp.name
        os.makedirs(os.path.join(self.index, SHARDS))

    def tearDown(self):
        self._tmp.cleanup()

    def _write(self, writer, source, n_items):
        items = [GalleryItem(source, f, f / 5.0) for f in range(n_items)]
        return writer.write(
            items, [(64, 48)] * n_items, [_detections(2, f) for f in range(n_items)]
        )

    def test_two_writers_of_one_rank_keep_both_shards(self):
        # both opened on the same index before either writes: both start at sequence 1
        a, b = ShardWriter(self.index, 0, D), ShardWriter(self.index, 0, D)
        self.assertEqual(a.next_seq, b.next_seq)
        pa_ = self._write(a, "/footage/a.avi", 3)
        pb = self._write(b, "/footage/b.avi", 4)
        pa2 = self._write(a, "/footage/a.avi", 0)
        self.assertEqual(len({pa_, pb, pa2}), 3)
        self.assertEqual(list_shards(self.index), sorted([pa_, pb, pa2]))
        rows = read_table(list_shards(self.index))
        self.assertEqual(rows.num_rows, 2 * 3 + 2 * 4)  # nothing overwritten
        self.assertEqual(len(committed_keys(self.index)), 7)
        self.assertFalse([n for n in os.listdir(os.path.join(self.index, SHARDS)) if ".tmp." in n])

    def test_cleanup_keeps_a_live_writers_file(self):
        folder = os.path.join(self.index, SHARDS)
        live = os.path.join(folder, f"r000-000001.parquet.tmp.{os.getpid()}")
        dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
        dead_proc.wait()
        dead = os.path.join(folder, f"r000-000002.parquet.tmp.{dead_proc.pid}")
        for path in (live, dead):
            with open(path, "wb") as f:
                f.write(b"partial")
        self.assertEqual(remove_partial_shards(self.index), 1)
        self.assertTrue(os.path.exists(live))
        self.assertFalse(os.path.exists(dead))


if __name__ == "__main__":
    unittest.main()
