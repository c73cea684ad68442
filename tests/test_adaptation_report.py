"""The report of the target-site measurement (projects/adaptation/report.py) on made-up
per-query scores whose answers are known."""

import os
import tempfile
import unittest

import numpy as np

from projects.adaptation.report import build_report, plot_rounds, render_markdown


def _scores(name, ap, top1=None):
    q = len(ap)
    return {
        "name": name,
        "queries": {
            "query_index": list(range(q)),
            "ap": [float(v) for v in ap],
            "top1": [float(v) for v in (top1 if top1 is not None else np.round(ap))],
        },
        "detection": {"AP": 50.0},
    }


class TestAdaptationReport(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.direct = rng.uniform(0.1, 0.4, 300)
        self.oracle = self.direct + 0.4
        self.half = self.direct + 0.2  # closes half of the gap on every query

    def test_gap_closed_and_contrasts(self):
        report = build_report(
            _scores("direct", self.direct),
            [_scores(f"oracle_s{s}", self.oracle) for s in range(3)],
            {"both": [_scores(f"both_s{s}", self.half) for s in range(3)],
             "tracks": [_scores(f"tracks_s{s}", self.direct) for s in range(3)]},
        )  # fmt: skip
        self.assertEqual(report["queries"], 300)
        gap = report["gap_closed"]["both"]
        self.assertAlmostEqual(gap["mean"], 0.5, places=6)
        self.assertTrue(gap["ci"][0] <= 0.5 <= gap["ci"][1])
        self.assertAlmostEqual(report["gap_closed"]["tracks"]["mean"], 0.0, places=6)
        c = report["contrasts"]["mAP"]["adapted_both - direct"]
        self.assertAlmostEqual(c["mean"], 20.0, places=6)
        self.assertGreater(c["ci"][0], 0)  # every query gains: the interval excludes 0
        self.assertEqual(c["seeds_positive"], 3)
        self.assertAlmostEqual(report["variants"]["mAP"]["oracle"]["mean"],
                               100 * self.oracle.mean(), places=6)  # fmt: skip
        text = render_markdown(report)
        self.assertIn("| adapted_both |", text)
        self.assertIn("| both | 50 % [", text)

    def test_no_gap_reported_as_none(self):
        report = build_report(
            _scores("direct", self.direct),
            [_scores("oracle_s0", self.direct)],
            {"both": [_scores("both_s0", self.half)]},
        )
        self.assertIsNone(report["gap_closed"]["both"])
        self.assertIn("no gap", render_markdown(report))

    def test_other_queries_refused(self):
        other = _scores("oracle_s0", self.oracle)
        other["queries"]["query_index"] = list(range(1, 301))
        with self.assertRaisesRegex(ValueError, "other queries"):
            build_report(_scores("direct", self.direct), [other], {})

    def test_rounds_plot_written(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "rounds.png")
            curve = [{"round": r, "search": {"mAP": 20.0 + 5 * r}} for r in range(3)]
            plot_rounds(curve, 15.0, 40.0, path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()


class TestPseudoLabelQuality(unittest.TestCase):
    """projects/adaptation/quality.py on made-up detections whose ground truth is known."""

    def test_ground_truth_ids_match_by_iou_in_the_same_frame(self):
        from types import SimpleNamespace

        from projects.adaptation.quality import ground_truth_ids

        anno = {"cameras": {"cam1": {"frames": [[{"box": [0, 0, 10, 20], "person_id": 7}], []]}}}
        footage = SimpleNamespace(
            sources=np.array(["/x/cam1.avi"] * 4),
            frames=np.array([0, 0, 1, 5]),
            boxes=np.array([[0, 0, 10, 20], [0, 0, 10, 8], [0, 0, 10, 20], [0, 0, 10, 20]], float),
        )
        gt = ground_truth_ids(_Seq(footage), anno)
        # exact box: matched; a box of IoU 0.4: not; another frame without people / past the end
        self.assertEqual(gt.tolist(), [7, -1, -1, -1])

    def test_pair_precision_and_recall(self):
        from projects.adaptation.quality import _identity_quality

        gt = np.array([1, 1, 1, 2, 2, -1])
        cams = np.array(["a", "a", "b", "a", "b", "a"])
        perfect = _identity_quality(np.array([0, 0, 0, 1, 1, 2]), gt, cams)
        self.assertEqual((perfect["pair_precision"], perfect["pair_recall"]), (1.0, 1.0))
        self.assertEqual(perfect["cross_camera_pair_recall"], 1.0)
        merged = _identity_quality(np.zeros(6, int), gt, cams)  # one identity for everyone
        self.assertEqual(merged["pair_recall"], 1.0)
        self.assertAlmostEqual(merged["pair_precision"], 4 / 10)  # 4 true of the 10 pairs
        by_camera = _identity_quality(np.array([0, 0, 1, 2, 3, -1]), gt, cams)
        self.assertEqual(by_camera["cross_camera_pair_recall"], 0.0)  # no cross-camera pair
        self.assertEqual(by_camera["pair_precision"], 1.0)
        self.assertEqual(by_camera["outliers"], 1)


class _Seq:
    """A footage stand-in: the attributes of ``ns`` and its length."""

    def __init__(self, ns):
        self.__dict__.update(vars(ns))

    def __len__(self):
        return len(self.boxes)
