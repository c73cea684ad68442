"""Saved predictions -> ``python -m ian_d2.evaluation.rescore`` gives the evaluator's numbers."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from ian_d2.data import register_person_search_dataset
from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw
from ian_d2.evaluation import PREDICTIONS_FILE, PersonSearchEvaluator, load_predictions
from ian_d2.evaluation.rescore import main
from tests.synthetic_testing import unregister

EMBED_DIM = 32
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def noisy_outputs(records, seed=0):
    """A mediocre model: GT boxes with random scores (a third dropped), one-hot embeddings of the
    person id plus noise (unlabeled persons: random)."""
    rng = np.random.default_rng(seed)
    pids = sorted({a["person_id"] for r in records for a in r["annotations"]} - {-1})
    dim = {p: i for i, p in enumerate(pids)}
    outs = []
    for r in records:
        annos = r["annotations"]
        emb = rng.normal(scale=0.4, size=(len(annos), EMBED_DIM)).astype(np.float32)
        for k, a in enumerate(annos):
            if a["person_id"] >= 0:
                emb[k, dim[a["person_id"]]] += 1.0
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        boxes = np.asarray([a["bbox"] for a in annos], np.float32).reshape(-1, 4)
        scores = np.ones(len(annos), np.float32)
        keep = np.ones(len(annos), bool)
        if "query_index" not in r:
            scores = rng.uniform(0.2, 1.0, size=len(annos)).astype(np.float32)
            keep = rng.uniform(size=len(annos)) > 0.33
        inst = Instances((r["height"], r["width"]))
        inst.pred_boxes = Boxes(torch.from_numpy(boxes[keep]))
        inst.scores = torch.from_numpy(scores[keep])
        inst.pred_embeds = torch.from_numpy(emb[keep])
        outs.append({"instances": inst})
    return outs


def run_main(argv):
    """main(argv) in-process: (exit status, parsed stdout JSON or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    text = out.getvalue()
    return rc, (json.loads(text) if rc == 0 else None), err.getvalue()


class _RescoreCase(unittest.TestCase):
    family = None

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        full = os.path.join(cls._tmp.name, "full")
        (generate_cuhk_sysu if cls.family == "cuhk_sysu" else generate_prw)(
            full, size="tiny", seed=0
        )
        # The rescore root has the annotation files only (no image).
        cls.root = os.path.join(cls._tmp.name, "annotations_only")
        image_dir = "Image" if cls.family == "cuhk_sysu" else "frames"
        shutil.copytree(full, cls.root, ignore=lambda d, names: [image_dir] if d == full else [])
        cls.names = register_person_search_dataset(cls.family, f"_rs_{cls.family}", full)
        cls.dataset = cls.names["test"]
        cls.records = DatasetCatalog.get(cls.dataset)
        cls.outputs = noisy_outputs(cls.records)
        cls.out_dir = os.path.join(cls._tmp.name, "inference")
        cls.results = cls.evaluate()
        cls.pred_file = os.path.join(cls.out_dir, PREDICTIONS_FILE)

    @classmethod
    def evaluate(cls, output_dir=None, **kwargs):
        ev = PersonSearchEvaluator(cls.dataset, None, False, output_dir or cls.out_dir, **kwargs)
        ev.reset()
        ev.process(cls.records, cls.outputs)
        return ev.evaluate()

    @classmethod
    def tearDownClass(cls):
        unregister(cls.names)
        cls._tmp.cleanup()

    def rescore(self, *extra):
        rc, report, err = run_main(
            [self.pred_file, "--dataset-root", self.root, "--dataset", self.family, *extra]
        )
        self.assertEqual(rc, 0, err)
        return report


class TestRescoreCuhkSysu(_RescoreCase):
    family = "cuhk_sysu"

    def test_same_numbers_as_evaluator(self):
        self.assertFalse(os.path.isdir(os.path.join(self.root, "Image")))
        report = self.rescore()
        self.assertEqual(report["results"], json.loads(json.dumps(self.results)))
        self.assertEqual(
            list(report["results"]),
            ["search", "search_g10", "search_full", "search_occlusion", "search_resolution"]
            + ["detection", "detection_labeled"],
        )
        self.assertLess(report["results"]["search"]["mAP"], 100.0)
        self.assertEqual(report["settings"]["search"]["gallery_size"], 5)

    def test_single_gallery_size_uses_evaluator_keys(self):
        report = self.rescore("--gallery-size", "10")
        self.assertEqual(list(report["results"]), ["search_g10", "detection", "detection_labeled"])
        self.assertEqual(report["results"]["search_g10"], self.results["search_g10"])
        report = self.rescore("--gallery-size", "-1")
        self.assertEqual(list(report["results"]), ["search_full", "detection", "detection_labeled"])
        self.assertEqual(report["results"]["search_full"], self.results["search_full"])

    def test_thresholds_and_duplicates(self):
        with tempfile.TemporaryDirectory() as out:
            expected = self.evaluate(out, det_thresh=0.8, duplicates="per_entry")
        report = self.rescore("--det-thresh", "0.8", "--duplicates", "per_entry")
        self.assertEqual(report["results"], expected)
        self.assertEqual(report["settings"]["search"]["det_thresh"], 0.8)
        self.assertEqual(report["settings"]["search"]["duplicates"], "per_entry")
        self.assertNotEqual(report["results"]["search"], self.results["search"])

    def test_subprocess(self):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            [sys.executable, "-m", "ian_d2.evaluation.rescore", self.pred_file]
            + ["--dataset-root", self.root, "--dataset", "cuhk_sysu"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["results"], self.results)

    def test_errors(self):
        rc, _, err = run_main([self.pred_file, "--dataset-root", self.root, "--dataset", "prw"])
        self.assertEqual(rc, 1)
        self.assertIn("cuhk_sysu", err)
        missing = os.path.join(self._tmp.name, "nope.npz")
        rc, _, err = run_main([missing, "--dataset-root", self.root, "--dataset", "cuhk_sysu"])
        self.assertEqual(rc, 1)
        self.assertIn("does not exist", err)
        garbage = os.path.join(self._tmp.name, "garbage.npz")
        with open(garbage, "wb") as f:
            f.write(b"not a zip file")
        rc, _, err = run_main([garbage, "--dataset-root", self.root, "--dataset", "cuhk_sysu"])
        self.assertEqual(rc, 1)
        self.assertIn("not a readable", err)
        rc, _, err = run_main(
            [self.pred_file, "--dataset-root", self._tmp.name, "--dataset", "cuhk_sysu"]
        )
        self.assertEqual(rc, 1)
        rc, _, err = run_main(
            [self.pred_file, "--dataset-root", self.root, "--dataset", "cuhk_sysu"]
            + ["--gallery-size", "77"]
        )
        self.assertEqual(rc, 1)
        self.assertIn("77", err)

    def test_wrong_version_and_missing_key(self):
        data = dict(np.load(self.pred_file))
        bad = os.path.join(self._tmp.name, "v99.npz")
        np.savez(bad, **dict(data, format_version=np.asarray(99)))
        with self.assertRaisesRegex(ValueError, "version 99"):
            load_predictions(bad)
        del data["query_embeddings"]
        np.savez(bad, **data)
        with self.assertRaisesRegex(ValueError, "query_embeddings"):
            load_predictions(bad)


class TestRescorePrw(_RescoreCase):
    family = "prw"

    def test_same_numbers_as_evaluator(self):
        self.assertFalse(os.path.isdir(os.path.join(self.root, "frames")))
        report = self.rescore()
        self.assertEqual(
            list(report["results"]),
            ["search", "search_multiview", "detection", "detection_labeled"],
        )
        self.assertEqual(report["results"], self.results)
        settings = report["settings"]
        self.assertLess(
            settings["search_multiview"]["gallery_entries"], settings["search"]["gallery_entries"]
        )

    def test_multi_view_flags(self):
        report = self.rescore("--multi-view")
        self.assertEqual(
            list(report["results"]), ["search_multiview", "detection", "detection_labeled"]
        )
        self.assertEqual(report["results"]["search_multiview"], self.results["search_multiview"])
        report = self.rescore("--all-camera")
        self.assertEqual(list(report["results"]), ["search", "detection", "detection_labeled"])
        self.assertEqual(report["results"]["search"], self.results["search"])

    def test_cuhk_option_rejected(self):
        rc, _, err = run_main(
            [self.pred_file, "--dataset-root", self.root, "--dataset", "prw", "--gallery-size", "5"]
        )
        self.assertEqual(rc, 1)
        self.assertIn("CUHK-SYSU only", err)


if __name__ == "__main__":
    unittest.main()
