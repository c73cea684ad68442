"""Tests of detection AP / recall with mutual-best matching."""

import unittest

import numpy as np

from tests.reference_oracle import reference_average_precision, reference_detection

from ian_d2.evaluation.detection_metrics import (
    average_precision,
    box_iou,
    evaluate_detections,
    mutual_best_matches,
)


def _greedy_tp(ious: np.ndarray, scores: np.ndarray, thresh: float = 0.5) -> np.ndarray:
    """Score-ordered greedy matching (COCO style), only to show what the protocol is NOT."""
    taken = np.zeros(ious.shape[0], bool)
    tp = np.zeros(ious.shape[1], bool)
    for d in np.argsort(-scores, kind="stable"):
        cand = np.where(taken, -1.0, ious[:, d])
        if cand.size and cand.max() >= thresh:
            taken[np.argmax(cand)] = True
            tp[d] = True
    return tp


class TestAveragePrecision(unittest.TestCase):
    def test_hand_values_and_ties(self):
        self.assertAlmostEqual(average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]), 0.5 + 1 / 3)
        self.assertAlmostEqual(average_precision([0, 1], [0.5, 0.5]), 0.5)
        self.assertAlmostEqual(average_precision([1, 0], [0.5, 0.5]), 0.5)  # order-independent
        self.assertEqual(average_precision([0, 0], [0.5, 0.1]), 0.0)
        self.assertEqual(average_precision([], []), 0.0)

    def test_matches_reference_on_random_data(self):
        rng = np.random.default_rng(0)
        for _ in range(50):
            n = int(rng.integers(1, 60))
            y = rng.random(n) < 0.3
            s = rng.integers(0, 8, n) / 8.0  # many ties
            self.assertAlmostEqual(average_precision(y, s), reference_average_precision(y, s), 12)


class TestMutualBest(unittest.TestCase):
    # GT A, B overlap; d1 (score 0.9) and d2 (0.8) both overlap both, d2 is A's best.
    GT = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], float)
    DETS = np.array([[1, 0, 11, 10], [0, 0, 12, 10]], float)
    SCORES = np.array([0.9, 0.8], np.float32)

    def test_mutual_best_differs_from_greedy(self):
        ious = box_iou(self.GT, self.DETS)  # [[0.818, 0.833], [0.538, 0.571]]
        self.assertTrue((ious >= 0.5).all())
        gt_matched, det_tp = mutual_best_matches(ious)
        self.assertEqual(det_tp.tolist(), [False, True])
        self.assertEqual(gt_matched.tolist(), [True, False])
        self.assertEqual(_greedy_tp(ious, self.SCORES).tolist(), [True, True])
        res = evaluate_detections([self.DETS], [self.SCORES], [self.GT])
        # ranking d1 (FP), d2 (TP): sklearn AP = 1/2; recall = 1/2 -> AP 0.25 (greedy: 1.0)
        self.assertAlmostEqual(res.ap, 0.25)
        self.assertAlmostEqual(res.recall, 0.5)
        self.assertEqual(res.metrics(), {"AP": 25.0, "recall": 50.0})
        self.assertEqual(res.settings()["score_thresh"], 0.01)

    def test_scores_play_no_part_in_matching(self):
        a = evaluate_detections([self.DETS], [self.SCORES], [self.GT])
        b = evaluate_detections([self.DETS], [self.SCORES[::-1].copy()], [self.GT])
        self.assertEqual(a.n_tp, b.n_tp)
        self.assertAlmostEqual(b.ap, 0.5)  # TP now ranked first: AP 1 x recall 1/2

    def test_labeled_recall(self):
        res = evaluate_detections(
            [self.DETS], [self.SCORES], [self.GT], gt_labeled=[np.array([False, True])]
        )
        self.assertEqual(res.recall, 0.5)
        self.assertEqual(res.labeled_recall, 0.0)  # the labeled person B is not matched
        self.assertIn("labeled_recall", res.metrics())

    def test_labeled_only_drops_unlabeled_gt_before_matching(self):
        # A detection on an unlabeled person: with all GT it matches (a TP), counted over the
        # labeled ones it does not count; removed before matching (the reference's
        # labeled_only=True) it is a FALSE POSITIVE that lowers the AP.
        gt = np.array([[0, 0, 10, 20], [50, 0, 60, 20]], float)  # A unlabeled, B labeled
        lab = [np.array([False, True])]
        dets = np.array([[0, 0, 10, 20], [50, 0, 60, 20]], float)  # on A (0.9), on B (0.8)
        scores = np.array([0.9, 0.8])
        all_gt = evaluate_detections([dets], [scores], [gt], gt_labeled=lab)
        self.assertEqual((all_gt.recall, all_gt.labeled_recall, all_gt.ap), (1.0, 1.0, 1.0))
        ref = evaluate_detections([dets], [scores], [gt], gt_labeled=lab, labeled_only=True)
        self.assertEqual((ref.n_gt, ref.n_tp, ref.recall), (1, 1, 1.0))
        self.assertAlmostEqual(ref.ap, 0.5)  # FP (0.9) ranked above the TP (0.8)
        self.assertIsNone(ref.labeled_recall)
        # an image without a labeled person is skipped with its detections
        res = evaluate_detections(
            [dets, dets],
            [scores, scores],
            [gt, gt],
            gt_labeled=[lab[0], np.zeros(2, bool)],
            labeled_only=True,
        )
        self.assertEqual((res.n_images, res.n_skipped_images, res.n_detections), (1, 1, 2))
        self.assertAlmostEqual(res.ap, 0.5)
        with self.assertRaisesRegex(ValueError, "needs the gt_labeled"):
            evaluate_detections([dets], [scores], [gt], labeled_only=True)

    def test_iou_threshold_inclusive(self):
        res = evaluate_detections([[[0, 0, 10, 5]]], [[0.9]], [[[0, 0, 10, 10]]])
        self.assertEqual((res.n_tp, res.recall), (1, 1.0))  # IoU exactly 0.5


class TestEdgeCases(unittest.TestCase):
    def test_no_crash_cases(self):
        gt = np.array([[0, 0, 10, 20]], float)
        none4 = np.zeros((0, 4))
        # detections but no GT; GT but no detection; one correct detection
        res = evaluate_detections(
            [np.array([[50, 50, 60, 70]]), none4, gt],
            [np.array([0.9]), np.zeros(0), np.array([0.8])],
            [none4, gt, gt],
        )
        self.assertEqual((res.n_gt, res.n_tp, res.n_detections), (2, 1, 2))
        # ranked FP (0.9), TP (0.8): AP 1/2 x recall 1/2
        self.assertAlmostEqual(res.ap, 0.25)
        # no detection at all
        res = evaluate_detections([none4, none4], [np.zeros(0), np.zeros(0)], [gt, gt])
        self.assertEqual((res.ap, res.recall, res.n_gt), (0.0, 0.0, 2))
        # nothing at all
        res = evaluate_detections([], [], [])
        self.assertEqual((res.ap, res.recall), (0.0, 0.0))

    def test_score_threshold(self):
        gt = [[0, 0, 10, 20]]
        res = evaluate_detections([gt], [np.array([0.01], np.float32)], [gt])
        self.assertEqual(res.n_tp, 1)  # float32(0.01) >= 0.01 in float32
        res = evaluate_detections([gt], [np.array([0.3])], [gt], score_thresh=0.5)
        self.assertEqual((res.n_tp, res.n_detections, res.score_thresh), (0, 0, 0.5))

    def test_exact_iou_ties_match_the_per_image_rule(self):
        # identical detections and identical GT boxes tie: the first one wins, as np.argmax does
        rng = np.random.default_rng(11)
        dets, scores, gts = [], [], []
        for _ in range(60):
            g = rng.integers(0, 60, (int(rng.integers(0, 4)), 2)).astype(float)
            g = np.c_[g, g + 20]
            if len(g) > 1 and rng.random() < 0.5:
                g[1] = g[0]  # two GT boxes at the same place
            d = g[rng.integers(0, len(g), int(rng.integers(0, 5)))] if len(g) else g
            dets.append(d)
            scores.append(rng.random(len(d)))
            gts.append(g)
        res = evaluate_detections(dets, scores, gts, score_thresh=0.0)
        n_tp = sum(int(mutual_best_matches(box_iou(g, d))[1].sum()) for g, d in zip(gts, dets))
        self.assertEqual(res.n_tp, n_tp)
        self.assertGreater(n_tp, 10)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "image 1: NaN"):
            evaluate_detections([[], [[0, 0, 1, 1]]], [[], [np.nan]], [[], []])
        with self.assertRaisesRegex(ValueError, "image 0: detection box with x2 < x1"):
            evaluate_detections([[[5, 0, 1, 1]]], [[0.5]], [[]])
        with self.assertRaisesRegex(ValueError, "image 0: GT box"):
            evaluate_detections([[]], [[]], [[[0, 5, 1, 1]]])
        with self.assertRaisesRegex(ValueError, "lists"):
            evaluate_detections([[]], [[]], [[], []])

    def test_against_reference_random(self):
        rng = np.random.default_rng(5)
        dets, scores, gts, labeled = [], [], [], []
        for _ in range(200):
            k = int(rng.integers(0, 5))
            xy = rng.uniform(0, 100, (k, 2))
            g = np.c_[xy, xy + rng.uniform(5, 40, (k, 2))]
            m = int(rng.integers(0, 7))
            src = g[rng.integers(0, k, m)] if k else np.zeros((m, 4)) + [0, 0, 10, 10]
            d = src + rng.normal(0, 4, (m, 4))
            d = np.c_[np.minimum(d[:, :2], d[:, 2:]), np.maximum(d[:, :2], d[:, 2:])]
            dets.append(d)
            scores.append(rng.integers(0, 20, m).astype(np.float32) / 20)  # ties, some < 0.01
            gts.append(g)
            labeled.append(rng.random(k) < 0.6)
        res = evaluate_detections(dets, scores, gts, gt_labeled=labeled)
        ref = reference_detection(dets, scores, gts, labeled)
        self.assertAlmostEqual(res.ap, ref["ap"], 12)
        self.assertAlmostEqual(res.recall, ref["recall"], 12)
        self.assertAlmostEqual(res.labeled_recall, ref["labeled_recall"], 12)
        self.assertEqual(res.n_tp, ref["n_tp"])
        self.assertGreater(res.n_tp, 50)
        res = evaluate_detections(dets, scores, gts, gt_labeled=labeled, labeled_only=True)
        ref = reference_detection(dets, scores, gts, labeled, labeled_only=True)
        self.assertAlmostEqual(res.ap, ref["ap"], 12)
        self.assertAlmostEqual(res.recall, ref["recall"], 12)
        self.assertEqual((res.n_tp, res.n_gt), (ref["n_tp"], ref["n_gt"]))
        self.assertLess(res.ap, evaluate_detections(dets, scores, gts, gt_labeled=labeled).ap)


if __name__ == "__main__":
    unittest.main()
