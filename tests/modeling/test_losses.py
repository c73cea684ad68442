"""Unit tests of the identity losses (center, RSS, OIM) against hand-computed values."""

import math
import unittest

import torch
from torch.nn import functional as F

from ian_d2.modeling.losses import (
    BACKGROUND_PID,
    IGNORE_PID,
    UNLABELED_PID,
    CenterLoss,
    OIMLoss,
    RandomSamplingSoftmaxLoss,
)


class TestCenterLoss(unittest.TestCase):
    def _loss(self):
        loss = CenterLoss(num_pids=3, embed_dim=2, alpha=0.5)
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        return loss

    def _batch(self):
        x = torch.tensor(
            [[1.0, 1.0], [2.0, 0.0], [0.0, 0.0], [5.0, 5.0], [3.0, 3.0], [7.0, 1.0]],
            requires_grad=True,
        )
        y = torch.tensor([0, 1, 1, UNLABELED_PID, BACKGROUND_PID, IGNORE_PID])
        return x, y

    def test_value_and_gradient(self):
        loss_fn = self._loss()
        x, y = self._batch()
        loss, stats = loss_fn(x, y)
        # 1/2 (||(1,1)||^2 + ||(1,0)||^2 + ||(-1,0)||^2) / 3 boxes
        self.assertAlmostEqual(loss.item(), 0.5 * 4.0 / 3.0, places=6)
        self.assertAlmostEqual(stats["center_dist"], (math.sqrt(2) + 2.0) / 3.0, places=6)
        loss.backward()
        # dL/dx_i = (x_i - c_{y_i}) / n; boxes without an identity get no gradient.
        expected = (
            torch.tensor([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
            / 3.0
        )
        self.assertTrue(torch.allclose(x.grad, expected, atol=1e-6))
        self.assertFalse(loss_fn.centers.requires_grad)
        self.assertEqual(len(list(loss_fn.parameters())), 0)

    def test_autograd_matches_paper_gradient_random(self):
        torch.manual_seed(0)
        loss_fn = CenterLoss(num_pids=5, embed_dim=4)
        loss_fn.centers.normal_()
        x = torch.randn(7, 4, requires_grad=True)
        y = torch.tensor([0, 4, 4, 2, -1, -2, 0])
        loss, _ = loss_fn(x, y)
        loss.backward()
        keep = y >= 0
        expected = torch.zeros_like(x)
        # centers are read before the update in forward; the update happened afterwards
        expected[keep] = (x.detach()[keep] - self._centers_before(loss_fn, x, y)[y[keep]]) / 5
        self.assertTrue(torch.allclose(x.grad, expected, atol=1e-6))

    @staticmethod
    def _centers_before(loss_fn, x, y):
        # Undo the update: c_new = c - a * sum(c - x) / (1 + n) -> c = (c_new * (1 + n) - a * sum x)
        #                                                               / (1 + n - a * n)
        a = loss_fn.alpha
        keep = y >= 0
        n = torch.bincount(y[keep], minlength=loss_fn.num_pids).float().unsqueeze(1)
        sx = torch.zeros_like(loss_fn.centers).index_add_(0, y[keep], x.detach()[keep])
        return (loss_fn.centers * (1 + n) - a * sx) / (1 + n - a * n)

    def test_center_update(self):
        loss_fn = self._loss()
        x, y = self._batch()
        loss_fn(x, y)
        # class 0: delta = ((0,0) - (1,1)) / 2 -> c0 = (0,0) - 0.5 * (-0.5,-0.5) = (0.25, 0.25)
        # class 1: delta = ((1,0)-(2,0) + (1,0)-(0,0)) / 3 = 0 -> unchanged; class 2: no sample
        expected = torch.tensor([[0.25, 0.25], [1.0, 0.0], [0.0, 1.0]])
        self.assertTrue(torch.allclose(loss_fn.centers, expected, atol=1e-6))
        # a second update of class 1 with one sample (3, 2): delta = ((1,0)-(3,2)) / 2 = (-1,-1)
        loss_fn(torch.tensor([[3.0, 2.0]]), torch.tensor([1]))
        self.assertTrue(torch.allclose(loss_fn.centers[1], torch.tensor([1.5, 0.5]), atol=1e-6))

    def test_no_update_in_eval(self):
        loss_fn = self._loss().eval()
        before = loss_fn.centers.clone()
        x, y = self._batch()
        loss_fn(x, y)
        self.assertTrue(torch.equal(loss_fn.centers, before))

    def test_empty_batch(self):
        loss_fn = self._loss()
        before = loss_fn.centers.clone()
        for x in (torch.zeros(0, 2, requires_grad=True), torch.ones(3, 2, requires_grad=True)):
            y = torch.full((x.shape[0],), UNLABELED_PID)
            loss, stats = loss_fn(x, y)
            self.assertEqual(loss.item(), 0.0)
            self.assertEqual(stats, {})
            loss.backward()
            self.assertTrue(torch.isfinite(x.grad).all())
        self.assertTrue(torch.equal(loss_fn.centers, before))

    def test_centers_in_state_dict(self):
        self.assertIn("centers", self._loss().state_dict())


class TestRSSLoss(unittest.TestCase):
    def test_targets_always_sampled(self):
        torch.manual_seed(0)
        loss_fn = RandomSamplingSoftmaxLoss(num_pids=50, embed_dim=4, sample_size=6)
        targets = torch.tensor([3, 17, 17, 50])  # 50 = background class
        for _ in range(50):
            classes = loss_fn.sample_classes(targets)
            self.assertEqual(classes.numel(), 6)
            self.assertEqual(torch.unique(classes).numel(), 6)
            self.assertTrue(torch.equal(classes, torch.sort(classes)[0]))
            self.assertTrue(set(targets.tolist()) <= set(classes.tolist()))
        # more distinct targets than sample_size: exactly the targets
        many = torch.arange(0, 20)
        self.assertTrue(torch.equal(loss_fn.sample_classes(many), many))

    def test_full_softmax_matches_cross_entropy(self):
        torch.manual_seed(0)
        loss_fn = RandomSamplingSoftmaxLoss(num_pids=5, embed_dim=4, sample_size=100, scalar=3.0)
        x = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
        y = torch.tensor([0, 4, BACKGROUND_PID, UNLABELED_PID, 2, IGNORE_PID])
        loss, stats = loss_fn(x, y)
        w, b = loss_fn.classifier.weight, loss_fn.classifier.bias
        keep = torch.tensor([0, 1, 2, 4])
        targets = torch.tensor([0, 4, 5, 2])  # background -> class num_pids = 5
        expected = F.cross_entropy(3.0 * x[keep] @ w.t() + b, targets)
        self.assertAlmostEqual(loss.item(), expected.item(), places=5)
        self.assertIn("accuracy", stats)
        loss.backward()
        self.assertTrue(torch.all(x.grad[3] == 0) and torch.all(x.grad[5] == 0))
        self.assertTrue(x.grad[keep].abs().sum() > 0)

    def test_sampled_softmax_value(self):
        loss_fn = RandomSamplingSoftmaxLoss(num_pids=30, embed_dim=4, sample_size=5, scalar=2.0)
        torch.manual_seed(1)
        x = F.normalize(torch.randn(3, 4), dim=1)
        y = torch.tensor([7, 7, BACKGROUND_PID])
        torch.manual_seed(123)
        classes = loss_fn.sample_classes(torch.tensor([7, 7, 30]))
        torch.manual_seed(123)
        loss, _ = loss_fn(x, y)
        w, b = loss_fn.classifier.weight[classes], loss_fn.classifier.bias[classes]
        col = {c: i for i, c in enumerate(classes.tolist())}
        expected = F.cross_entropy(2.0 * x @ w.t() + b, torch.tensor([col[7], col[7], col[30]]))
        self.assertAlmostEqual(loss.item(), expected.item(), places=5)

    def test_background_option(self):
        loss_fn = RandomSamplingSoftmaxLoss(
            num_pids=5, embed_dim=4, sample_size=3, use_background=False
        )
        y = torch.tensor([BACKGROUND_PID, UNLABELED_PID, 1])
        self.assertEqual(loss_fn.targets_from_labels(y).tolist(), [-1, -1, 1])

    def test_empty_batch(self):
        loss_fn = RandomSamplingSoftmaxLoss(num_pids=5, embed_dim=4, sample_size=3)
        for x in (torch.zeros(0, 4, requires_grad=True), torch.ones(2, 4, requires_grad=True)):
            y = torch.full((x.shape[0],), UNLABELED_PID)
            loss, stats = loss_fn(x, y)
            self.assertEqual(loss.item(), 0.0)
            loss.backward()
            self.assertTrue(torch.isfinite(x.grad).all())
            self.assertTrue(torch.isfinite(loss_fn.classifier.weight.grad).all())

    def test_label_out_of_range(self):
        loss_fn = RandomSamplingSoftmaxLoss(num_pids=5, embed_dim=4, sample_size=3)
        with self.assertRaises(ValueError):
            loss_fn(torch.ones(1, 4), torch.tensor([5]))


class TestOIMLoss(unittest.TestCase):
    def _loss(self):
        loss_fn = OIMLoss(num_pids=3, embed_dim=2, cq_size=2, momentum=0.5, scalar=1.0)
        loss_fn.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        return loss_fn

    def _batch(self):
        x = torch.tensor(
            [[0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, -0.8], [1.0, 0.0]],
            requires_grad=True,
        )
        y = torch.tensor([0, 0, UNLABELED_PID, UNLABELED_PID, UNLABELED_PID, BACKGROUND_PID])
        return x, y

    def test_loss_value_and_unlabeled(self):
        loss_fn = self._loss()
        x, y = self._batch()
        loss, stats = loss_fn(x, y)
        # logits vs [lut; queue (zeros)], target row 0, computed with the tables before the update
        bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
        expected = F.cross_entropy(x.detach()[:2] @ bank.t(), torch.tensor([0, 0]))
        self.assertAlmostEqual(loss.item(), expected.item(), places=6)
        self.assertEqual(stats["accuracy"], 0.5)  # (0.6, 0.8) is closer to row 1 than row 0
        loss.backward()
        self.assertTrue(torch.all(x.grad[2:] == 0))

    def test_lut_update(self):
        loss_fn = self._loss()
        x, y = self._batch()
        loss_fn(x, y)
        # box 1: v = 0.5 (1,0) + 0.5 (0.6,0.8) = (0.8,0.4) -> /sqrt(0.8)
        v = torch.tensor([0.8, 0.4]) / math.sqrt(0.8)
        # box 2: v = 0.5 v + 0.5 (1, 0), normalised
        v = 0.5 * v + 0.5 * torch.tensor([1.0, 0.0])
        v = v / v.norm()
        self.assertTrue(torch.allclose(loss_fn.lut[0], v, atol=1e-6))
        self.assertTrue(torch.allclose(loss_fn.lut[1:], self._loss().lut[1:]))

    def test_queue_update(self):
        loss_fn = self._loss()
        x, y = self._batch()
        loss_fn(x, y)
        # 3 unlabeled into a queue of 2: slot 0 <- x2, slot 1 <- x3, slot 0 <- x4
        self.assertTrue(torch.allclose(loss_fn.queue, torch.tensor([[0.6, -0.8], [0.8, 0.6]])))
        self.assertEqual(int(loss_fn.queue_ptr), 1)
        loss_fn(torch.tensor([[0.0, -1.0]]), torch.tensor([UNLABELED_PID]))
        self.assertTrue(torch.allclose(loss_fn.queue, torch.tensor([[0.6, -0.8], [0.0, -1.0]])))
        self.assertEqual(int(loss_fn.queue_ptr), 0)
        # background boxes never enter the queue
        loss_fn(torch.tensor([[9.0, 9.0]]), torch.tensor([BACKGROUND_PID]))
        self.assertEqual(int(loss_fn.queue_ptr), 0)
        self.assertEqual(loss_fn.queue.abs().max().item(), 1.0)

    def test_buffers_and_eval(self):
        loss_fn = self._loss()
        self.assertEqual(set(loss_fn.state_dict()), {"lut", "queue", "queue_ptr"})
        loss_fn.eval()
        x, y = self._batch()
        loss_fn(x, y)
        self.assertTrue(torch.equal(loss_fn.lut, self._loss().lut))
        self.assertEqual(int(loss_fn.queue_ptr), 0)

    def test_empty_batch(self):
        loss_fn = self._loss()
        x = torch.ones(2, 2, requires_grad=True)
        loss, stats = loss_fn(x, torch.tensor([UNLABELED_PID, BACKGROUND_PID]))
        self.assertEqual(loss.item(), 0.0)
        self.assertEqual(stats, {})
        loss.backward()
        self.assertTrue(torch.isfinite(x.grad).all())


if __name__ == "__main__":
    unittest.main()
