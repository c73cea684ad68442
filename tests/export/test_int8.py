"""``--precision int8``: ONNX Runtime static quantization of the ONNX export.

The small random model (R-18-GN at 96x128) is exported once with a calibration set of 4 images
of the tiny synthetic gallery; the int8 graphs are compared with the float32 eager model on
other gallery images within :data:`ian_d2.export.quantize.INT8_TOLERANCE`, indexed with the ONNX
backend, and the index refuses the float32 model's queries unless told otherwise. The refusals
of bad calibration sets need no export.
"""

import glob
import os
import tempfile
import unittest

import cv2
import numpy as np
import onnx
import pytest
import torch

from ian_d2.export import runtime as rt
from ian_d2.export.__main__ import main as export_main
from ian_d2.export.exporter import ExportError, export_model
from ian_d2.export.parity import match_detections
from ian_d2.export.quantize import INT8_TOLERANCE, calibration_images
from ian_d2.modeling import extract_query_embeddings
from ian_d2.search import GallerySearcher, IndexManifest, index_gallery
from ian_d2.search.indexer import ExportedBackend, ImageToInput, load_search_model
from ian_d2.search.serve.embedder import load_embedder
from tests.repo_scripts import QUICK_CONFIG
from tests.search_testing import SMALL_OPTS, make_cfg, save_model


# export + quantization + index: ~10 s; in the fast tier (issue 23 asks `make test` to run it)
@pytest.mark.synthetic_cuhk_sysu
class TestInt8Export(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights)
        paths = sorted(glob.glob(os.path.join(cls.synthetic.images, "*.jpg")))
        cls.calib, cls.check = paths[:4], paths[10:16]
        cls.list_file = os.path.join(tmp, "calibration.txt")
        with open(cls.list_file, "w") as f:
            f.write("\n".join(cls.calib) + "\n")
        cls.out = os.path.join(tmp, "int8")
        cls.manifest = export_main(
            ["--format", "onnx", "--precision", "int8", "--calibration-images", cls.list_file,
             "--config-file", QUICK_CONFIG, "--output", cls.out]
            + [str(v) for v in SMALL_OPTS] + ["MODEL.WEIGHTS", cls.weights]
        )  # fmt: skip
        cls.model = load_search_model(cls.cfg)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_manifest_records_the_calibration(self):
        m = self.manifest
        self.assertEqual(m["precision"], "int8")
        self.assertEqual(m["embed_boxes"], "proposals")
        cal = m["calibration"]
        self.assertEqual([x["path"] for x in cal["images"]], self.calib)
        self.assertTrue(all(len(x["sha256"]) == 64 for x in cal["images"]))
        self.assertEqual(cal["method"], "MinMax")
        self.assertEqual(cal["quantized_conv_nodes"], {"query": 25, "gallery": 26})
        for report in m["checks"]["onnx"]:  # the export's own check passed, and says so
            self.assertGreaterEqual(report["query_min_cosine"], INT8_TOLERANCE["query_min_cosine"])

    def test_what_is_quantized(self):
        """Backbone, RPN 3x3 and res5 convolutions run on int8 inputs; the RPN's 1x1 convs and
        the heads' Gemms stay float32."""
        for role in ("gallery", "query"):
            graph = onnx.load(os.path.join(self.out, f"{role}.onnx")).graph
            producer = {o: n for n in graph.node for o in n.output}
            init = {i.name for i in graph.initializer}

            def from_dq(node, k):
                src = producer.get(node.input[k])
                return src is not None and src.op_type == "DequantizeLinear"

            convs = [n for n in graph.node if n.op_type == "Conv"]
            gemms = [n for n in graph.node if n.op_type == "Gemm"]
            q = [n.name for n in convs if from_dq(n, 0) and from_dq(n, 1)]
            self.assertEqual(len(q), 26 if role == "gallery" else 25, role)
            self.assertTrue(all(any(s in n for s in ("/backbone/", "/res5/", "/rpn_head/conv/"))
                                for n in q))  # fmt: skip
            self.assertFalse(any(from_dq(n, 0) or from_dq(n, 1) for n in gemms))
            self.assertTrue(all(n.input[1] in init for n in gemms))  # float32 weights
            rpn_1x1 = [n for n in convs if "objectness" in n.name or "anchor_deltas" in n.name]
            self.assertEqual(len(rpn_1x1), 2 if role == "gallery" else 0)
            self.assertFalse(any(from_dq(n, 1) for n in rpn_1x1))

    def test_parity_within_int8_tolerance(self):
        runtime = rt.PersonSearchModel(self.out, "onnx")
        to_input = ImageToInput(self.cfg)
        t = INT8_TOLERANCE
        for path in self.check:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            with torch.no_grad():
                inst = self.model([to_input(image)])[0]["instances"]
                boxes = inst.pred_boxes.tensor.numpy()
                q_ref = extract_query_embeddings(self.model, [to_input(image)], [boxes[:3]])
            det = runtime.detect(image)
            j, iou = match_detections(boxes, det["boxes"])
            ok = iou >= t["match_iou"]
            self.assertGreaterEqual(ok.mean(), t["min_matched_fraction"], path)
            cos = (inst.pred_embeds.numpy()[ok] * det["embeddings"][j[ok]]).sum(1)
            self.assertGreaterEqual(np.median(cos), t["median_cosine"], path)
            q = runtime.embed(image, boxes[:3])
            self.assertGreaterEqual((q * q_ref.numpy()).sum(1).min(), t["query_min_cosine"])

    def test_index_and_serve_with_the_int8_export(self):
        index = os.path.join(self._tmp.name, "index")
        backend = ExportedBackend(self.out, "onnx")
        stats = index_gallery(None, self.check, index, backend=backend, score_thresh=0.0,
                              num_workers=0, progress=False, tracks=False)  # fmt: skip
        self.assertEqual(stats["items"], len(self.check))
        manifest = IndexManifest.load(index)
        self.assertEqual(manifest.variant, {"embed_boxes": "proposals", "precision": "int8"})
        # the int8 export serves its own index; the float32 model is refused unless allowed
        embedder = load_embedder(index, manifest, backend="onnx", exported_model=self.out)
        image = cv2.imread(self.check[0], cv2.IMREAD_COLOR)
        self.assertEqual(embedder.embed(image, np.array([[10.0, 10, 60, 150]])).shape, (1, 256))
        with self.assertRaisesRegex(ValueError, "precision 'fp32' vs 'int8'.*--allow-variant"):
            GallerySearcher(index, model=self.model)
        with self.assertRaisesRegex(ValueError, "precision 'fp32' vs 'int8'"):
            load_embedder(index, manifest, model=self.model)
        GallerySearcher(index, model=self.model, allow_variant_mismatch=True)


class TestInt8Refusals(unittest.TestCase):
    def test_bad_calibration_sets(self):
        with tempfile.TemporaryDirectory() as tmp:
            empty = os.path.join(tmp, "empty")
            os.makedirs(empty)
            with open(os.path.join(empty, "notes.txt"), "w") as f:
                f.write("no images here")
            video = os.path.join(tmp, "cam.avi")
            open(video, "wb").close()
            image = os.path.join(tmp, "a.jpg")
            cv2.imwrite(image, np.zeros((20, 20, 3), np.uint8))
            lists = {}
            for name, lines in (("empty", []), ("video", [video]), ("dir", [empty])):
                lists[name] = os.path.join(tmp, f"{name}.txt")
                with open(lists[name], "w") as f:
                    f.write("\n".join(lines))
            for source, count, message in (
                (empty, None, "holds no image"),
                (lists["empty"], None, "is empty"),
                (lists["video"], None, "'.*cam.avi' is not an image file"),
                (lists["dir"], None, "is not an image file"),
                (video, None, "is a file, not a folder or a .txt list"),
                (os.path.join(tmp, "nowhere"), None, "do not exist"),
                (tmp, 0, "at least 1 image"),
            ):
                with self.subTest(source=source), self.assertRaisesRegex(ExportError, message):
                    calibration_images(source, count)
            self.assertEqual(calibration_images(tmp), [image])

    def test_list_paths_resolved_and_missing_files_named(self):
        """A list's relative paths: from the list's folder, else (old lists, written relative
        to the working directory) from the working directory; a listed file that does not
        exist is named as missing, not as "not an image file"."""
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "data", "imgs"))
            os.makedirs(os.path.join(tmp, "work"))
            image = os.path.join(tmp, "data", "imgs", "s10.jpg")
            cv2.imwrite(image, np.zeros((8, 8, 3), np.uint8))
            lists = {
                "from_list": ("data/list.txt", "imgs/s10.jpg"),
                "from_cwd": ("work/list.txt", "data/imgs/s10.jpg"),  # bench_variants' old lists
                "missing": ("work/missing.txt", "data/imgs/s11.jpg"),
            }
            for name, (path, line) in lists.items():
                with open(os.path.join(tmp, path), "w") as f:
                    f.write(line + "\n")
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                self.assertEqual(calibration_images("data/list.txt"), [image])
                self.assertEqual(calibration_images("work/list.txt"), [image])
                with self.assertRaisesRegex(
                    ExportError, "listed file 'data/imgs/s11.jpg' does not exist .*work/data/imgs"
                ) as e:
                    calibration_images("work/missing.txt")
                self.assertNotIn("not an image file", str(e.exception))
            finally:
                os.chdir(cwd)
            absent = os.path.join(tmp, "list_abs.txt")
            with open(absent, "w") as f:
                f.write(os.path.join(tmp, "nowhere.jpg") + "\n")
            with self.assertRaisesRegex(ExportError, "listed file '.*nowhere.jpg' does not exist"):
                calibration_images(absent)

    def test_bad_options(self):
        cfg = make_cfg("")
        with tempfile.TemporaryDirectory() as out:
            for kwargs, message in (
                ({"formats": ["torchscript"]}, "int8 is an ONNX option"),
                ({"formats": ["onnx", "torchscript"]}, "int8 is an ONNX option"),
                ({"formats": ["onnx"]}, "needs --calibration-images"),
            ):
                with self.subTest(**kwargs), self.assertRaisesRegex(ExportError, message):
                    export_model(cfg, out, kwargs["formats"], precision="int8")
            with self.assertRaisesRegex(ExportError, "are int8 options"):
                export_model(cfg, out, ["onnx"], calibration_images=out)

    def test_folder_order_and_count_are_reproducible(self):
        with tempfile.TemporaryDirectory() as tmp:
            for sub in ("b", "a"):
                os.makedirs(os.path.join(tmp, sub))
                for i in range(5):
                    cv2.imwrite(os.path.join(tmp, sub, f"{i}.png"), np.zeros((4, 4, 3), np.uint8))
            every = calibration_images(tmp, 100)
            self.assertEqual(len(every), 10)
            self.assertEqual(every, sorted(every))  # a/0..4 then b/0..4
            self.assertEqual(calibration_images(tmp, 5), every[::2])
            self.assertEqual(calibration_images(tmp, 5), calibration_images(tmp, 5))
