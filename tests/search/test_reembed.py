"""``reembed``: an index's detections embedded again by another model into a new index.

The index holds the synthetic two-camera video (2.5 sampled frames per second, 8 frames per
camera) and 4 still images of the tiny synthetic CUHK-SYSU, indexed by the search tests' small
random model with ``EMBED_BOXES final`` (a detection embedded on its stored box, as the given-box
path embeds it) in shards of 6 items. The "adapted" model is that model with its embedding
projection perturbed (same config, other weights). What is checked is the bookkeeping (same
detections and ids, new embeddings, tracks, vectors, manifest, refusals, resume), and that the
given-box path reproduces the indexed embeddings.
"""

import glob
import hashlib
import json
import os
import shutil
import tempfile
import unittest
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ian_d2.data.synthetic import generate_video
from ian_d2.search import GallerySearcher, IndexManifest, index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.indexer import load_search_model
from ian_d2.search.reembed import STATE, reembed_index
from ian_d2.search.store import list_shards
from ian_d2.search.tracks import TrackSettings, build_tracks, read_track_files
from ian_d2.utils.fingerprint import model_fingerprint
from ian_d2.utils.testing import config_file
from tests.search_testing import SMALL_OPTS, Interrupt, make_cfg, save_model

# a random model's scores are low: let every stored detection start and extend tracks
OPEN = TrackSettings(high_score=0.0, activation_score=0.0)
OPTS = ("MODEL.ROI_HEADS.EMBED_BOXES", "final", "TEST.DETECTIONS_PER_IMAGE", 3)


def _hashes(folder):
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _shards(index_dir):
    """{shard name: (columns but the embedding as a dict, [n, D] embeddings, items metadata)}."""
    out = {}
    for path in list_shards(index_dir):
        t = pq.read_table(path)
        emb = np.asarray(t.column("embedding").to_pylist(), np.float32)
        meta = t.schema.metadata[b"ian_d2.items"]
        cols = t.drop_columns(["embedding"]).to_pydict()
        cols["time_s"] = [None if x != x else x for x in cols["time_s"]]  # NaN: a still image
        out[os.path.basename(path)] = (cols, emb, meta)
    return out


def _tracks(index_dir):
    """{video: sorted track detection-id tuples} and the track files' embeddings."""
    sets, embs = {}, {}
    for _, header, table in read_track_files(index_dir):
        t = table.to_pydict()
        sets[header["source"]] = sorted(tuple(d) for d in t["detections"])
        embs[header["source"]] = np.asarray(t["embedding"], np.float32)
    return sets, embs


def _save_adapted(src: str, path: str) -> str:
    """The model of ``src`` with its embedding projection perturbed, saved to ``path``."""
    from detectron2.checkpoint import DetectionCheckpointer

    model = load_search_model(make_cfg(src))
    torch.manual_seed(1)
    with torch.no_grad():
        w = model.roi_heads.reid_head.proj.weight
        w.add_(torch.randn_like(w) * w.std())
    folder, name = os.path.split(path)
    DetectionCheckpointer(model, save_dir=folder).save(os.path.splitext(name)[0])
    return path


@pytest.mark.synthetic_cuhk_sysu
class TestReembed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls.tmp = cls._tmp.name
        cls.videos = os.path.join(tmp, "videos")
        generate_video(cls.videos, size="tiny", seed=0)
        cls.photos = os.path.join(tmp, "photos")
        os.makedirs(cls.photos)
        for p in sorted(glob.glob(os.path.join(cls.synthetic.images, "*.jpg")))[:4]:
            shutil.copy(p, cls.photos)
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights, *OPTS)
        cls.model = load_search_model(cls.cfg)
        cls.index_dir = os.path.join(tmp, "index")
        index_gallery(cls.cfg, [cls.videos, cls.photos], cls.index_dir, fps=2.5, score_thresh=0.0,
                      shard_size=6, model=cls.model, num_workers=0, progress=False,
                      tracks=False)  # fmt: skip
        build_tracks(cls.index_dir, OPEN)
        cls.index_hashes = _hashes(cls.index_dir)
        cls.adapted_weights = _save_adapted(cls.weights, os.path.join(tmp, "adapted.pth"))
        cls.adapted_cfg = make_cfg(cls.adapted_weights, *OPTS)
        cls.adapted_model = load_search_model(cls.adapted_cfg)
        cls.adapted = os.path.join(tmp, "adapted")
        cls.stats = cls.reembed(cls.adapted_cfg, cls.adapted, model=cls.adapted_model)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def reembed(cls, cfg, out, **kwargs):
        kwargs.setdefault("model", cls.model)
        return reembed_index(cfg, cls.index_dir, out, **kwargs)

    def assert_index_untouched(self):
        self.assertEqual(_hashes(self.index_dir), self.index_hashes)

    def test_same_model_gives_the_indexed_embeddings(self):
        """The given-box path equals indexing: the index's own model re-embeds every stored
        detection to its stored embedding; the detections (ids, boxes, ...) are the same."""
        out = os.path.join(self.tmp, "same")
        self.reembed(self.cfg, out)
        before, after = _shards(self.index_dir), _shards(out)
        self.assertEqual(sorted(after), sorted(before))  # same shard names: same detection ids
        self.assertGreater(len(before), 2)
        for name, (cols, emb, meta) in before.items():
            self.assertEqual(after[name][0], cols, name)  # sources, frames, times, boxes, scores
            self.assertEqual(after[name][2], meta, name)  # the items the shard covers
            cos = np.sum(emb * after[name][1], axis=1)
            self.assertGreater(cos.min(), 0.999, name)
        manifest = IndexManifest.load(out)
        self.assertEqual(manifest.model, IndexManifest.load(self.index_dir).model)
        self.assertEqual(_tracks(out)[0], _tracks(self.index_dir)[0])
        self.assert_index_untouched()

    def test_adapted_model_gives_new_embeddings_and_records_them(self):
        before, after = _shards(self.index_dir), _shards(self.adapted)
        self.assertEqual(sorted(after), sorted(before))
        cos = []
        for name, (cols, emb, _) in before.items():
            self.assertEqual(after[name][0], cols, name)
            new = after[name][1]
            np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)
            cos.append(np.sum(emb * new, axis=1))
        cos = np.concatenate(cos)
        self.assertLess(float(np.median(cos)), 0.99)  # other weights, other embeddings
        self.assertEqual(self.stats["detections"], len(cos))
        self.assertEqual(self.stats["stored_detections"], len(cos))
        manifest = IndexManifest.load(self.adapted)
        index = IndexManifest.load(self.index_dir)
        self.assertEqual(manifest.model, model_fingerprint(self.adapted_cfg))
        self.assertNotEqual(manifest.model["weights_sha256"], index.model["weights_sha256"])
        record = manifest.reembedded_from
        self.assertEqual(record["index"], os.path.realpath(self.index_dir))
        self.assertEqual(record["config_sha256"], index.model["config_sha256"])
        self.assertEqual(record["weights_sha256"], index.model["weights_sha256"])
        self.assertTrue(record["time"])
        self.assertEqual(manifest.variant, {"embed_boxes": "final", "precision": "fp32"})
        self.assertEqual((manifest.fps, manifest.score_thresh), (index.fps, index.score_thresh))
        self.assertFalse(os.path.exists(os.path.join(self.adapted, STATE)))
        # tracks: both videos, with the index's settings, every video detection in one track
        sets, embs = _tracks(self.adapted)
        self.assertEqual(len(sets), 2)
        self.assertEqual(TrackSettings.load(os.path.join(self.adapted, "tracks")), OPEN)
        ids = [d for tracks in sets.values() for track in tracks for d in track]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(ids), 2 * 8 * 3)
        old_embs = _tracks(self.index_dir)[1]
        changed = [
            embs[s].shape != old_embs[s].shape or not np.allclose(embs[s], old_embs[s])
            for s in embs
        ]
        self.assertTrue(any(changed))  # the tracks' mean embeddings are the new model's
        self.assert_index_untouched()

    def test_searcher_and_service_serve_the_new_index(self):
        from fastapi.testclient import TestClient

        from ian_d2.search.serve import create_app

        searcher = GallerySearcher(self.adapted, model=self.adapted_model)
        self.assertEqual(searcher.cfg.MODEL.WEIGHTS, os.path.abspath(self.adapted_weights))
        t = pq.read_table(list_shards(self.adapted)[-1]).to_pydict()
        row = t["frame"].index(-1)  # a still image's detection
        box = [t[k][row] for k in ("x1", "y1", "x2", "y2")]
        top = searcher.query(t["source"][row], box, top_k=3)["matches"][0]
        np.testing.assert_allclose(top["box"], box, atol=0.01)
        self.assertGreater(top["similarity"], 0.999)
        app = create_app(self.adapted, model=self.adapted_model, start_jobs=False)
        try:
            client = TestClient(app)
            det = f"{os.path.splitext(os.path.basename(list_shards(self.adapted)[0]))[0]}.4"
            r = client.post("/api/search", json={"query": {"detection_id": det}, "top_k": 3})
            self.assertEqual(r.status_code, 200, r.text)
            hit = r.json()["hits"][0]
            self.assertEqual(hit["detection_id"], det)
            self.assertAlmostEqual(hit["similarity"], 1.0, places=5)
        finally:
            app.state.ctx.jobs.close()

    def test_other_detector_refused_unless_redetect(self):
        out = os.path.join(self.tmp, "other")
        for opts, words in (
            (("INPUT.MIN_SIZE_TEST", 128), "INPUT.MIN_SIZE_TEST: 128 \\(the index: 96\\)"),
            (("MODEL.RESNETS.DEPTH", 34), "MODEL.RESNETS.DEPTH: 34 \\(the index: 18\\)"),
            (("MODEL.REID.EMBED_DIM", 128), "embedding size 128 \\(the index: 256\\)"),
        ):
            cfg = make_cfg(self.weights, *OPTS, *opts)
            with self.assertRaisesRegex(ValueError, words + ".*--redetect"):
                self.reembed(cfg, out)
            self.assertFalse(os.path.exists(out))
        # identity-embedding and training-only keys may differ
        cfg = make_cfg(self.weights, *OPTS, "MODEL.REID.LOSS_WEIGHT", 0.5,
                       "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100)  # fmt: skip
        self.reembed(cfg, os.path.join(self.tmp, "reid_keys"))
        # --redetect: the footage indexed again, with the index's settings
        cfg = make_cfg(self.weights, *OPTS, "INPUT.MIN_SIZE_TEST", 128)
        self.reembed(cfg, out, redetect=True, num_workers=0, model=None)
        manifest = IndexManifest.load(out)
        self.assertEqual(manifest.model, model_fingerprint(cfg))
        self.assertTrue(manifest.reembedded_from["redetect"])
        self.assertEqual(manifest.fps, 2.5)
        items = sorted(i for _, _, m in _shards(out).values() for i in json.loads(m))
        index_items = sorted(
            i for _, _, m in _shards(self.index_dir).values() for i in json.loads(m)
        )
        self.assertEqual([i[:3] for i in items], [i[:3] for i in index_items])
        self.assertEqual(TrackSettings.load(os.path.join(out, "tracks")), OPEN)
        self.assertEqual(len(read_track_files(out)), 2)
        self.assert_index_untouched()

    def test_bad_input_writes_nothing(self):
        out = os.path.join(self.tmp, "bad")
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty, exist_ok=True)
        cases = [
            (self.cfg, empty, out, "'.*empty' is not a search index"),
            (self.cfg, self.index_dir, self.index_dir, "is the index itself"),
            (self.cfg, self.index_dir, os.path.join(self.index_dir, "new"), "inside the index"),
            (make_cfg(os.path.join(self.tmp, "nowhere.pth")), self.index_dir, out,
             "MODEL.WEIGHTS '.*nowhere.pth' does not exist"),
        ]  # fmt: skip
        for cfg, index, new, words in cases:
            with self.assertRaisesRegex(ValueError, words):
                reembed_index(cfg, index, new, model=self.model)
            self.assertFalse(os.path.exists(out))
            self.assertFalse(os.path.exists(os.path.join(self.index_dir, "new")))
        self.assert_index_untouched()

    def test_missing_footage_refused(self):
        tmp = os.path.join(self.tmp, "moved")
        footage = os.path.join(tmp, "footage")
        os.makedirs(footage)
        for name in sorted(os.listdir(self.photos))[:3]:
            shutil.copy(os.path.join(self.photos, name), footage)
        index = os.path.join(tmp, "index")
        index_gallery(self.cfg, [footage], index, score_thresh=0.0, model=self.model,
                      num_workers=0, progress=False)  # fmt: skip
        first = sorted(os.listdir(footage))[0]
        shutil.move(footage, footage + "_elsewhere")
        out = os.path.join(tmp, "new")
        words = f"3 of the 3 source files .* the first: '{os.path.join(footage, first)}'.*move"
        with self.assertRaisesRegex(ValueError, words):
            reembed_index(self.cfg, index, out, model=self.model)
        self.assertFalse(os.path.exists(out))

    def test_interrupted_run_resumes_to_the_same_index(self):
        from ian_d2.search import reembed as module

        out = os.path.join(self.tmp, "resumed")
        real, calls = module.write_reembedded_shard, []

        def crash_on_third(src, dst, emb):  # killed while writing the third shard
            calls.append(src)
            if len(calls) == 3:
                with open(dst + ".tmp.999999", "wb") as f:
                    f.write(b"half a shard")
                raise Interrupt()
            real(src, dst, emb)

        with mock.patch.object(module, "write_reembedded_shard", crash_on_third):
            with self.assertRaises(Interrupt):
                self.reembed(self.adapted_cfg, out, model=self.adapted_model)
        self.assertEqual(len(list_shards(out)), 2)
        self.assertTrue(os.path.isfile(os.path.join(out, STATE)))
        with self.assertRaisesRegex(ValueError, "not a search index"):
            IndexManifest.load(out)  # an unfinished NEW is never taken as an index
        committed = {p: open(p, "rb").read() for p in list_shards(out)}
        # another model (or index) is refused, naming both
        with self.assertRaisesRegex(ValueError, "holds a re-embedding of .*adapted.pth.*not of "
                                    ".*model.pth"):  # fmt: skip
            self.reembed(self.cfg, out)
        # the same command again (through the command line) finishes it
        stats = search_main(["reembed", self.index_dir, "--out", out, "--config-file",
                             config_file(), *map(str, SMALL_OPTS), *map(str, OPTS),
                             "MODEL.WEIGHTS", self.adapted_weights])  # fmt: skip
        self.assertEqual(stats["skipped_shards"], 2)
        self.assertEqual(stats["reembedded_shards"], len(list_shards(self.index_dir)) - 2)
        for p, data in committed.items():
            self.assertEqual(open(p, "rb").read(), data)  # committed shards not redone
        self.assertEqual(glob.glob(os.path.join(out, "shards", "*.tmp.*")), [])
        resumed, full = _shards(out), _shards(self.adapted)
        self.assertEqual(sorted(resumed), sorted(full))
        for name in full:
            self.assertEqual(resumed[name][0], full[name][0])
            np.testing.assert_allclose(resumed[name][1], full[name][1], atol=1e-5)
        self.assertEqual(_tracks(out)[0], _tracks(self.adapted)[0])
        self.assertEqual(IndexManifest.load(out).model, IndexManifest.load(self.adapted).model)
        again = self.reembed(self.adapted_cfg, out, model=self.adapted_model)
        self.assertEqual(again["reembedded_shards"], 0)  # finished: nothing to do
        self.assert_index_untouched()


if __name__ == "__main__":
    unittest.main()
