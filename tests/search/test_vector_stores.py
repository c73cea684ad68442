"""The vector store: faiss (the default) and Milvus Lite (pymilvus) on the same index.

One index of the synthetic gallery (30 images) and the synthetic video (2 cameras) is built
with the search tests' small random model (faiss); a copy gets its vectors in a Milvus Lite
file through ``reindex-vectors``. Both answer the same queries with exact indexes: the same
rows in the same order (ties aside), with and without filters and one hit per track.
"""

import json
import os
import shutil
import socket
import tempfile
import time
import unittest

import numpy as np
import pyarrow.parquet as pq
import pytest

from ian_d2.data.synthetic import generate_video
from ian_d2.search import GallerySearcher, index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.indexer import load_search_model
from ian_d2.search.manifest import IndexManifest
from ian_d2.search.milvus_store import MilvusStore
from ian_d2.search.shards import list_shards, read_embeddings
from ian_d2.search.store_sync import check_vector_store, open_vector_store, row_fields
from ian_d2.search.vector_store import (
    SearchFilter,
    parse_store_uri,
    read_token,
    row_key,
    split_row_key,
)
from tests.search_testing import make_cfg, save_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestStoreUri(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_store_uri(None).kind, "faiss")
        lite = parse_store_uri("milvus-lite://rel/v.db")
        self.assertEqual((lite.kind, lite.path), ("milvus-lite", os.path.abspath("rel/v.db")))
        srv = parse_store_uri("milvus://milvus.internal:19530/cameras")
        self.assertEqual((srv.kind, srv.address, srv.db_name),
                         ("milvus", "http://milvus.internal:19530", "cameras"))  # fmt: skip
        self.assertEqual(parse_store_uri("milvus://h:1/").uri, "milvus://h:1")
        for bad, msg in [("milvus-lite://v.sqlite", "ending in .db"),
                         ("milvus://host", "not milvus://HOST:PORT"),
                         ("milvus://h:99999", "not milvus://HOST:PORT"),
                         ("qdrant://h:1", "is not one of")]:  # fmt: skip
            with self.assertRaisesRegex(ValueError, msg):
                parse_store_uri(bad)
        with self.assertRaisesRegex(ValueError, "no user, password or token") as cm:
            parse_store_uri("milvus://root:secret@h:19530")
        self.assertNotIn("secret", str(cm.exception))

    def test_token_from_file_or_env(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "token")
            with open(path, "w") as f:
                f.write("root:Milvus\n")
            self.assertEqual(read_token(path), "root:Milvus")
            with self.assertRaisesRegex(ValueError, "does not exist"):
                read_token(os.path.join(tmp, "none"))
        os.environ["IAN_D2_MILVUS_TOKEN"] = "from-env"
        try:
            self.assertEqual(read_token(None), "from-env")
        finally:
            del os.environ["IAN_D2_MILVUS_TOKEN"]

    def test_row_keys_round_trip(self):
        k = row_key(7, 123456, np.array([0, 5, (1 << 24) - 1]))
        self.assertEqual(len(set(k.tolist())), 3)
        r, s, w = split_row_key(k)
        self.assertEqual((r.tolist(), s.tolist(), w.tolist()),
                         ([7] * 3, [123456] * 3, [0, 5, (1 << 24) - 1]))  # fmt: skip

    def test_filter_expression(self):
        f = SearchFilter(("/a/cam1.avi", 'q"uote'), 1.5, 3.0, 0.25)
        self.assertEqual(
            f.expression(),
            'source in ["/a/cam1.avi", "q\\"uote"] and time_s >= 1.5 and time_s <= 3.0 and '
            "score >= 0.25",
        )
        self.assertEqual(SearchFilter().expression(), "")
        with self.assertRaisesRegex(ValueError, "is empty"):
            SearchFilter(time_min=3, time_max=1)


class TestStoreInterface(unittest.TestCase):
    """Both backends through the same interface (add, search with filters, count, drop) on 400
    random rows: the same rows in the same order."""

    def test_add_search_count_drop(self):
        import faiss

        from ian_d2.search.vector_store import FaissStore

        rng = np.random.default_rng(0)
        x = rng.standard_normal((400, 32)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sources = [f"cam{i % 4}" for i in range(400)]
        t = np.where(np.arange(400) % 10 == 0, np.nan, rng.uniform(0, 100, 400))
        score = rng.uniform(0, 1, 400).astype(np.float32)
        track = np.arange(400, dtype=np.int64) // 3  # tracks of 3 rows
        keys = np.arange(400, dtype=np.int64)
        with tempfile.TemporaryDirectory() as tmp:
            spec = parse_store_uri(f"milvus-lite://{tmp}/iface.db")
            model = {"weights_sha256": "a", "config_sha256": "b"}
            milvus = MilvusStore(spec, "iface", 32, model)
            milvus.create()
            local = FaissStore(faiss.IndexFlatIP(32), [], [], [], [])
            for store in (local, milvus):
                store.add(keys[:250], x[:250], sources[:250], t[:250], score[:250], track[:250])
                store.add(keys[250:], x[250:], sources[250:], t[250:], score[250:], track[250:])
                self.assertEqual(store.count(), 400)
            with self.assertRaisesRegex(ValueError, "keys must be the next rows 400"):
                local.add(keys[:1], x[:1], sources[:1], t[:1], score[:1], track[:1])
            q = x[[3, 99, 250]] + 0.1 * rng.standard_normal((3, 32)).astype(np.float32)
            for f in (SearchFilter(), SearchFilter(sources=("cam1", "cam3")),
                      SearchFilter(time_min=20.0, time_max=60.0), SearchFilter(min_score=0.7)):  # fmt: skip
                for group in (False, True):
                    sa, ia = local.search(q, 15, f, group)
                    sb, ib = milvus.search(q, 15, f, group)
                    for a, b, u, v in zip(ia, ib, sa, sb):
                        self.assertEqual(a.tolist(), b.tolist(), (f, group))
                        np.testing.assert_allclose(u, v, atol=1e-5)
                        self.assertEqual(len(a), 15)
                        if group:
                            self.assertEqual(len(set(track[a].tolist())), 15)
                        mask = f.mask(["cam0", "cam1", "cam2", "cam3"],
                                      [int(s[3]) for s in sources], t, score)  # fmt: skip
                        if mask is not None:
                            self.assertTrue(mask[a].all())
            for store in (local, milvus):
                store.drop()
            self.assertEqual(local.count(), 0)
            self.assertFalse(milvus.exists())
            milvus.close()


@pytest.mark.synthetic_cuhk_sysu
class TestFaissMilvusParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.videos = os.path.join(tmp, "videos")
        generate_video(cls.videos, size="tiny", seed=0)
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        cls.model = load_search_model(cls.cfg)
        cls.faiss_dir = os.path.join(tmp, "faiss")
        index_gallery(cls.cfg, [cls.synthetic.images, cls.videos], cls.faiss_dir, fps=5,
                      score_thresh=0.0, model=cls.model, num_workers=0, progress=False,
                      shard_size=8)  # fmt: skip
        cls.milvus_dir = os.path.join(tmp, "milvus")
        shutil.copytree(cls.faiss_dir, cls.milvus_dir)
        cls.db = os.path.join(tmp, "vectors.db")
        search_main(["reindex-vectors", cls.milvus_dir, "--vector-store",
                     f"milvus-lite://{cls.db}"])  # fmt: skip
        cls.emb = read_embeddings(list_shards(cls.faiss_dir), 256)
        cls.queries = cls.emb[[0, 37, 101, len(cls.emb) - 5]]

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def searchers(self):
        a = GallerySearcher(self.faiss_dir, model=self.model)
        b = GallerySearcher(self.milvus_dir, model=self.model)
        self.addCleanup(b.close)
        return a, b

    def assertSameRanking(self, ra, rb):
        """The same hits in the same order; equal similarities may come in either order."""
        for qa, qb in zip(ra, rb):
            sa = np.array([m["similarity"] for m in qa["matches"]])
            sb = np.array([m["similarity"] for m in qb["matches"]])
            self.assertEqual(len(sa), len(sb))
            np.testing.assert_allclose(sa, sb, atol=1e-5)

            def key(m):
                return (m["source"], m["frame"], tuple(m["box"]))

            ka = [key(m) for m in qa["matches"]]
            kb = [key(m) for m in qb["matches"]]
            for i in range(len(ka)):
                tie = np.flatnonzero(np.abs(sa - sa[i]) <= 1e-5)
                self.assertIn(kb[i], [ka[j] for j in tie], f"rank {i}")

    def test_manifest_records_the_store(self):
        m = IndexManifest.load(self.milvus_dir)
        self.assertEqual(m.store_uri, f"milvus-lite://{self.db}")
        self.assertTrue(m.vector_store["collection"].startswith("ian_d2_"))
        self.assertEqual(IndexManifest.load(self.faiss_dir).vector_store, {"uri": "faiss"})
        a, b = self.searchers()
        self.assertEqual(b.milvus.count(), len(self.emb))
        self.assertIsNone(b.vectors)

    def test_same_ranking_unfiltered_and_filtered(self):
        a, b = self.searchers()
        cam1 = os.path.join(os.path.abspath(self.videos), "cam1.avi")
        image = a.sources[int(a.source_index[0])]
        cases = [
            SearchFilter(),
            SearchFilter(sources=(cam1,)),
            SearchFilter(sources=(cam1, image)),
            SearchFilter(time_min=0.8, time_max=2.0),
            SearchFilter(time_max=1.0),
            SearchFilter(min_score=float(np.median(a.table["score"]))),
            SearchFilter(sources=(cam1,), time_min=1.0, min_score=0.0),
        ]
        for f in cases:
            with self.subTest(filters=f):
                ra, rb = a.search(self.queries, 20, f), b.search(self.queries, 20, f)
                self.assertSameRanking(ra, rb)
                mask = f.mask(a.sources, a.source_index, a.table["time_s"], a.table["score"])
                n_ok = len(a.table["score"]) if mask is None else int(mask.sum())
                self.assertEqual(len(ra[0]["matches"]), min(20, n_ok))
                for m in ra[0]["matches"]:  # every hit passes the filter
                    if f.sources:
                        self.assertIn(m["source"], f.sources)
                    if f.time_min is not None or f.time_max is not None:
                        self.assertIsNotNone(m["time_s"])
                        self.assertGreaterEqual(m["time_s"], (f.time_min or 0) - 1e-6)
                        self.assertLessEqual(m["time_s"], (f.time_max or 1e9) + 1e-6)
                    if f.min_score is not None:
                        self.assertGreaterEqual(m["score"], round(f.min_score, 4) - 1e-4)
        # a filtered top-k is the top-k of the passing rows, not a filtered unfiltered top-k
        cam = SearchFilter(sources=(cam1,))
        exact = self.emb @ self.queries[0]
        mask = cam.mask(a.sources, a.source_index, a.table["time_s"], a.table["score"])
        want = np.sort(exact[mask])[::-1][:20]
        got = [m["similarity"] for m in b.search(self.queries[:1], 20, cam)[0]["matches"]]
        np.testing.assert_allclose(got, want, atol=1e-5)

    def test_one_hit_per_track(self):
        a, b = self.searchers()
        for f in (SearchFilter(), SearchFilter(time_min=0.5)):
            ra = a.search(self.queries, 8, f, one_per_track=True)
            rb = b.search(self.queries, 8, f, one_per_track=True)
            self.assertSameRanking(ra, rb)
            for res in ra + rb:
                ids = [m["track"]["id"] for m in res["matches"]]
                self.assertEqual(len(ids), len(set(ids)))  # one hit per track
                self.assertEqual(len(ids), 8)
            self.assertTrue(any(m["track"]["kind"] == "track" for m in ra[0]["matches"]))
        # in the store = the exact in-process per-track ranking (best detection per track)
        exact = a.search_tracks(self.queries[:1], 8, "best")[0]["matches"]
        grouped = b.search(self.queries[:1], 8, None, one_per_track=True)[0]["matches"]
        self.assertEqual([m["track"]["id"] for m in exact][:3],
                         [m["track"]["id"] for m in grouped][:3])  # fmt: skip
        np.testing.assert_allclose([m["similarity"] for m in exact],
                                   [m["similarity"] for m in grouped], atol=1e-5)  # fmt: skip

    def test_new_tracks_reach_the_store(self):
        """The store's rows carry their tracks: tracks changed behind its back are named at
        start; `reindex-vectors` and the `tracks` command re-upload only the shards whose tracks
        changed."""
        import glob

        work = os.path.join(self._tmp.name, "retrack")
        shutil.copytree(self.milvus_dir, work)
        db = f"milvus-lite://{self._tmp.name}/retrack.db"
        search_main(["reindex-vectors", work, "--vector-store", db])
        for path in glob.glob(os.path.join(work, "tracks", "*.parquet")):
            os.remove(path)  # every video row is now a track of its own
        with self.assertRaisesRegex(ValueError, r"shard\(s\) of the index are missing or differ"):
            GallerySearcher(work, model=self.model)
        from ian_d2.search.shards import read_shard_items

        n_video = sum(any(it.frame >= 0 for it in read_shard_items(p)) for p in list_shards(work))
        self.assertGreater(n_video, 2)  # the shards holding video frames
        res = search_main(["reindex-vectors", work])
        self.assertEqual(res["uploaded"], n_video)
        stats = search_main(["tracks", work])  # tracks built again: their shards go up again
        self.assertEqual(stats["vector_store"]["uploaded"], n_video)
        self.assertEqual(search_main(["tracks", work])["vector_store"]["uploaded"], 0)
        a, b = GallerySearcher(self.faiss_dir, model=self.model), GallerySearcher(
            work, model=self.model
        )
        self.addCleanup(b.close)
        self.assertSameRanking(
            a.search(self.queries, 8, None, True), b.search(self.queries, 8, None, True)
        )

    def test_query_command_with_filters(self):
        out = os.path.join(self._tmp.name, "q")
        cam2 = os.path.join(self.videos, "cam2.avi")
        t = pq.read_table(list_shards(self.milvus_dir)[-1]).to_pydict()
        row = len(t["score"]) - 1
        frame_png = os.path.join(self._tmp.name, "frame.png")
        from ian_d2.search.sources import read_video_frames
        import cv2

        cv2.imwrite(
            frame_png, read_video_frames(t["source"][row], [t["frame"][row]])[t["frame"][row]]
        )
        box = [str(t[k][row]) for k in ("x1", "y1", "x2", "y2")]
        argv = ["query", self.milvus_dir, "--query-image", frame_png, "--query-box", *box,
                "--weights", self.weights, "--device", "cpu", "--no-draw", "--output", out,
                "--source", cam2, "--time-min", "1", "--top-k", "5"]  # fmt: skip
        res = search_main(argv)[0]
        self.assertEqual(len(res["matches"]), 5)
        self.assertTrue(all(m["source"] == os.path.abspath(cam2) for m in res["matches"]))
        self.assertTrue(all(m["time_s"] >= 1 for m in res["matches"]))
        with open(os.path.join(out, "ranking.json")) as f:
            self.assertEqual(json.load(f)["matches"], res["matches"])


@pytest.mark.synthetic_cuhk_sysu
class TestMilvusLiteIndex(unittest.TestCase):
    """Indexing into Milvus Lite; bad input; disagreements; an interrupted upload."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        cls.model = load_search_model(cls.cfg)
        cls.gallery = cls.synthetic.images
        cls.base = os.path.join(tmp, "base")  # faiss; copied by the tests that change it
        cls.index(cls, cls.base)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def copy_base(self, name):
        out = os.path.join(self._tmp.name, name)
        shutil.copytree(self.base, out)
        return out

    def index(self, out, **kw):
        kw.setdefault("score_thresh", 0.5)
        return index_gallery(self.cfg, [self.gallery], out, model=self.model, num_workers=0,
                             progress=False, shard_size=6, **kw)  # fmt: skip

    def test_index_into_milvus_lite_then_disagreements(self):
        tmp = self._tmp.name
        out, db = os.path.join(tmp, "idx"), f"milvus-lite://{tmp}/idx.db"
        stats = self.index(out, vector_store=db)
        m = IndexManifest.load(out)
        self.assertEqual(m.store_uri, db)
        self.assertFalse(os.path.exists(os.path.join(out, "vectors", "flat.faiss")))
        rows = sum(pq.read_metadata(p).num_rows for p in list_shards(out))
        self.assertGreater(rows, 20)
        self.assertEqual(stats["stored_detections"], rows)
        self.assertEqual(stats["vector_store"]["uploaded"], 4)  # 30 images, 8 per shard
        # a shard added behind the store's back (copied under a new name): named at start
        shards = list_shards(out)
        extra = os.path.join(out, "shards", "r000-000009.parquet")
        shutil.copy(shards[0], extra)
        with self.assertRaisesRegex(ValueError, r"1 shard\(s\) of the index are missing.*"
                                    r"r000-000009.parquet.*reindex-vectors"):  # fmt: skip
            GallerySearcher(out, model=self.model)
        os.remove(extra)
        # a shard gone: the store holds rows the index does not have
        os.rename(shards[1], shards[1] + ".moved")
        with self.assertRaisesRegex(ValueError, r"rows of 1 shard\(s\) the index does not have "
                                    r"\(r000-000002.parquet\)"):  # fmt: skip
            GallerySearcher(out, model=self.model)
        os.rename(shards[1] + ".moved", shards[1])
        s = GallerySearcher(out, model=self.model)
        s.close()
        # --append with another store is refused; with the same, only the new rows go up
        with self.assertRaisesRegex(ValueError, "differs from the index's milvus-lite://"):
            self.index(out, append=True, vector_store="faiss")

    def test_unreachable_server_fails_at_start(self):
        out = os.path.join(self._tmp.name, "unreachable")
        uri = f"milvus://127.0.0.1:{_free_port()}"
        t0 = time.perf_counter()
        with self.assertRaisesRegex(ValueError, f"'{uri}' is unreachable.*timeout 3 s"):
            self.index(out, vector_store=uri, store_timeout=3.0)
        self.assertLess(time.perf_counter() - t0, 3.0 + 10)
        self.assertFalse(os.path.exists(out))  # nothing written: no manifest, no shard

    def test_other_model_or_size_refused(self):
        tmp = self._tmp.name
        out, db = self.copy_base("mine"), f"milvus-lite://{tmp}/shared.db"
        search_main(["reindex-vectors", out, "--vector-store", db, "--milvus-collection", "people"])
        m = IndexManifest.load(out)
        other = IndexManifest(**{**m.__dict__, "model": {**m.model, "weights_sha256": "f" * 64}})
        with self.assertRaisesRegex(
            ValueError, "collection 'people'.*another model .*ffffffffffff"
        ):
            open_vector_store(other)
        small = IndexManifest(**{**m.__dict__, "model": {**m.model, "embed_dim": 128}})
        with self.assertRaisesRegex(ValueError, "holds 256-d embeddings.*makes 128-d"):
            open_vector_store(small)
        # a new index into the same collection with another model: refused before any shard
        out2 = os.path.join(tmp, "theirs")
        cfg2 = make_cfg(save_model(os.path.join(tmp, "model2.pth"), seed=1))
        with self.assertRaisesRegex(ValueError, "another model"):
            index_gallery(cfg2, [self.gallery], out2, vector_store=db,
                          milvus_collection="people", num_workers=0, progress=False)  # fmt: skip
        self.assertFalse(os.path.exists(os.path.join(out2, "shards")))

    def test_interrupted_upload_resumes(self):
        tmp = self._tmp.name
        out = self.copy_base("resume")  # faiss
        db = f"milvus-lite://{tmp}/resume.db"
        calls = []
        real = MilvusStore.upsert

        def failing(store, keys, *a, **kw):
            if len(calls) == 2:
                raise ConnectionError("connection lost")
            calls.append(len(keys))
            return real(store, keys, *a, **kw)

        MilvusStore.upsert = failing
        try:
            with self.assertRaises(ConnectionError):
                search_main(["reindex-vectors", out, "--vector-store", db,
                             "--milvus-collection", "resumed"])  # fmt: skip
        finally:
            MilvusStore.upsert = real
        # the manifest still names faiss (the move did not finish); 2 of 4 shards are up
        self.assertEqual(IndexManifest.load(out).store_uri, "faiss")
        m = IndexManifest(**{**IndexManifest.load(out).__dict__,
                             "vector_store": {"uri": db, "collection": "resumed"}})  # fmt: skip
        store = open_vector_store(m)
        check = check_vector_store(store, row_fields(out, list_shards(out)))
        store.close()
        self.assertEqual(len(list_shards(out)), 4)
        self.assertEqual(len(check.missing), 2)
        res = search_main(["reindex-vectors", out, "--vector-store", db,
                           "--milvus-collection", "resumed"])  # fmt: skip
        self.assertEqual(res["uploaded"], 2)  # only what was missing
        rows = sum(pq.read_metadata(p).num_rows for p in list_shards(out))
        self.assertEqual(res["rows"], rows)  # nothing twice
        self.assertEqual(IndexManifest.load(out).store_uri, db)
        s = GallerySearcher(out, model=self.model)
        self.addCleanup(s.close)
        emb = read_embeddings(list_shards(out), 256)
        top = s.search(emb[:1], 1)[0]["matches"][0]
        self.assertAlmostEqual(top["similarity"], 1.0, places=4)
        # back to faiss: the manifest follows
        search_main(["reindex-vectors", out, "--vector-store", "faiss"])
        self.assertEqual(IndexManifest.load(out).store_uri, "faiss")


if __name__ == "__main__":
    unittest.main()
