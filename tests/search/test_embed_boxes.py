"""``MODEL.ROI_HEADS.EMBED_BOXES``: the box a stored detection's embedding is pooled on, and the
inference variant an index records and checks.

The small random model gets a box regression that moves every box (a constant offset on the
box deltas), so that a detection's final box differs from its proposal as with a trained model:
with "proposals" a stored detection queried with its own box is then clearly below similarity 1,
with "final" it is the same computation on the same box (>= 0.999).
"""

import glob
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ian_d2.search import GallerySearcher, IndexManifest, index_gallery
from ian_d2.search.sources import read_image
from ian_d2.search.store import list_shards
from tests.search_testing import make_cfg, save_model

# Raw box-regression outputs (dx, dy, dw, dh before the (10, 10, 5, 5) weights) every detection
# gets: boxes move by 0.4 / 0.3 of their size and grow by 1.5x / 1.35x.
DELTA_BIAS = (4.0, 3.0, 2.0, 1.5)


def _save_shifting_model(path: str) -> str:
    """The small random model with :data:`DELTA_BIAS` on its box regression, saved to ``path``."""
    from detectron2.checkpoint import DetectionCheckpointer

    from ian_d2.search.indexer import load_search_model

    save_model(path)
    model = load_search_model(make_cfg(path))
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.bias.copy_(torch.tensor(DELTA_BIAS))
    folder, name = os.path.split(path)
    DetectionCheckpointer(model, save_dir=folder).save(os.path.splitext(name)[0])
    return path


@pytest.mark.synthetic_cuhk_sysu
class TestEmbedBoxes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.images = sorted(glob.glob(os.path.join(cls.synthetic.images, "*.jpg")))[:6]
        cls.weights = _save_shifting_model(os.path.join(tmp, "model.pth"))
        cls.dirs = {}
        for mode in ("proposals", "final"):
            cfg = make_cfg(cls.weights, "MODEL.ROI_HEADS.EMBED_BOXES", mode)
            cls.dirs[mode] = os.path.join(tmp, mode)
            index_gallery(cfg, cls.images, cls.dirs[mode], score_thresh=0.0, num_workers=0,
                          progress=False, tracks=False)  # fmt: skip

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def _own_box_similarities(self, mode: str, rows=(0, 9, 21, 30)):
        """(similarity of each stored detection to a query of its own box, whether it ranks
        first)."""
        searcher = GallerySearcher(self.dirs[mode])
        t = pq.read_table(list_shards(self.dirs[mode])[0]).to_pydict()
        emb = np.asarray(t["embedding"], np.float32)
        sims, first = [], []
        for row in rows:
            box = [t[k][row] for k in ("x1", "y1", "x2", "y2")]
            q = searcher.embed(read_image(t["source"][row]), np.array([box]))[0]
            sims.append(float(emb[row] @ q))
            res = searcher.query(t["source"][row], box, top_k=1)
            first.append(np.allclose(res["matches"][0]["box"], box, atol=0.01))
        return np.array(sims), first

    def test_final_boxes_give_similarity_one(self):
        sims, first = self._own_box_similarities("final")
        self.assertGreaterEqual(sims.min(), 0.999, sims)
        self.assertTrue(all(first))

    def test_proposals_do_not(self):
        """The check above can fail: with the paper's proposals the regressed box that is stored
        and shown is not the box that was embedded."""
        sims, _ = self._own_box_similarities("proposals")
        self.assertLess(sims.min(), 0.995, sims)

    def test_manifest_records_the_variant(self):
        for mode in ("proposals", "final"):
            manifest = IndexManifest.load(self.dirs[mode])
            self.assertEqual(manifest.variant, {"embed_boxes": mode, "precision": "fp32"})
        # the fingerprint (config hash) is the same model's: only the variant differs
        a, b = (IndexManifest.load(self.dirs[m]).model for m in ("proposals", "final"))
        self.assertEqual(a["config_sha256"], b["config_sha256"])

    def test_other_variant_refused_unless_allowed(self):
        cfg = make_cfg(self.weights)  # proposals
        with self.assertRaisesRegex(ValueError, "embed_boxes 'proposals' vs 'final'.*--allow"):
            index_gallery(cfg, self.images, self.dirs["final"], append=True, progress=False)
        stats = index_gallery(cfg, self.images, self.dirs["final"], append=True, progress=False,
                              num_workers=0, tracks=False, allow_variant_mismatch=True)  # fmt: skip
        self.assertEqual(stats["items"], 0)  # everything was indexed already
        # an index of an int8 export: the float32 model's queries are refused unless allowed
        other = os.path.join(self._tmp.name, "int8_index")
        shutil.copytree(self.dirs["final"], other)
        path = os.path.join(other, "manifest.json")
        with open(path) as f:
            data = json.load(f)
        data["variant"]["precision"] = "int8"
        with open(path, "w") as f:
            json.dump(data, f)
        with self.assertRaisesRegex(ValueError, "precision 'fp32' vs 'int8'"):
            GallerySearcher(other)
        searcher = GallerySearcher(other, allow_variant_mismatch=True)
        self.assertEqual(searcher.cfg.MODEL.ROI_HEADS.EMBED_BOXES, "final")

    def test_index_without_variant_reads_as_the_default(self):
        """An index written before the record existed: proposals, fp32."""
        other = os.path.join(self._tmp.name, "old_index")
        shutil.copytree(self.dirs["proposals"], other)
        path = os.path.join(other, "manifest.json")
        with open(path) as f:
            data = json.load(f)
        del data["variant"]
        with open(path, "w") as f:
            json.dump(data, f)
        manifest = IndexManifest.load(other)
        self.assertEqual(manifest.variant, {"embed_boxes": "proposals", "precision": "fp32"})
        GallerySearcher(other)  # the eager fp32 proposals model: accepted


@pytest.mark.synthetic_cuhk_sysu
class TestEmbedBoxesExported(unittest.TestCase):
    def test_onnx_export_of_final_boxes(self):
        """The exported gallery graph pools on the final boxes too: an index built with it gives
        a stored detection's own box similarity >= 0.999 through the exported query graph."""
        from ian_d2.export import runtime as rt
        from ian_d2.export.exporter import export_model
        from ian_d2.search.indexer import ExportedBackend

        with tempfile.TemporaryDirectory() as tmp:
            weights = _save_shifting_model(os.path.join(tmp, "model.pth"))
            cfg = make_cfg(weights, "MODEL.ROI_HEADS.EMBED_BOXES", "final")
            out = os.path.join(tmp, "exported")
            manifest = export_model(cfg, out, ["onnx"])  # checked against the eager model
            self.assertEqual(manifest["embed_boxes"], "final")
            images = sorted(glob.glob(os.path.join(self.synthetic.images, "*.jpg")))[:3]
            index = os.path.join(tmp, "index")
            index_gallery(None, images, index, backend=ExportedBackend(out, "onnx"),
                          score_thresh=0.0, num_workers=0, progress=False, tracks=False)  # fmt: skip
            self.assertEqual(
                IndexManifest.load(index).variant, {"embed_boxes": "final", "precision": "fp32"}
            )
            t = pq.read_table(list_shards(index)[0]).to_pydict()
            runtime = rt.PersonSearchModel(out, "onnx")
            for row in (0, 5, 17):
                box = [t[k][row] for k in ("x1", "y1", "x2", "y2")]
                q = runtime.embed(read_image(t["source"][row]), [box])[0]
                self.assertGreaterEqual(float(np.asarray(t["embedding"][row]) @ q), 0.999)
            # the eager "proposals" model is another variant of this index
            with self.assertRaisesRegex(ValueError, "embed_boxes 'proposals' vs 'final'"):
                index_gallery(make_cfg(weights), images, index, append=True, progress=False)
