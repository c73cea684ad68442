"""Exported models (TorchScript, ONNX) against the eager model, on the tiny synthetic gallery.

The model is a randomly initialised small IAN (R-18-GN at 96x128, score threshold 0, 8
detections per image) saved as a checkpoint and exported once per class with
``python -m ian_d2.export`` (both formats). Parity, image by image through the runtime's own
pre- and post-processing: every eager detection has an exported one with IoU >= 0.99, scores
within 1e-3, embeddings with cosine >= 0.999, the same number of detections, query embeddings
with cosine >= 0.999 and the same top-5 ranking of the gallery for each query.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ian_d2.export import runtime as rt
from ian_d2.export.__main__ import main as export_main
from ian_d2.export.exporter import ExportError, check_exportable, export_model
from ian_d2.export.parity import compare_detections, same_ranking, top_k_ranking
from ian_d2.modeling import extract_query_embeddings
from ian_d2.modeling.reid_head import REID_HEAD_REGISTRY, ReIDEmbeddingHead
from ian_d2.search.indexer import ImageToInput, load_search_model
from tests.repo_scripts import QUICK_CONFIG
from tests.search_testing import SMALL_OPTS, make_cfg, save_model

FORMATS = ("torchscript", "onnx")
N_IMAGES = 6
# Queries: (gallery image index, box in the original 400x300 image).
QUERIES = [(0, [120.0, 60.0, 170.0, 210.0]), (3, [250.0, 80.0, 300.0, 260.0])]


@REID_HEAD_REGISTRY.register()
class _ExportTestUntraceableHead(ReIDEmbeddingHead):
    """An embedding head whose output order depends on tensor values turned into a Python
    list: tracing freezes that list, so the export is wrong on other inputs."""

    def forward(self, x):
        y = super().forward(x)
        order = x.sum(dim=1).argsort().tolist()  # a Python list from a tensor: frozen by tracing
        return F.normalize(y[order], dim=1)


def _eager_detections(model, to_input, image):
    with torch.no_grad():
        inst = model([to_input(image)])[0]["instances"]
    return {
        "boxes": inst.pred_boxes.tensor.numpy(),
        "scores": inst.scores.numpy(),
        "embeddings": inst.pred_embeds.numpy(),
    }


def _eager_embed(model, to_input, image, boxes):
    with torch.no_grad():
        emb = extract_query_embeddings(model, [to_input(image)], [np.asarray(boxes, np.float32)])
    return emb.numpy()


@pytest.mark.slow  # the shared export of both formats with its check: ~35 s
@pytest.mark.synthetic_cuhk_sysu
class TestExportParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        cls.model = load_search_model(cls.cfg)
        cls.to_input = ImageToInput(cls.cfg)
        cls.out = os.path.join(tmp, "exported")
        cls.export_manifest = export_main(
            ["--format", *FORMATS, "--config-file", QUICK_CONFIG, "--output", cls.out]
            + [str(v) for v in SMALL_OPTS]
            + ["MODEL.WEIGHTS", cls.weights]
        )
        paths = sorted(glob.glob(os.path.join(cls.synthetic.images, "*.jpg")))[:N_IMAGES]
        cls.paths = paths
        cls.images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
        cls.eager = [_eager_detections(cls.model, cls.to_input, im) for im in cls.images]
        cls.eager_queries = [
            _eager_embed(cls.model, cls.to_input, cls.images[i], [box])[0] for i, box in QUERIES
        ]
        cls.runtimes = {f: rt.PersonSearchModel(cls.out, f) for f in FORMATS}

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_files_and_manifest(self):
        names = sorted(os.listdir(self.out))
        self.assertEqual(
            names,
            sorted(
                ["gallery.onnx", "gallery.ts", "query.onnx", "query.ts", "runtime.py"]
                + [rt.MANIFEST_NAME]
            ),
        )
        m = rt.read_manifest(self.out)
        self.assertEqual(m["format_version"], rt.FORMAT_VERSION)
        self.assertEqual(m["input"]["format"], "BGR")
        self.assertEqual((m["input"]["min_size_test"], m["input"]["max_size_test"]), (96, 128))
        self.assertEqual(m["embed_dim"], 256)
        self.assertEqual(m["gallery"]["detections_per_image"], 8)
        self.assertEqual(m["gallery"]["rpn"]["post_nms_topk"], 20)
        self.assertEqual(m["model"]["weights"], os.path.abspath(self.weights))
        # the export checked itself on two image shapes, for both formats
        for fmt in FORMATS:
            self.assertEqual(len(self.export_manifest["checks"][fmt]), 2)

    def test_gallery_parity(self):
        for fmt in FORMATS:
            for i, image in enumerate(self.images):
                with self.subTest(fmt=fmt, image=i):
                    out = self.runtimes[fmt].detect(image)
                    stats = compare_detections(self.eager[i], out)
                    self.assertEqual(stats["n_ref"], 8)
                    self.assertEqual(stats["n_out"], stats["n_ref"])
                    self.assertGreaterEqual(stats["min_iou"], 0.99)
                    self.assertLessEqual(stats["max_score_diff"], 1e-3)
                    self.assertGreaterEqual(stats["min_cosine"], 0.999)

    def test_query_parity_and_top5_ranking(self):
        eager_rank = [top_k_ranking(q, self.eager, 5) for q in self.eager_queries]
        for fmt in FORMATS:
            model = self.runtimes[fmt]
            gallery = [model.detect(im) for im in self.images]
            for (i, box), q_ref, r_ref in zip(QUERIES, self.eager_queries, eager_rank):
                with self.subTest(fmt=fmt, query=i):
                    q = model.embed(self.images[i], [box])
                    self.assertEqual(q.shape, (1, 256))
                    self.assertGreaterEqual(float(q[0] @ q_ref), 0.999)
                    self.assertTrue(same_ranking(top_k_ranking(q[0], gallery, 5), r_ref))
            # several boxes at once, and none
            boxes = [b for _, b in QUERIES]
            both = model.embed(self.images[0], boxes)
            ref = _eager_embed(self.model, self.to_input, self.images[0], boxes)
            np.testing.assert_allclose((both * ref).sum(1), 1.0, atol=1e-3)
            self.assertEqual(model.embed(self.images[0], np.zeros((0, 4))).shape, (0, 256))

    @pytest.mark.slow
    def test_runtime_runs_without_detectron2_and_ian_d2(self):
        """The export folder alone (runtime.py beside the model files) in a fresh interpreter
        where detectron2 and ian_d2 cannot be imported (and, for ONNX, torch neither)."""
        folder = os.path.join(self._tmp.name, "deployed")
        shutil.copytree(self.out, folder)
        image = self.paths[1]
        expected = os.path.join(self._tmp.name, "expected.npz")
        np.savez(expected, **self.eager[1])
        for fmt in FORMATS:
            blocked = ["detectron2", "ian_d2"] + (["torch"] if fmt == "onnx" else [])
            code = f"""
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # import raises ImportError
import numpy as np
from PIL import Image
import runtime
model = runtime.PersonSearchModel({folder!r}, {fmt!r})
img = np.asarray(Image.open({image!r}).convert("RGB"))
det = model.detect(img, color="RGB")
ref = np.load({expected!r})
print(json.dumps({{"n": len(det["scores"]), "n_ref": len(ref["scores"]), "backend": model.backend,
    "modules": sorted(m for m in ("detectron2", "ian_d2", "torch") if sys.modules.get(m))}}))
assert not any(m.startswith(("detectron2.", "ian_d2.")) for m in sys.modules)
"""
            with self.subTest(fmt=fmt):
                res = subprocess.run(
                    [sys.executable, "-c", code],
                    capture_output=True,
                    text=True,
                    cwd=folder,  # `python -c` puts the working folder first: `import runtime`
                    timeout=300,
                )
                self.assertEqual(res.returncode, 0, res.stderr[-3000:])
                out = json.loads(res.stdout.strip().splitlines()[-1])
                self.assertEqual(out["n"], out["n_ref"])
                self.assertEqual(out["backend"], fmt)
                self.assertEqual(out["modules"], [] if fmt == "onnx" else ["torch"])
                self.assertNotIn("detectron2", res.stderr)
        # the runtime's command line, from the copied folder
        res = subprocess.run(
            [sys.executable, os.path.join(folder, "runtime.py"), folder, image, "--backend", "onnx",
             "--box", "120", "60", "170", "210"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        self.assertEqual(res.returncode, 0, res.stderr[-3000:])
        emb = np.asarray(json.loads(res.stdout)["embeddings"])
        self.assertEqual(emb.shape, (1, 256))
        # the runtime's CLI reads the JPEG with Pillow, the eager model's reader is OpenCV
        ref = _eager_embed(self.model, self.to_input, self.images[1], [[120, 60, 170, 210]])
        self.assertGreaterEqual(float(emb[0] @ ref[0]), 0.99)

    def test_refuses_other_versions_and_other_exports(self):
        folder = os.path.join(self._tmp.name, "tampered")
        shutil.copytree(self.out, folder)
        path = os.path.join(folder, rt.MANIFEST_NAME)
        with open(path) as f:
            good = json.load(f)

        def write(m):
            with open(path, "w") as f:
                json.dump(m, f)

        write(dict(good, format_version=rt.FORMAT_VERSION + 1, ian_d2_version="9.9"))
        with self.assertRaisesRegex(rt.ExportedModelError, r"format version 2 .*ian_d2 9\.9"):
            rt.PersonSearchModel(folder, "onnx")
        write(dict(good, format="something_else"))
        with self.assertRaisesRegex(rt.ExportedModelError, "not an ian_d2 export manifest"):
            rt.PersonSearchModel(folder, "onnx")
        write(good)
        with self.assertRaisesRegex(rt.ExportedModelError, "holds no onnx model"):
            m = dict(good, models={"torchscript": good["models"]["torchscript"]})
            write(m)
            rt.PersonSearchModel(folder, "onnx")
        write(good)
        # a model file whose own metadata says another format version, checksum updated
        import onnx

        onnx_path = os.path.join(folder, "gallery.onnx")
        proto = onnx.load(onnx_path)
        meta = json.loads(proto.metadata_props[0].value)
        proto.metadata_props[0].value = json.dumps(dict(meta, format_version=0))
        onnx.save(proto, onnx_path)
        with self.assertRaisesRegex(rt.ExportedModelError, "not the file this export wrote"):
            rt.PersonSearchModel(folder, "onnx")
        m = json.loads(json.dumps(good))
        m["models"]["onnx"]["gallery"]["sha256"] = rt._sha256(onnx_path)
        write(m)
        with self.assertRaisesRegex(
            rt.ExportedModelError, "gallery.onnx' has export format version 0"
        ):
            rt.PersonSearchModel(folder, "onnx")
        # the query file of this export in place of the gallery file: another role
        shutil.copyfile(os.path.join(folder, "query.onnx"), onnx_path)
        m["models"]["onnx"]["gallery"]["sha256"] = rt._sha256(onnx_path)
        write(m)
        with self.assertRaisesRegex(rt.ExportedModelError, "not the gallery model of this export"):
            rt.PersonSearchModel(folder, "onnx")
        with self.assertRaisesRegex(rt.ExportedModelError, "no ian_d2_export.json"):
            rt.PersonSearchModel(self._tmp.name)


class TestExportRefusals(unittest.TestCase):
    def test_unexportable_configs_name_the_feature(self):
        cases = [
            (["MODEL.RESNETS.DEFORM_ON_PER_STAGE", [False, False, True, False]],
             "DEFORM_ON_PER_STAGE: deformable convolution"),
            (["TEST.AUG.ENABLED", True], "TEST.AUG.ENABLED: test-time augmentation"),
            (["MODEL.META_ARCHITECTURE", "CropClassifier"], "CropClassifier has no detector"),
            (["MODEL.ROI_HEADS.NAME", "Res5ROIHeads"], "need PersonSearchROIHeads"),
            (["MODEL.LOAD_PROPOSALS", True], "precomputed proposals"),
        ]  # fmt: skip
        for opts, message in cases:
            with self.subTest(opts=opts[0]):
                with self.assertRaisesRegex(ExportError, message):
                    check_exportable(make_cfg("", *opts))
        with self.assertRaisesRegex(ExportError, "unknown export format 'tflite'"):
            export_model(make_cfg(""), tempfile.mkdtemp(), ["tflite"])

    def test_a_part_that_does_not_trace_is_named(self):
        """A head with Python control flow on tensor values exports, but the check against the
        eager model fails, naming the tracer's warning at the head's source line."""
        cfg = make_cfg("", "MODEL.REID.HEAD_NAME", "_ExportTestUntraceableHead")
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as out:
            with self.assertRaises(ExportError) as ctx:
                export_model(cfg, out, ["torchscript"])
        message = str(ctx.exception)
        self.assertIn("torchscript", message)
        self.assertIn("does not trace", message)
        self.assertIn("test_export.py", message)  # the tracer warning at the head's line


@pytest.mark.synthetic_cuhk_sysu
class TestIndexWithExportedModel(unittest.TestCase):
    """``python -m ian_d2.search index --backend onnx``: a process where Detectron2 cannot be
    imported builds the index; it stores the eager model's detections, and the eager searcher
    queries it (the exported model carries the eager model's fingerprint)."""

    @pytest.mark.slow
    def test_onnx_backend_index_without_detectron2(self):
        from ian_d2.search import GallerySearcher, index_gallery
        from ian_d2.search.store import read_embeddings, read_table, list_shards

        with tempfile.TemporaryDirectory() as tmp:
            weights = save_model(os.path.join(tmp, "model.pth"))
            cfg = make_cfg(weights)
            model = load_search_model(cfg)
            exported = os.path.join(tmp, "exported")
            export_model(cfg, exported, ["onnx"], model=model, verify=False)
            images = sorted(glob.glob(os.path.join(self.synthetic.images, "*.jpg")))[:5]
            onnx_index, eager_index = os.path.join(tmp, "onnx_index"), os.path.join(tmp, "eager")
            code = (
                "import sys; sys.modules['detectron2'] = None\n"
                "from ian_d2.search.cli import main\n"
                f"main(['index', '--backend', 'onnx', '--exported-model', {exported!r}, "
                f"'--gallery', *{images!r}, '--out', {onnx_index!r}, '--score-thresh', '0', "
                "'--num-workers', '0'])\n"
                "assert not any(m.startswith('detectron2') and sys.modules[m] is not None "
                "for m in sys.modules)\n"
            )
            res = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
            )
            self.assertEqual(res.returncode, 0, res.stderr[-3000:])
            index_gallery(
                cfg, images, eager_index, score_thresh=0.0, model=model, num_workers=0,
                progress=False,
            )  # fmt: skip
            tables = [read_table(list_shards(d)).to_pydict() for d in (onnx_index, eager_index)]
            self.assertEqual(tables[0]["source"], tables[1]["source"])  # same detections per image
            for k in ("x1", "y1", "x2", "y2"):
                np.testing.assert_allclose(tables[0][k], tables[1][k], atol=0.05)
            np.testing.assert_allclose(tables[0]["score"], tables[1]["score"], atol=1e-3)
            emb = [read_embeddings(list_shards(d), 256) for d in (onnx_index, eager_index)]
            self.assertGreaterEqual(float((emb[0] * emb[1]).sum(1).min()), 0.999)
            # the eager searcher opens the ONNX-built index (same model fingerprint)
            searcher = GallerySearcher(onnx_index, model=model)
            t = tables[0]
            box = [t[k][3] for k in ("x1", "y1", "x2", "y2")]
            top = searcher.query(t["source"][3], box, top_k=1)["matches"][0]
            np.testing.assert_allclose(top["box"], box, atol=0.01)
            self.assertGreater(top["similarity"], 0.999)
            # bad combinations of options
            from ian_d2.search.cli import main as search_main

            for argv, message in (
                (["--backend", "onnx"], "needs --exported-model"),
                (["--backend", "onnx", "--exported-model", exported, "--config-file", "x.yaml"],
                 "no --config-file"),
                (["--exported-model", exported], "needs --config-file"),
            ):  # fmt: skip
                with self.subTest(argv=argv), self.assertRaisesRegex(ValueError, message):
                    search_main(["index", *argv, "--gallery", images[0], "--out", tmp + "/x"])


class TestBf16Export(unittest.TestCase):
    @pytest.mark.slow
    def test_bf16_trunks_torchscript(self):
        """``--precision bf16``: the convolution trunks in bfloat16; the export reproduces the
        eager model converted the same way, and stays close to float32."""
        from ian_d2.export.exporter import bf16_trunks, gallery_inference

        cfg = make_cfg("")
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as out:
            with self.assertRaisesRegex(ExportError, "bf16 is a TorchScript option"):
                export_model(cfg, out, ["onnx"], precision="bf16")
            # forced: the export itself is tested on any CPU, native bfloat16 or not
            manifest = export_model(
                cfg, out, ["torchscript"], precision="bf16", force_precision=True
            )
            self.assertEqual(manifest["precision"], "bf16")
            for report in manifest["checks"]["torchscript"]:  # against the bf16 eager model
                self.assertEqual(report["n_unmatched"], 0)
                self.assertLessEqual(report["max_score_diff"], 1e-3)
            runtime = rt.PersonSearchModel(out, "torchscript")
            image = (np.random.RandomState(0).rand(150, 200, 3) * 255).astype(np.uint8)
            det = runtime.detect(image)
            self.assertEqual(det["embeddings"].dtype, np.float32)
            self.assertEqual(det["embeddings"].shape[1], 256)
            # the bf16 model itself: the trunks' weights are bfloat16, the heads float32
            from ian_d2.export.exporter import load_export_model

            fp32 = load_export_model(cfg)
            half = bf16_trunks(fp32)
            self.assertEqual(half.backbone.stem.conv1.weight.dtype, torch.bfloat16)
            self.assertEqual(half.roi_heads.box_predictor.cls_score.weight.dtype, torch.float32)
            x = torch.rand(3, 96, 128) * 255
            with torch.no_grad():
                a, b = gallery_inference(fp32, x), gallery_inference(half, x)
            self.assertEqual(b[2].dtype, torch.float32)
            self.assertEqual(len(a[0]), len(b[0]))
