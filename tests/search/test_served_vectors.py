"""The served embeddings of the search service: searches ranked together in one matrix product
(``RankBatcher``) and compact int8 / fp16 codes with exact float32 re-ranking equal the plain
float32 ranking, filters, grouping and paging included (seeded random sets, no model)."""

import os
import tempfile
import threading
import unittest

import numpy as np

from ian_d2.search.cli import build_parser
from ian_d2.search.commands.serve import serve_vectors
from ian_d2.search.manifest import SHARDS
from ian_d2.search.serve import query
from ian_d2.search.serve.batcher import RankBatcher
from ian_d2.search.serve.matrix import ServedEmbeddings, ServedStore, ServeVectors
from ian_d2.search.serve.state import IndexSnapshot
from ian_d2.search.shards import ShardWriter
from ian_d2.search.sources import GalleryItem
from ian_d2.search.tracks.lookup import TrackLookup
from ian_d2.search.tracks.rank import rank_tracks

N, D = 6000, 48
SOURCES = 8


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _gallery(seed: int = 0):
    """Clustered stored rows (identities of ~12 detections, anisotropic), their sources, times
    (source 0: still images) and scores."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, D + 1, dtype=np.float32) ** -0.5
    centres = _unit(rng.standard_normal((N // 12, D)).astype(np.float32) * scale)
    ids = rng.integers(0, len(centres), N)
    emb = _unit(centres[ids] + 0.08 * rng.standard_normal((N, D)).astype(np.float32))
    src = rng.integers(0, SOURCES, N).astype(np.int32)
    time_s = np.where(src == 0, np.nan, rng.uniform(0, 600, N))
    score = rng.uniform(0.3, 1.0, N).astype(np.float32)
    return emb, src, time_s, score, centres, rng


def _store(emb: np.ndarray, settings: ServeVectors, parts=(1500, 700, 300, 2500), batcher=None):
    """A :class:`ServedStore` fed shard by shard; the last matrix."""
    store, start, served = ServedStore(D, settings, batcher=batcher), 0, None
    for n in list(parts) + [len(emb) - sum(parts)]:
        store, served = store.append(start, emb[start : start + n])
        start += n
    return served


# (filters, group, top_k, offset) of the queries
CASES = [
    (query.Filters(), "none", 20, 0),
    (query.Filters(), "none", 10, 30),
    (query.Filters(sources=[1, 2, 3, 4, 5, 6, 7]), "none", 20, 0),
    (query.Filters(time_min=100.0, time_max=500.0, min_score=0.4), "none", 15, 5),
    (query.Filters(min_similarity=0.6), "none", 20, 0),
    (query.Filters(), "source_window", 20, 0),
    (query.Filters(sources=[2, 5], min_similarity=0.3), "source_window", 10, 10),
    (query.Filters(min_score=0.5), "none", 100, 0),
]


def _rank(emb, gallery, q, case):
    _, src, time_s, score = gallery[:4]
    filters, group, top_k, offset = case
    return query.rank(
        emb, src, time_s, score, q, filters, top_k=top_k, offset=offset, group=group, window_s=30.0
    )


class TestRankBatcher(unittest.TestCase):
    def test_lone_query_flushes_when_the_window_passes(self):
        batcher = RankBatcher(window_s=0.02, max_batch=8)
        emb = _unit(np.random.default_rng(0).standard_normal((50, D)).astype(np.float32))
        np.testing.assert_array_equal(batcher.similarities(emb, emb[3]), emb @ emb[3])
        self.assertEqual(batcher.stats, {"batches": 1, "queries": 1, "full": 0, "window": 1})

    def test_full_batch_flushes_without_waiting_for_the_window(self):
        batcher = RankBatcher(window_s=3600.0, max_batch=4)  # only "full" can flush in time
        emb = _unit(np.random.default_rng(1).standard_normal((50, D)).astype(np.float32))
        out = {}

        def one(i):
            out[i] = batcher.similarities(emb, emb[i])

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(any(t.is_alive() for t in threads), "a full batch waited for the window")
        self.assertEqual(batcher.stats, {"batches": 2, "queries": 8, "full": 2, "window": 0})
        for i in range(8):
            np.testing.assert_allclose(out[i], emb @ emb[i], atol=1e-6)

    def test_off_and_errors(self):
        emb = np.ones((5, D), np.float32)
        off = RankBatcher(window_s=0.0)
        self.assertFalse(off.enabled)
        np.testing.assert_array_equal(off.similarities(emb, emb[0]), emb @ emb[0])
        self.assertEqual(off.stats["batches"], 0)
        with self.assertRaises(ValueError):
            RankBatcher(window_s=0.01).similarities(emb, np.ones(D + 1, np.float32))
        with self.assertRaises(ValueError):
            RankBatcher(window_s=-1.0)

    def test_64_concurrent_mixed_queries_equal_one_by_one(self):
        """Searches by stored detection, by track (mean embedding), by a new embedding (a box
        through the model), with their own filters, grouping and pages, 64 at once: the hits
        and similarities of each alone."""
        gallery = _gallery(1)
        emb, rng = gallery[0], gallery[5]
        batcher = RankBatcher(window_s=0.05, max_batch=16)
        served = _store(emb, ServeVectors("fp32"), batcher=batcher)
        self.assertIs(served.batcher, batcher)
        track_of_row = rng.integers(0, 700, N)
        lookup = _lookup(emb, track_of_row)
        queries = []
        for i in range(64):
            kind = i % 3
            if kind == 0:
                q = emb[rng.integers(N)]  # a stored detection
            elif kind == 1:
                q = lookup.emb[rng.integers(lookup.num_tracks)]  # a track's mean embedding
            else:
                q = _unit(rng.standard_normal(D).astype(np.float32))  # a new box's embedding
            queries.append((q, CASES[i % len(CASES)], i % 9 == 0))
        expected = [self._one(emb, gallery, lookup, *item) for item in queries]
        got = [None] * len(queries)
        barrier = threading.Barrier(len(queries))

        def one(i):
            barrier.wait()
            got[i] = self._one(served, gallery, lookup, *queries[i])

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads))
        for i, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(a[0], b[0], err_msg=f"query {i}")
            np.testing.assert_allclose(a[1], b[1], atol=1e-5, err_msg=f"query {i}")
            self.assertEqual(a[2], b[2], f"query {i}")
        stats = batcher.stats
        self.assertGreaterEqual(stats["queries"], 48)  # all but the selective filters
        self.assertLess(stats["batches"], stats["queries"])  # some were ranked together

    @staticmethod
    def _one(emb, gallery, lookup, q, case, by_track):
        if by_track:  # one hit per track
            r = rank_tracks(lookup, emb, q, None, rank_by="best", top_k=case[2], offset=case[3])
            return r.rows, r.similarities, r.total
        r = _rank(emb, gallery, q, case)
        return r.rows, r.similarities, r.total


def _lookup(emb: np.ndarray, track_of_row: np.ndarray) -> TrackLookup:
    """Tracks of the rows (only what ranking reads: the rows' tracks, mean embeddings)."""
    used, track_of_row = np.unique(track_of_row, return_inverse=True)
    t = len(used)
    mean = np.zeros((t, emb.shape[1]), np.float32)
    np.add.at(mean, track_of_row, emb)
    z = np.zeros(t)
    return TrackLookup(
        track_of_row.astype(np.int64), np.ones(t, bool), [None] * t, np.arange(t, dtype=np.int32),
        z.astype(np.int32), z.astype(np.int32), z, z, np.bincount(track_of_row),
        np.zeros(t, np.int64), _unit(mean),
    )  # fmt: skip


class TestCompactVectors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gallery = _gallery(2)
        cls.emb, cls.rng = cls.gallery[0], cls.gallery[5]
        cls.queries = [_unit(cls.emb[i] + 0.05) for i in range(0, N, N // 12)] + [
            _unit(cls.rng.standard_normal(D).astype(np.float32)) for _ in range(4)
        ]

    def test_codes_bytes_and_error_bound(self):
        for precision, per_dim in (("int8", 1), ("fp16", 2)):
            served = _store(self.emb, ServeVectors(precision))
            self.assertTrue(served.compact)
            np.testing.assert_array_equal(np.asarray(served), self.emb)  # float32 rows kept
            np.testing.assert_array_equal(served[[5, 2]], self.emb[[5, 2]])
            self.assertEqual(served.resident_bytes, N * D * per_dim + 8 * D)
            self.assertLessEqual(len(served.codes.chunks), 3)  # merged as they came
            for q in self.queries:
                rows, compact = served.candidates(q, N)
                self.assertEqual(sorted(rows.tolist()), list(range(N)))
                err = np.abs(compact - self.emb[rows] @ q).max()
                self.assertLessEqual(err, served.error_bound(q), precision)

    def test_clipped_rows_keep_the_bound(self):
        """Rows far outside the trained int8 ranges (clipped) still satisfy the bound."""
        store = ServedStore(D, ServeVectors("int8"))
        store, _ = store.append(0, self.emb[:4000])
        far = _unit(self.emb[4000:4100] * np.linspace(1, 30, D, dtype=np.float32))
        store, served = store.append(4000, far)
        q = far[3]
        rows, compact = served.candidates(q, 4100)
        exact = np.asarray(served)[rows] @ q
        self.assertLessEqual(np.abs(compact - exact).max(), served.error_bound(q))

    def test_rankings_equal_float32(self):
        """Hits, similarities and totals of every case equal the float32 ranking's, whether
        the re-ranking starts below or above the page size."""
        for precision in ("int8", "fp16"):
            for rerank in (5, 200):
                served = _store(self.emb, ServeVectors(precision, rerank=rerank))
                scans = _count_scans(served)
                for q in self.queries:
                    for case in CASES:
                        got = _rank(served, self.gallery, q, case)
                        want = _rank(self.emb, self.gallery, q, case)
                        what = f"{precision} rerank {rerank} {case}"
                        np.testing.assert_array_equal(got.rows, want.rows, err_msg=what)
                        np.testing.assert_allclose(
                            got.similarities, want.similarities, atol=1e-5, err_msg=what
                        )
                        if got.total_exact:
                            self.assertEqual(got.total, want.total, what)
                        else:  # grouping from the proven prefix: a lower bound
                            self.assertEqual(case[1], "source_window")
                            self.assertLessEqual(got.total, want.total, what)
                self.assertGreater(scans[0], len(self.queries) * 4)  # the codes were scanned

    def test_filters_honoured(self):
        _, src, time_s, score = self.gallery[:4]
        served = _store(self.emb, ServeVectors("int8", rerank=10))
        for q in self.queries[:5]:
            f = query.Filters(sources=[3, 4], time_min=50.0, time_max=400.0, min_score=0.5)
            got = query.rank(served, src, time_s, score, q, f, top_k=50)
            self.assertTrue(np.isin(src[got.rows], [3, 4]).all())
            self.assertTrue(((time_s[got.rows] >= 50) & (time_s[got.rows] <= 400)).all())
            self.assertTrue((score[got.rows] >= 0.5).all())
            f = query.Filters(min_similarity=0.5)
            got = query.rank(served, src, time_s, score, q, f, top_k=500)
            self.assertTrue((got.similarities >= 0.5).all())
            self.assertEqual(got.total, int(((self.emb @ q) >= np.float32(0.5)).sum()))

    def test_snapshots_of_an_index(self):
        """Snapshots built shard by shard through the store (as ``IndexState`` does): the same
        rows as the float32 snapshots, older ones unchanged, an older one extended again."""
        rng = np.random.default_rng(4)
        with tempfile.TemporaryDirectory() as index:
            os.makedirs(os.path.join(index, SHARDS))
            writer = ShardWriter(index, 0, D)
            paths = []
            for i, n in enumerate((40, 25, 60)):
                det = {
                    "boxes": np.tile(np.float32([1, 2, 30, 60]), (n, 1)),
                    "scores": np.full(n, 0.9, np.float32),
                    "embeds": _unit(rng.standard_normal((n, D)).astype(np.float32)),
                }
                item = GalleryItem(f"/footage/img{i}.jpg", -1, float("nan"))
                paths.append(writer.write([item], [(64, 64)], [det]))
            plain = IndexSnapshot(D).extended(paths)
            listing = sorted(os.listdir(index))
            for precision in ("int8", "fp16", "fp32"):
                store = ServedStore(D, ServeVectors(precision), directory=index)
                s1 = IndexSnapshot(D, _emb_buffer=store).extended(paths[:2])
                s2 = s1.extended(paths[2:])
                self.assertIsInstance(s2.emb, ServedEmbeddings)
                self.assertEqual(s2.emb.shape, (125, D))
                np.testing.assert_array_equal(np.asarray(s2.emb), plain.emb)
                np.testing.assert_array_equal(s2.emb[7], plain.emb[7])
                np.testing.assert_array_equal(np.asarray(s1.emb), plain.emb[:65])
                branch = s1.extended(paths[2:])  # not the store's last row count: a copy
                np.testing.assert_array_equal(np.asarray(branch.emb), plain.emb)
                np.testing.assert_array_equal(np.asarray(s2.emb), plain.emb)
            self.assertEqual(sorted(os.listdir(index)), listing)  # no file left in the index

    def test_cli_settings(self):
        parser = build_parser()
        args = parser.parse_args(["serve", "idx"])
        self.assertEqual(serve_vectors(args), ServeVectors("int8", 200, 1.0, 16))
        args = parser.parse_args(
            ["serve", "idx", "--served-vectors", "fp32", "--batch-window-ms", "0", "--rerank", "50"]
        )
        self.assertEqual(serve_vectors(args), ServeVectors("fp32", 50, 0.0, 16))
        with self.assertRaises(ValueError):
            serve_vectors(parser.parse_args(["serve", "idx", "--rerank", "0"]))
        with self.assertRaises(SystemExit):
            parser.parse_args(["serve", "idx", "--served-vectors", "int4"])


def _count_scans(served: ServedEmbeddings):
    """Counts the calls of ``served.candidates`` (a one-element list)."""
    count = [0]
    inner = served.candidates

    def counted(*args, **kwargs):
        count[0] += 1
        return inner(*args, **kwargs)

    served.candidates = counted
    return count


if __name__ == "__main__":
    unittest.main()
