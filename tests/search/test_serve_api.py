"""The search service's HTTP API (``python -m ian_d2.search serve``) with FastAPI's TestClient.

The index holds the synthetic two-camera video (5 sampled frames per second) and 4 still images
of the tiny synthetic CUHK-SYSU, indexed by the search tests' small random model: what is
checked is the service (ids, paging, filters before top-k, grouping, media, uploads, jobs,
security), not the model's accuracy. Brute-force numpy rankings over the shards are the
reference of the ranked searches.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
import unittest
from unittest import mock

import cv2
import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from ian_d2.search import index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.serve import create_app, query
from ian_d2.search.sources import read_video_frames
from ian_d2.search.store import list_shards
from tests.search_testing import build_serve_gallery, save_model

TOKEN = "t0ken-for-the-tests-0123456789"


class _Client(TestClient):
    """A TestClient that checks that no response body ever shows a traceback."""

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        assert b"Traceback" not in response.content, response.content[:500]
        return response


def _sid(path):
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def _reference(index_dir):
    """Every stored detection read from the shards: ids, sources, frames, times, scores, boxes,
    embeddings [N, D], in the shards' order."""
    out = {k: [] for k in ("id", "source", "frame", "time", "score", "box")}
    embs = []
    for path in list_shards(index_dir):
        t = pq.read_table(path).to_pydict()
        stem = os.path.basename(path)[: -len(".parquet")]
        n = len(t["score"])
        out["id"] += [f"{stem}.{i}" for i in range(n)]
        out["source"] += [_sid(s) for s in t["source"]]
        out["frame"] += t["frame"]
        out["time"] += t["time_s"]
        out["score"] += t["score"]
        out["box"] += [[t[k][i] for k in ("x1", "y1", "x2", "y2")] for i in range(n)]
        embs.append(np.asarray(t["embedding"], np.float32).reshape(n, -1))
    ref = {k: np.asarray(v) for k, v in out.items()}
    ref["emb"] = np.concatenate(embs)
    return ref


def _brute_force(ref, query, keep):
    """Detection ids and similarities of the rows of ``keep`` ranked for ``query`` [D]."""
    rows = np.flatnonzero(keep)
    sims = ref["emb"][rows] @ query
    order = np.lexsort((rows, -sims.astype(np.float64)))
    return ref["id"][rows[order]].tolist(), sims[order]


@pytest.mark.synthetic_cuhk_sysu
class TestServeApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        gallery = build_serve_gallery(tmp, cls.synthetic.images)
        cls.videos, cls.images = gallery.videos, gallery.images
        cls.weights, cls.cfg, cls.model = gallery.weights, gallery.cfg, gallery.model
        cls.index_dir = gallery.index_dir
        cls.ref = _reference(cls.index_dir)
        # footage root of the jobs: a new image, a text file, and a link to a video outside
        cls.root = os.path.join(tmp, "footage")
        os.makedirs(os.path.join(cls.root, "new"))
        shutil.copy(cls.images[10], os.path.join(cls.root, "new", "a.jpg"))
        with open(os.path.join(cls.root, "notes.txt"), "w") as f:
            f.write("not footage")
        cls.outside = os.path.join(tmp, "outside")
        os.makedirs(cls.outside)
        shutil.copy(os.path.join(cls.videos, "cam1.avi"), os.path.join(cls.outside, "o.avi"))
        os.symlink(os.path.join(cls.outside, "o.avi"), os.path.join(cls.root, "link.avi"))
        cls.app = create_app(cls.index_dir, model=cls.model, footage_roots=[cls.root])
        cls.ctx = cls.app.state.ctx
        cls.client = _Client(cls.app, raise_server_exceptions=False)
        sources = cls.client.get("/api/sources").json()["sources"]
        cls.sources = {s["name"]: s for s in sources}

    @classmethod
    def tearDownClass(cls):
        cls.ctx.jobs.close()
        cls._tmp.cleanup()

    def _copy_app(self, name, **kwargs):
        """An app over a copy of the index (tests that add to it)."""
        out = os.path.join(self._tmp.name, name)
        shutil.copytree(self.index_dir, out)
        app = create_app(out, model=self.model, **kwargs)
        self.addCleanup(app.state.ctx.jobs.close)
        return out, _Client(app, raise_server_exceptions=False)

    def _search(self, client=None, **body):
        r = (client or self.client).post("/api/search", json=body)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def _wait_job(self, client, job, timeout_s=60):
        """The job's state once it is neither queued nor running (polled; bounded)."""
        deadline = time.time() + timeout_s
        while job["state"] in ("queued", "running"):
            self.assertLess(time.time(), deadline, job)
            time.sleep(0.05)
            job = client.get(f"/api/index/jobs/{job['id']}").json()
        return job

    def _video_detection(self, cam="cam2.avi", k=3):
        """(row in the reference, detection id) of a detection of ``cam``, frame > 0."""
        sid = self.sources[cam]["id"]
        rows = np.flatnonzero((self.ref["source"] == sid) & (self.ref["frame"] > 0))
        return int(rows[k]), str(self.ref["id"][rows[k]])

    # index, sources, frames --------------------------------------------------------------------
    def test_index_counts(self):
        info = self.client.get("/api/index").json()
        self.assertEqual(info["detections"], len(self.ref["id"]))
        self.assertEqual(info["detections"], (30 + 4) * 8)  # 8 detections per item
        self.assertEqual((info["sources"], info["images"], info["videos"]), (6, 4, 2))
        self.assertEqual(info["frames"], 30 + 4)
        self.assertEqual(info["embed_dim"], 256)
        self.assertEqual(info["model"]["weights"], "model.pth")
        self.assertEqual(len(info["model"]["weights_sha256"]), 64)
        self.assertEqual(info["vector_index"]["kind"], "flat")
        self.assertEqual((info["fps"], info["score_thresh"]), (5.0, 0.0))
        self.assertIsNone(info["job"])

    def test_sources_and_frames_paging(self):
        cam = self.sources["cam1.avi"]
        self.assertEqual(cam["id"], _sid(os.path.join(self.videos, "cam1.avi")))
        self.assertEqual((cam["kind"], cam["frames"], cam["fps"]), ("video", 15, 5.0))
        self.assertAlmostEqual(cam["video_fps"], 10.0)
        self.assertAlmostEqual(cam["duration_s"], 3.0)
        self.assertEqual((cam["width"], cam["height"], cam["detections"]), (320, 240, 120))
        photo = self.sources[os.path.basename(self.images[0])]
        self.assertEqual((photo["kind"], photo["frames"], photo["detections"]), ("image", 1, 8))
        self.assertIsNone(photo["duration_s"])
        self.assertIsNone(photo["fps"])
        full = self.client.get(f"/api/sources/{cam['id']}/frames?limit=500").json()
        self.assertEqual(full["total"], 15)
        self.assertEqual([f["frame"] for f in full["frames"]], list(range(0, 30, 2)))
        np.testing.assert_allclose([f["time_s"] for f in full["frames"]], np.arange(0, 3, 0.2))
        paged = []
        for offset in range(0, 15, 4):
            page = self.client.get(f"/api/sources/{cam['id']}/frames?offset={offset}&limit=4")
            self.assertEqual(page.json()["offset"], offset)
            paged += page.json()["frames"]
        self.assertEqual(paged, full["frames"])
        first = full["frames"][1]
        self.assertEqual(first["id"], f"{cam['id']}.2")
        self.assertEqual(len(first["detections"]), 8)
        det = first["detections"][0]
        i = self.ref["id"].tolist().index(det["id"])
        np.testing.assert_allclose(det["box"], self.ref["box"][i], atol=0.01)
        frames = self.client.get(f"/api/sources/{photo['id']}/frames").json()["frames"]
        self.assertEqual(frames[0]["id"], f"{photo['id']}.0")
        self.assertIsNone(frames[0]["frame"])
        self.assertIsNone(frames[0]["time_s"])
        r = self.client.get(f"/api/sources/{cam['id']}/frames?limit=0")
        self.assertEqual(r.status_code, 422)
        self.assertIn("limit", r.json()["detail"])

    def test_frame_json_and_jpeg(self):
        cam = self.sources["cam2.avi"]
        frame_id = f"{cam['id']}.4"
        info = self.client.get(f"/api/frames/{frame_id}").json()
        self.assertEqual((info["source_id"], info["source"], info["frame"]),
                         (cam["id"], "cam2.avi", 4))  # fmt: skip
        self.assertAlmostEqual(info["time_s"], 0.4)
        self.assertEqual((info["width"], info["height"], len(info["detections"])), (320, 240, 8))
        plain = self.client.get(f"/api/frames/{frame_id}.jpg")
        self.assertEqual(plain.headers["content-type"], "image/jpeg")
        img = cv2.imdecode(np.frombuffer(plain.content, np.uint8), cv2.IMREAD_COLOR)
        truth = read_video_frames(os.path.join(self.videos, "cam2.avi"), [4])[4]
        self.assertLess(np.abs(img.astype(float) - truth).mean(), 4.0)  # JPEG of that frame
        drawn = self.client.get(f"/api/frames/{frame_id}.jpg?draw=1")
        self.assertEqual(drawn.status_code, 200)
        self.assertNotEqual(drawn.content, plain.content)
        photo = self.sources[os.path.basename(self.images[1])]
        r = self.client.get(f"/api/frames/{photo['id']}.0.jpg")
        self.assertEqual(r.status_code, 200)
        self.assertIsNone(self.client.get(f"/api/frames/{photo['id']}.0").json()["frame"])

    def test_detection_and_crop(self):
        row, det_id = self._video_detection()
        info = self.client.get(f"/api/detections/{det_id}").json()
        self.assertEqual(info["id"], det_id)
        self.assertEqual(info["source"], "cam2.avi")
        self.assertEqual(info["frame"], int(self.ref["frame"][row]))
        self.assertEqual(info["frame_id"], f"{info['source_id']}.{info['frame']}")
        np.testing.assert_allclose(info["box"], self.ref["box"][row], atol=0.01)
        r = self.client.get(f"/api/detections/{det_id}/crop.jpg")
        self.assertEqual(r.headers["content-type"], "image/jpeg")
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = self.ref["box"][row]
        self.assertLessEqual(img.shape[1], min(320, (x2 - x1) * 1.2 + 3))
        self.assertGreaterEqual(img.shape[1], min(x2, 320) - max(x1, 0) - 1)

    def test_video_and_ranges(self):
        sid = self.sources["cam1.avi"]["id"]
        full = self.client.get(f"/api/sources/{sid}/video")
        self.assertEqual(full.status_code, 200)
        self.assertEqual(full.headers["accept-ranges"], "bytes")
        self.assertEqual(full.headers["content-type"], "video/webm")  # MJPG/AVI: converted
        cached = os.path.join(self.index_dir, "media", f"{sid}.webm")
        with open(cached, "rb") as f:
            self.assertEqual(full.content, f.read())
        cap = cv2.VideoCapture(cached)
        n = 0
        while cap.grab():
            n += 1
        self.assertEqual((n, cap.get(cv2.CAP_PROP_FPS)), (30, 10.0))  # frame n at n / 10 s
        size = len(full.content)
        part = self.client.get(f"/api/sources/{sid}/video", headers={"Range": "bytes=100-199"})
        self.assertEqual(part.status_code, 206)
        self.assertEqual(part.content, full.content[100:200])
        self.assertEqual(part.headers["content-range"], f"bytes 100-199/{size}")
        self.assertEqual(part.headers["content-length"], "100")
        tail = self.client.get(f"/api/sources/{sid}/video", headers={"Range": "bytes=-50"})
        self.assertEqual(tail.content, full.content[-50:])
        rest = self.client.get(
            f"/api/sources/{sid}/video", headers={"Range": f"bytes={size - 10}-"}
        )
        self.assertEqual(rest.content, full.content[-10:])
        bad = self.client.get(f"/api/sources/{sid}/video", headers={"Range": f"bytes={size}-"})
        self.assertEqual(bad.status_code, 416)
        self.assertEqual(bad.headers["content-range"], f"bytes */{size}")
        photo = self.sources[os.path.basename(self.images[0])]["id"]
        self.assertEqual(self.client.get(f"/api/sources/{photo}/video").status_code, 404)

    # search ------------------------------------------------------------------------------------
    def test_search_by_detection_id_uses_the_stored_embedding(self):
        row, det_id = self._video_detection()
        with mock.patch.object(self.ctx.embedder, "embed", side_effect=AssertionError("model")):
            res = self._search(query={"detection_id": det_id}, top_k=5)
        self.assertEqual(res["hits"][0]["detection_id"], det_id)
        self.assertAlmostEqual(res["hits"][0]["similarity"], 1.0, places=5)
        self.assertEqual(res["hits"][0]["rank"], 1)
        self.assertEqual(res["query"], {"detection_id": det_id, "embedding": "stored"})
        self.assertEqual(res["timings"]["embed_ms"], 0.0)
        self.assertEqual(res["total"], len(self.ref["id"]))
        ids, sims = _brute_force(self.ref, self.ref["emb"][row], np.ones(len(self.ref["id"]), bool))
        self.assertEqual([h["detection_id"] for h in res["hits"]], ids[:5])
        np.testing.assert_allclose([h["similarity"] for h in res["hits"]], sims[:5], atol=1e-5)

    def test_search_by_frame_and_box(self):
        row, det_id = self._video_detection("cam1.avi", 5)
        frame_id = f"{self.sources['cam1.avi']['id']}.{self.ref['frame'][row]}"
        box = self.ref["box"][row].tolist()
        res = self._search(query={"frame_id": frame_id, "box": box}, top_k=3)
        top = res["hits"][0]
        self.assertEqual((top["detection_id"], top["frame_id"]), (det_id, frame_id))
        self.assertGreater(top["similarity"], 0.999)
        self.assertEqual(res["query"]["embedding"], "model")
        self.assertGreater(res["timings"]["embed_ms"], 0.0)
        self.assertGreaterEqual(res["timings"]["search_ms"], 0.0)

    def test_search_by_upload_and_box(self):
        row, det_id = self._video_detection("cam2.avi", 7)
        frame = int(self.ref["frame"][row])
        png = cv2.imencode(".png", read_video_frames(os.path.join(self.videos, "cam2.avi"),
                                                     [frame])[frame])[1].tobytes()  # fmt: skip
        up = self.client.post("/api/uploads", files={"file": ("q.png", png, "image/png")})
        self.assertEqual(up.status_code, 200, up.text)
        up = up.json()
        self.assertRegex(up["id"], r"^[0-9a-f]{32}$")
        self.assertEqual((up["width"], up["height"]), (320, 240))
        jpg = self.client.get(f"/api/uploads/{up['id']}.jpg")
        self.assertEqual(jpg.headers["content-type"], "image/jpeg")
        box = self.ref["box"][row].tolist()
        res = self._search(query={"upload_id": up["id"], "box": box}, top_k=3)
        self.assertEqual(res["hits"][0]["detection_id"], det_id)
        self.assertGreater(res["hits"][0]["similarity"], 0.999)
        outside = {"upload_id": up["id"], "box": [300, 10, 330, 50]}
        r = self.client.post("/api/search", json={"query": outside})
        self.assertEqual(r.status_code, 422)
        self.assertIn("320x240", r.json()["detail"])

    def test_filters_apply_before_top_k(self):
        row, det_id = self._video_detection("cam1.avi")
        q = self.ref["emb"][row]
        cam2 = self.sources["cam2.avi"]["id"]
        res = self._search(query={"detection_id": det_id}, filters={"sources": [cam2]}, top_k=10)
        keep = self.ref["source"] == cam2
        ids, sims = _brute_force(self.ref, q, keep)
        self.assertEqual(len(res["hits"]), 10)  # full, although cam1 holds the best matches
        self.assertEqual(res["total"], int(keep.sum()))
        self.assertEqual([h["detection_id"] for h in res["hits"]], ids[:10])
        self.assertTrue(all(h["source_id"] == cam2 for h in res["hits"]))
        # min_similarity: the rows from the 7th best similarity of the whole index
        _, all_sims = _brute_force(self.ref, q, np.ones(len(self.ref["id"]), bool))
        thr = float(all_sims[6])
        res = self._search(query={"detection_id": det_id}, filters={"min_similarity": thr},
                           top_k=100)  # fmt: skip
        self.assertEqual(res["total"], int((all_sims >= thr).sum()))
        self.assertTrue(all(h["similarity"] >= thr - 1e-6 for h in res["hits"]))
        # min_score
        thr = float(np.median(self.ref["score"]))
        res = self._search(query={"detection_id": det_id}, filters={"min_score": thr}, top_k=15)
        ids, _ = _brute_force(self.ref, q, self.ref["score"] >= np.float32(thr))
        self.assertEqual(res["total"], int((self.ref["score"] >= np.float32(thr)).sum()))
        self.assertEqual([h["detection_id"] for h in res["hits"]], ids[:15])
        # a time range: video rows only
        res = self._search(query={"detection_id": det_id}, top_k=500,
                           filters={"time_min": 1.0, "time_max": 2.0})  # fmt: skip
        with np.errstate(invalid="ignore"):
            keep = (self.ref["time"] >= 1.0) & (self.ref["time"] <= 2.0)
        ids, _ = _brute_force(self.ref, q, keep)
        self.assertEqual(res["total"], int(keep.sum()))
        self.assertEqual([h["detection_id"] for h in res["hits"]], ids)
        self.assertTrue(all(h["kind"] == "video" and 1.0 <= h["time_s"] <= 2.0
                            for h in res["hits"]))  # fmt: skip
        # every filter at once, still full pages
        every = {"sources": [cam2], "time_min": 0.5, "min_score": 0.0}
        res = self._search(query={"detection_id": det_id}, top_k=5, filters=every)
        self.assertEqual(len(res["hits"]), 5)

    def test_grouping_and_paging(self):
        row, det_id = self._video_detection("cam2.avi", 11)
        for group in ("none", "source_window"):
            body = {"query": {"detection_id": det_id}, "group": group, "window_s": 1.0}
            whole = self._search(**body, top_k=500)
            self.assertEqual(whole["total"], len(whole["hits"]))
            pages = []
            for offset in range(0, whole["total"] + 7, 7):
                page = self._search(**body, top_k=7, offset=offset)
                self.assertEqual(page["total"], whole["total"])
                pages += page["hits"]
            self.assertEqual(pages, whole["hits"], group)  # ranks included
            self.assertEqual([h["rank"] for h in pages], list(range(1, len(pages) + 1)))
        self.assertEqual(self._search(query={"detection_id": det_id}, top_k=500)["total"], 272)
        kept = whole["hits"]  # source_window
        self.assertEqual(kept[0]["detection_id"], det_id)
        videos = [h for h in kept if h["kind"] == "video"]
        for i, a in enumerate(videos):
            for b in videos[i + 1 :]:
                if a["source_id"] == b["source_id"]:
                    self.assertGreater(abs(a["time_s"] - b["time_s"]), 1.0, (a, b))
        self.assertEqual(len(kept) - len(videos), 4 * 8)  # still images are never grouped
        for cam in ("cam1.avi", "cam2.avi"):  # 0 .. 2.8 s in windows of 1 s: 2 or 3 hits
            self.assertIn(sum(h["source"] == cam for h in videos), (2, 3))
        sims = [h["similarity"] for h in kept]
        self.assertEqual(sims, sorted(sims, reverse=True))

    def test_approximate_kinds_filter_before_top_k(self):
        """query.rank with faiss (hnsw, ivf) over the rows of a filter: the exact ranking."""
        rng = np.random.default_rng(0)
        n, d = 3000, 32
        emb = rng.normal(size=(n, d)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        src = rng.integers(0, 10, n).astype(np.int32)
        time_s = rng.uniform(0, 100, n)
        score = rng.uniform(0, 1, n).astype(np.float32)
        q = emb[5]
        hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 512
        hnsw.add(emb)
        quant = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFFlat(quant, d, 16, faiss.METRIC_INNER_PRODUCT)
        ivf.train(emb)
        ivf.add(emb)
        ivf.nprobe = 16
        with mock.patch.object(query, "EXACT_BELOW", 0):  # the approximate path at any size
            for index in (hnsw, ivf):
                for sources in ([3], [1, 2], None):
                    filters = query.Filters(sources=sources, min_score=0.2)
                    keep = (score >= np.float32(0.2)) & (np.isin(src, sources) if sources else True)
                    rows = np.flatnonzero(keep)
                    order = rows[np.argsort(-(emb[rows] @ q), kind="stable")]
                    got = query.rank(emb, src, time_s, score, q, filters, top_k=20, offset=10,
                                     vectors=index)  # fmt: skip
                    self.assertEqual(got.rows.tolist(), order[10:30].tolist())
                    self.assertEqual(got.total, len(rows))
                got = query.rank(emb, src, time_s, score, q, query.Filters(sources=[4]),
                                 top_k=10, group="source_window", window_s=5.0,
                                 vectors=index)  # fmt: skip
                self.assertEqual(len(got.rows), 10)
                t = np.sort(time_s[got.rows])
                self.assertTrue((np.diff(t) > 5.0).all())

    # ids and errors ----------------------------------------------------------------------------
    def test_unknown_ids_are_404(self):
        sid = self.sources["cam1.avi"]["id"]
        for url in ("/api/detections/r000-000001.9999", "/api/detections/nope",
                    "/api/detections/r009-000001.0/crop.jpg", f"/api/frames/{sid}.1",
                    f"/api/frames/{sid}.1.jpg", "/api/frames/0123456789abcdef.0",
                    "/api/sources/0123456789abcdef/frames", "/api/sources/nope/video",
                    "/api/uploads/" + "0" * 32 + ".jpg", "/api/index/jobs/nope"):  # fmt: skip
            r = self.client.get(url)
            self.assertEqual(r.status_code, 404, url)
            self.assertIsInstance(r.json()["detail"], str)
        for body in ({"query": {"detection_id": "r000-000001.100000"}},
                     {"query": {"frame_id": f"{sid}.3", "box": [0, 0, 10, 10]}},
                     {"query": {"upload_id": "f" * 32, "box": [0, 0, 10, 10]}},
                     {"query": {"detection_id": self.ref["id"][0]},
                      "filters": {"sources": ["0123456789abcdef"]}}):  # fmt: skip
            self.assertEqual(self.client.post("/api/search", json=body).status_code, 404, body)

    def test_odd_digits_and_text_are_4xx_not_500(self):
        """What the schema tests found (they were 500s): digits that ``int`` refuses although
        ``str.isdigit`` accepts them, and lone surrogates, which UTF-8 cannot encode."""
        sid = self.sources["cam1.avi"]["id"]
        det = str(self.ref["id"][0])
        stem = det.rsplit(".", 1)[0]
        for tail in ("²", "9" * 5000):
            for url in (f"/api/frames/{sid}.{tail}", f"/api/detections/{stem}.{tail}"):
                self.assertEqual(self.client.get(url).status_code, 404, url[:60])
        video = f"/api/sources/{sid}/video"
        for rng, status in (("bytes=²-", 200), ("bytes=0-²", 200),
                            ("bytes=" + "9" * 5000 + "-", 416), ("bytes=-" + "9" * 5000, 206)):  # fmt: skip
            r = self.client.get(video, headers={"Range": rng.encode("latin-1")})
            self.assertEqual(r.status_code, status, rng[:20])
        as_json = {"Content-Type": "application/json"}
        for body in (b'{"paths": ["\\ud800"]}', b'{"paths": ["\\udc80"]}'):
            r = self.client.post("/api/index/jobs", content=body, headers=as_json)
            self.assertEqual(r.status_code, 400, body)
            self.assertIn("\\ud", r.json()["detail"])
        body = b'{"query": {"detection_id": "%s"}, "filters": {"sources": ["\\ud800"]}}'
        r = self.client.post("/api/search", content=body % det.encode(), headers=as_json)
        self.assertEqual(r.status_code, 404)
        r = self.client.post("/api/search", content=b"\xff{", headers=as_json)  # not UTF-8
        self.assertEqual(r.status_code, 400)

    def test_query_kinds_and_their_messages(self):
        """The query is one of four objects (a oneOf in the schema): nulls for the other keys
        are accepted, anything else refused with a message naming the problem."""
        det = str(self.ref["id"][0])
        res = self._search(query={"detection_id": det, "track_id": None, "box": None}, top_k=1)
        self.assertEqual(res["query"], {"detection_id": det, "embedding": "stored"})
        for q, words in (
            ({"detection_id": det, "camera": 1}, "camera: Extra inputs are not permitted"),
            ({"detection_id": det, "track_id": "t"}, "exactly one"),
            ({"detection_id": ""}, "exactly one"),
            ({"detection_id": det, "box": [0, 0, 5, 5]}, "takes no box"),
            ({"track_id": det, "box": [0, 0, 5, 5]}, "takes no box"),
            ({"upload_id": "u"}, "needs box"),
            ({"detection_id": 5}, "detection_id: Input should be a valid string"),
            ({"frame_id": "f", "box": [0, "x", 1, 2]}, "box.1: Input should be a valid number"),
            ("r000-000001.0", "the query must be an object"),
        ):
            r = self.client.post("/api/search", json={"query": q})
            self.assertEqual(r.status_code, 422, q)
            self.assertIn(words, r.json()["detail"])

    def test_bad_requests_are_422_with_a_message(self):
        det = str(self.ref["id"][0])
        frame_id = f"{self.sources['cam1.avi']['id']}.0"
        for body, words in (
            ({"query": {"detection_id": det}, "top_k": 0}, "top_k"),
            ({"query": {"detection_id": det}, "top_k": 501}, "top_k"),
            ({"query": {"detection_id": det}, "group": "camera"}, "group"),
            ({"query": {}}, "exactly one"),
            ({"query": {"frame_id": frame_id}}, "needs box"),
            ({"query": {"frame_id": frame_id, "box": [50, 10, 40, 60]}}, "x1 < x2"),
            ({"query": {"frame_id": frame_id, "box": [0, 0, 321, 60]}}, "320x240"),
            ({"query": {"frame_id": frame_id, "box": [1, 2, 3]}}, "4 numbers"),
        ):
            r = self.client.post("/api/search", json=body)
            self.assertEqual(r.status_code, 422, body)
            self.assertIsInstance(r.json()["detail"], str)
            self.assertIn(words, r.json()["detail"])
        r = self.client.post(
            "/api/search", content=b"{not json", headers={"content-type": "application/json"}
        )
        self.assertEqual(r.status_code, 422)

    def test_uploads_refused(self):
        png = cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))[1].tobytes()
        jpg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
        old = self.ctx.max_upload_bytes
        self.ctx.max_upload_bytes = 1000
        try:
            r = self.client.post("/api/uploads", files={"file": ("big.png", b"\0" * 5000)})
            self.assertEqual(r.status_code, 413)
            self.assertIn("larger than", r.json()["detail"])
            r = self.client.post("/api/uploads", files={"file": ("huge.png", b"\0" * 200_000)})
            self.assertEqual(r.status_code, 413)
        finally:
            self.ctx.max_upload_bytes = old
        for data, words in ((b"hello, world", "not an image"), (jpg[: len(jpg) // 2], "truncated"),
                            (b"", "empty")):  # fmt: skip
            r = self.client.post("/api/uploads", files={"file": ("x.jpg", data, "image/jpeg")})
            self.assertEqual(r.status_code, 422, data[:20])
            self.assertIn(words, r.json()["detail"])
        r = self.client.post("/api/uploads", data={"other": "x"})
        self.assertEqual(r.status_code, 422)
        # the form is one field, 'file' (the schema's additionalProperties: false)
        r = self.client.post("/api/uploads", files={"file": ("s.png", png)}, data={"other": "x"})
        self.assertEqual(r.status_code, 422)
        self.assertIn("nothing else", r.json()["detail"])
        r = self.client.post(
            "/api/uploads", content=b"--", headers={"Content-Type": "multipart/form-data"}
        )
        self.assertEqual(r.status_code, 400)  # no boundary: a form that cannot be parsed
        r = self.client.post("/api/uploads", files={"file": ("s.png", png, "image/png")})
        self.assertEqual(r.json()["width"], 30)

    def test_internal_error_is_500_without_traceback(self):
        with mock.patch.object(self.ctx.state, "current", side_effect=RuntimeError("secret")):
            with self.assertLogs("ian_d2.search.serve.app", "ERROR") as logs:
                r = self.client.get("/api/index")
        self.assertEqual(r.status_code, 500)
        self.assertEqual(r.json(), {"detail": "internal error"})
        self.assertNotIn(b"secret", r.content)
        self.assertIn("Traceback", "\n".join(logs.output))  # the log has it, the client not

    # jobs, appends -----------------------------------------------------------------------------
    def test_job_paths_refused(self):
        jobs = self.client.get("/api/index/jobs").json()["jobs"]
        with (
            mock.patch("ian_d2.search.sources.probe_video") as probe,
            mock.patch("cv2.VideoCapture", side_effect=AssertionError("a video was opened")),
        ):
            for paths in (["../outside/o.avi"], ["new/../../outside/o.avi"],
                          [os.path.join(self.outside, "o.avi")], ["link.avi"], ["new/b.jpg"],
                          ["notes.txt"], ["new/a.jpg", "link.avi"], [""]):  # fmt: skip
                r = self.client.post("/api/index/jobs", json={"paths": paths})
                self.assertEqual(r.status_code, 400, paths)
                if not any(self.outside in p for p in paths):  # no server path in messages
                    self.assertNotIn(self.outside, r.json()["detail"])
        probe.assert_not_called()
        r = self.client.post("/api/index/jobs", json={"root": 1, "paths": ["new/a.jpg"]})
        self.assertEqual(r.status_code, 400)
        self.assertEqual(self.client.get("/api/index/jobs").json()["jobs"], jobs)
        self.assertEqual(self.client.post("/api/index/jobs", json={"paths": []}).status_code, 422)
        _, bare = self._copy_app("index_no_roots", start_jobs=False)
        r = bare.post("/api/index/jobs", json={"paths": ["new/a.jpg"]})
        self.assertEqual(r.status_code, 400)
        self.assertIn("--footage-root", r.json()["detail"])

    def test_job_indexes_a_file_under_the_root(self):
        out, client = self._copy_app("index_job", footage_roots=[self.root])
        r = client.post("/api/index/jobs", json={"paths": ["new/a.jpg"]})
        self.assertEqual(r.status_code, 202, r.text)
        job = r.json()
        self.assertEqual((job["state"], job["paths"]), ("queued", ["new/a.jpg"]))
        job = self._wait_job(client, job)
        self.assertEqual(job["state"], "done", job)
        self.assertEqual((job["items_done"], job["items_total"], job["errors"]), (1, 1, []))
        self.assertIsNotNone(job["finished"])
        with open(os.path.join(out, "jobs", f"{job['id']}.json")) as f:
            self.assertEqual(json.load(f)["state"], "done")
        self.assertEqual(client.get("/api/index/jobs").json()["jobs"][0]["id"], job["id"])
        self.assertEqual(client.get("/api/index").json()["job"]["id"], job["id"])
        self.assertEqual(client.get("/api/index").json()["detections"], 34 * 8 + 8)
        new = [s for s in client.get("/api/sources").json()["sources"] if s["name"] == "a.jpg"]
        self.assertEqual(len(new), 1)
        det = client.get(f"/api/frames/{new[0]['id']}.0").json()["detections"][0]["id"]
        res = self._search(client, query={"detection_id": det}, top_k=3)
        self.assertEqual(res["hits"][0]["detection_id"], det)

    def test_unfinished_job_outside_the_roots_is_not_resumed(self):
        from ian_d2.search.serve.jobs import JobManager

        with tempfile.TemporaryDirectory() as index_dir:
            os.makedirs(os.path.join(index_dir, "jobs"))
            job = {"id": "0123456789abcdef", "state": "running", "root": 0, "paths": ["o.avi"],
                   "files": [os.path.join(self.outside, "o.avi")], "items_done": 3,
                   "items_total": 15, "eta_s": 2.0, "errors": [], "created": "x",
                   "started": "x", "finished": None}  # fmt: skip
            with open(os.path.join(index_dir, "jobs", job["id"] + ".json"), "w") as f:
                json.dump(job, f)
            jobs = JobManager(index_dir, backend=mock.Mock(side_effect=AssertionError("run")))
            jobs.start(allowed=lambda path: path.startswith(self.root))
            self.assertTrue(jobs.wait_idle(10))
            jobs.close()
            got = jobs.get(job["id"])
            self.assertEqual(got["state"], "failed")
            self.assertIn("--footage-root", got["errors"][0])
            self.assertNotIn("files", got)

    def test_shards_appended_by_another_process_become_searchable(self):
        out, client = self._copy_app("index_append", start_jobs=False)
        before = client.get("/api/index").json()["detections"]
        index_gallery(self.cfg, [self.images[20], self.images[21]], out, append=True,
                      model=self.model, num_workers=0, progress=False)  # fmt: skip
        info = client.get("/api/index").json()
        self.assertEqual(info["detections"], before + 16)
        self.assertEqual(info["sources"], 8)
        sid = _sid(os.path.abspath(self.images[21]))
        frame = client.get(f"/api/frames/{sid}.0").json()
        det = frame["detections"][2]["id"]
        self.assertTrue(det.startswith("r000-000002."))
        res = self._search(client, query={"detection_id": det}, top_k=3,
                           filters={"sources": [sid]})  # fmt: skip
        self.assertEqual(res["hits"][0]["detection_id"], det)
        self.assertEqual(res["total"], 8)
        res = self._search(client, query={"detection_id": str(self.ref["id"][0])}, top_k=500)
        self.assertEqual(res["total"], before + 16)

    def test_hnsw_index(self):
        """An approximate index: faiss over the filtered rows, in memory, extended on append."""
        out = os.path.join(self._tmp.name, "index_hnsw")
        shutil.copytree(self.index_dir, out, ignore=shutil.ignore_patterns("flat.*", "media"))
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        manifest["vector_index"]["kind"] = "hnsw"
        with open(os.path.join(out, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        app = create_app(out, model=self.model, start_jobs=False)
        client = _Client(app, raise_server_exceptions=False)
        info = client.get("/api/index").json()
        self.assertEqual((info["vector_index"]["kind"], info["vector_index"]["search"]),
                         ("hnsw", "faiss"))  # fmt: skip
        row, det_id = self._video_detection("cam1.avi", 4)
        cam2 = self.sources["cam2.avi"]["id"]
        with mock.patch.object(query, "EXACT_BELOW", 0):  # faiss whatever the size
            res = self._search(client, query={"detection_id": det_id}, top_k=10)
            self.assertEqual(res["hits"][0]["detection_id"], det_id)
            self.assertEqual(res["total"], len(self.ref["id"]))
            res = self._search(client, query={"detection_id": det_id}, top_k=10, offset=3,
                               filters={"sources": [cam2]})  # fmt: skip
            ids, _ = _brute_force(self.ref, self.ref["emb"][row], self.ref["source"] == cam2)
            self.assertEqual([h["detection_id"] for h in res["hits"]], ids[3:13])
            index_gallery(self.cfg, [self.images[25]], out, append=True, model=self.model,
                          num_workers=0, progress=False)  # fmt: skip
            sid = _sid(os.path.abspath(self.images[25]))
            det = client.get(f"/api/frames/{sid}.0").json()["detections"][0]["id"]
            res = self._search(client, query={"detection_id": det}, top_k=3)
            self.assertEqual(res["hits"][0]["detection_id"], det)
            self.assertEqual(res["total"], len(self.ref["id"]) + 8)
        self.assertEqual(app.state.ctx.state.vectors.ntotal, len(self.ref["id"]) + 8)

    def test_onnx_backend(self):
        """``--backend onnx``: queries and jobs run the exported model (same fingerprint)."""
        from ian_d2.export.exporter import export_model

        exported = os.path.join(self._tmp.name, "exported")
        export_model(self.cfg, exported, ["onnx"], model=self.model, verify=False)
        out, client = self._copy_app("index_onnx", backend="onnx", exported_model=exported,
                                     footage_roots=[self.root])  # fmt: skip
        self.assertEqual(client.get("/api/index").json()["model"]["backend"], "onnx")
        row, det_id = self._video_detection("cam1.avi", 9)
        frame_id = f"{self.sources['cam1.avi']['id']}.{self.ref['frame'][row]}"
        box = self.ref["box"][row].tolist()
        res = self._search(client, query={"frame_id": frame_id, "box": box}, top_k=3)
        self.assertEqual(res["hits"][0]["detection_id"], det_id)
        self.assertGreater(res["hits"][0]["similarity"], 0.999)
        job = client.post("/api/index/jobs", json={"paths": ["new"]}).json()
        job = self._wait_job(client, job)
        self.assertEqual(job["state"], "done", job)
        self.assertEqual(client.get("/api/index").json()["detections"], 34 * 8 + 8)
        with self.assertRaises(ValueError):  # another model than the index's
            other = save_model(os.path.join(self._tmp.name, "other.pth"), seed=1)
            create_app(out, weights=other, start_jobs=False)

    # security ----------------------------------------------------------------------------------
    def test_token(self):
        _, client = self._copy_app("index_token", token=TOKEN, start_jobs=False)
        sid = self.sources["cam1.avi"]["id"]
        urls = ["/api/index", "/api/sources", f"/api/frames/{sid}.0.jpg", "/api/index/jobs",
                f"/api/sources/{sid}/video", "/api/nothing-here"]  # fmt: skip
        for url in urls:
            self.assertEqual(client.get(url).status_code, 401, url)
        self.assertEqual(client.post("/api/search", json={}).status_code, 401)
        self.assertEqual(client.post("/api/uploads", content=b"x").status_code, 401)
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        self.assertEqual(client.get("/api/index", headers=wrong).status_code, 401)
        bearer = {"Authorization": "Bearer " + TOKEN}
        for url in urls[:-1]:
            self.assertEqual(client.get(url, headers=bearer).status_code, 200, url)
        self.assertEqual(client.get("/").status_code, 200)  # the page loads without
        self.assertEqual(client.post("/api/session", json={"token": "nope"}).status_code, 401)
        r = client.post("/api/session", json={"token": TOKEN})
        self.assertEqual(r.status_code, 200)
        cookie = r.headers["set-cookie"].lower()
        self.assertIn("httponly", cookie)
        self.assertIn("samesite=strict", cookie)
        self.assertNotIn(TOKEN.lower(), cookie)
        self.assertEqual(client.get("/api/index").status_code, 200)  # the cookie
        self.assertEqual(client.get("/api/sources").status_code, 200)

    def test_page_without_token(self):
        r = self.client.get("/")
        self.assertEqual(r.status_code, 200)
        self.assertIn("text/html", r.headers["content-type"])

    def test_cli_refuses_a_public_host_without_token(self):
        with mock.patch("uvicorn.run") as run:
            with self.assertRaises(ValueError) as cm:
                search_main(["serve", self.index_dir, "--host", "0.0.0.0"])
            self.assertIn("--token-file", str(cm.exception))
            with self.assertRaises(ValueError):
                search_main(["serve", self.index_dir, "--host", "example.org"])
            short = os.path.join(self._tmp.name, "short_token")
            with open(short, "w") as f:
                f.write("abc\n")
            with self.assertRaises(ValueError) as cm:
                search_main(["serve", self.index_dir, "--host", "0.0.0.0", "--token-file", short])
            self.assertIn("16 characters", str(cm.exception))
        run.assert_not_called()
        from ian_d2.search.cli import build_parser, check_serve_args

        args = build_parser().parse_args(["serve", self.index_dir, "--host", "::1"])
        self.assertIsNone(check_serve_args(args))


if __name__ == "__main__":
    unittest.main()
