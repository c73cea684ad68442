"""The service's in-memory index: snapshots share one growing embedding buffer, and a published
snapshot's rows never change (readers search without a lock)."""

import os
import tempfile
import unittest

import numpy as np

from ian_d2.search.manifest import SHARDS
from ian_d2.search.serve.state import IndexSnapshot, RowBuffer
from ian_d2.search.shards import ShardWriter
from ian_d2.search.sources import GalleryItem

D = 8


def _shard(writer: ShardWriter, name: str, rows: int, rng) -> str:
    """One committed shard of ``rows`` detections of image ``name``."""
    emb = rng.normal(size=(rows, D)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    det = {
        "boxes": np.tile(np.float32([1, 2, 30, 60]), (rows, 1)),
        "scores": np.full(rows, 0.9, np.float32),
        "embeds": emb,
    }
    return writer.write([GalleryItem(f"/footage/{name}.jpg", -1, float("nan"))], [(64, 64)], [det])


class TestRowBuffer(unittest.TestCase):
    def test_append_in_place_grow_and_branch(self):
        rng = np.random.default_rng(0)
        a, b, c = (rng.normal(size=(n, D)).astype(np.float32) for n in (3, 5, 2))
        buf0 = RowBuffer(np.zeros((0, D), np.float32), reserve=8)
        buf, v1 = buf0.append(0, a)
        buf, v2 = buf.append(3, b)  # fits: written in place, past the end of v1
        self.assertIs(buf, buf0)
        self.assertTrue(np.shares_memory(v1, v2))
        np.testing.assert_array_equal(v1, a)
        np.testing.assert_array_equal(v2, np.concatenate([a, b]))
        buf, v3 = buf.append(8, c)  # full: grows into a new array, v2 keeps the old one
        self.assertFalse(np.shares_memory(v2, v3))
        np.testing.assert_array_equal(v2, np.concatenate([a, b]))
        np.testing.assert_array_equal(v3, np.concatenate([a, b, c]))
        # appending after an older row count must not overwrite rows a newer view holds
        branch, v4 = buf.append(3, c)
        self.assertIsNot(branch, buf)
        self.assertFalse(np.shares_memory(v4, v3))
        np.testing.assert_array_equal(v3, np.concatenate([a, b, c]))
        np.testing.assert_array_equal(v4, np.concatenate([a, c]))


class TestSnapshots(unittest.TestCase):
    def test_extended_snapshots_share_rows_and_never_change(self):
        rng = np.random.default_rng(1)
        with tempfile.TemporaryDirectory() as index:
            os.makedirs(os.path.join(index, SHARDS))
            writer = ShardWriter(index, 0, D)
            paths = [_shard(writer, f"img{i}", n, rng) for i, n in enumerate((4, 3, 5))]
            s0 = IndexSnapshot(D)
            s1 = s0.extended(paths[:1])
            s2 = s1.extended(paths[1:2])
            s3 = s2.extended(paths[2:])
            one_shot = IndexSnapshot(D).extended(paths)
            np.testing.assert_array_equal(s3.emb, one_shot.emb)
            self.assertEqual((s1.num_rows, s2.num_rows, s3.num_rows), (4, 7, 12))
            self.assertEqual(s3.emb.shape, (12, D))
            before = s2.emb.copy()
            # an older snapshot extended again: a branch, s2's and s3's rows stay as they were
            branch = s1.extended(paths[2:])
            np.testing.assert_array_equal(s2.emb, before)
            np.testing.assert_array_equal(s3.emb, one_shot.emb)
            np.testing.assert_array_equal(branch.emb[4:], one_shot.emb[7:])
            self.assertEqual(branch.detection_id(4), s3.detection_id(7))
