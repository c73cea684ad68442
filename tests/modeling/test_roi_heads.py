"""Tests of PersonSearchROIHeads: proposal labeling, ground-truth marking, embeddings."""

import unittest

import torch

from detectron2.modeling import build_model
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage

from ian_d2.utils.testing import quick_cfg, synthetic_inputs

from ian_d2.modeling.losses import BACKGROUND_PID
from ian_d2.modeling.roi_heads import GT_INDEX_FIELD


def _proposals(targets, num_random=40, seed=0):
    """Random boxes + jittered copies of the ground truth, as RPN-like proposals."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in targets:
        h, w = t.image_size
        xy = torch.rand(num_random, 2, generator=g) * torch.tensor([w - 20.0, h - 20.0])
        wh = 10 + torch.rand(num_random, 2, generator=g) * 30
        rand = torch.cat([xy, xy + wh], dim=1)
        jitter = t.gt_boxes.tensor + torch.randn(len(t), 4, generator=g)
        p = Instances(t.image_size)
        p.proposal_boxes = Boxes(torch.cat([rand, jitter], dim=0))
        p.objectness_logits = torch.randn(len(p.proposal_boxes), generator=g)
        out.append(p)
    return out


class TestPersonSearchROIHeads(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def _model(self, opts=None):
        return build_model(quick_cfg(opts=opts))

    def test_gt_boxes_marked_and_kept(self):
        # 4 ROIs per image with 25% positives: the sampler keeps one fg box per image at most
        model = self._model(["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 4])
        heads = model.roi_heads
        targets = [x["instances"] for x in synthetic_inputs()]
        with EventStorage():
            sampled = heads.label_and_sample_proposals(_proposals(targets), targets)
        for p, t in zip(sampled, targets):
            idx = p.get(GT_INDEX_FIELD)
            is_gt = idx >= 0
            # every ground-truth box is there exactly once, with its own box and pid
            self.assertEqual(sorted(idx[is_gt].tolist()), list(range(len(t))))
            self.assertTrue(
                torch.equal(p.proposal_boxes.tensor[is_gt], t.gt_boxes.tensor[idx[is_gt]])
            )
            self.assertTrue(torch.equal(p.gt_pids[is_gt], t.gt_pids[idx[is_gt]]))
            self.assertTrue(torch.all(p.gt_classes[is_gt] == 0))
            # the targets given by the caller are not modified
            self.assertFalse(t.has(GT_INDEX_FIELD))
        labels, is_gt = heads._identity_labels(sampled)
        gt_classes = torch.cat([p.gt_classes for p in sampled])
        self.assertTrue(torch.all(labels[gt_classes == 1] == BACKGROUND_PID))
        self.assertEqual(int(is_gt.sum()), sum(len(t) for t in targets))

    def test_without_keep_all_gt(self):
        model = self._model(
            ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 4, "MODEL.REID.KEEP_ALL_GT", False]
        )
        targets = [x["instances"] for x in synthetic_inputs()]
        with EventStorage():
            sampled = model.roi_heads.label_and_sample_proposals(_proposals(targets), targets)
        for p in sampled:
            self.assertEqual(len(p), 4)
            self.assertLessEqual(int((p.get(GT_INDEX_FIELD) >= 0).sum()), 1)

    def test_image_without_gt(self):
        model = self._model()
        targets = [x["instances"] for x in synthetic_inputs()]
        targets[1] = targets[1][torch.zeros(len(targets[1]), dtype=torch.bool)]
        with EventStorage():
            sampled = model.roi_heads.label_and_sample_proposals(_proposals(targets), targets)
            labels, is_gt = model.roi_heads._identity_labels(sampled)
        n0 = len(sampled[0])
        self.assertTrue(torch.all(labels[n0:] == BACKGROUND_PID))
        self.assertFalse(is_gt[n0:].any())

    def test_center_loss_inputs(self):
        targets = [x["instances"] for x in synthetic_inputs()]
        num_labeled_gt = sum(int((t.gt_pids >= 0).sum()) for t in targets)
        for mode in ("gt", "all_pos"):
            model = self._model(["MODEL.CENTER_LOSS.INPUT", mode])
            images = ImageList(torch.zeros(2, 3, 96, 128), [(96, 128)] * 2)
            features = {"res4": torch.rand(2, 256, 6, 8)}
            with EventStorage() as storage:
                _, losses = model.roi_heads(images, features, _proposals(targets), targets)
                n_center = storage.history("reid/num_center_boxes").latest()
                n_labeled = storage.history("reid/num_labeled_boxes").latest()
            self.assertIn("loss_center", losses)
            if mode == "gt":
                self.assertEqual(n_center, num_labeled_gt)
            else:
                self.assertEqual(n_center, n_labeled)
                self.assertGreater(n_center, num_labeled_gt)

    def test_gallery_and_query_embeddings_match(self):
        model = self._model(["MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.0]).eval()
        images = ImageList(torch.zeros(2, 3, 96, 128), [(96, 128), (80, 120)])
        features = {"res4": torch.rand(2, 256, 6, 8)}
        boxes = [torch.tensor([[10.0, 12.0, 40.0, 80.0]]), torch.tensor([[50.0, 5.0, 70.0, 60.0]])]
        proposals = []
        for b, size in zip(boxes, images.image_sizes):
            p = Instances(size)
            p.proposal_boxes = Boxes(b)
            p.objectness_logits = torch.ones(1)
            proposals.append(p)
        with torch.no_grad():
            gallery, _ = model.roi_heads(images, features, proposals)
            given = [Instances(s, pred_boxes=Boxes(b)) for b, s in zip(boxes, images.image_sizes)]
            query = model.roi_heads.forward_with_given_boxes(features, given)
        for g, q in zip(gallery, query):
            self.assertEqual(len(g), 1)
            self.assertEqual(g.pred_embeds.shape, (1, 256))
            self.assertTrue(torch.allclose(g.pred_embeds, q.pred_embeds, atol=1e-5))
            self.assertTrue(torch.allclose(q.pred_embeds.norm(dim=1), torch.ones(1), atol=1e-5))

    def test_forward_with_no_given_boxes(self):
        model = self._model().eval()
        features = {"res4": torch.rand(1, 256, 6, 8)}
        empty = Instances((96, 128), pred_boxes=Boxes(torch.zeros(0, 4)))
        out = model.roi_heads.forward_with_given_boxes(features, [empty])
        self.assertEqual(out[0].pred_embeds.shape, (0, 256))

    def test_embeddings_follow_kept_indices(self):
        # Non-finite proposals are dropped before NMS: the kept indices are relative to the rest.
        model = self._model(["MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.0]).eval()
        features = {"res4": torch.rand(1, 256, 6, 8)}
        images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
        boxes = torch.tensor(
            [[0.0, 0.0, 30.0, 70.0], [60.0, 10.0, 90.0, 90.0], [20.0, 5.0, 50.0, 60.0]]
        )
        p = Instances((96, 128), proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(3))
        heads = model.roi_heads
        orig = heads.box_predictor.forward

        def poisoned(x):
            scores, deltas = orig(x)
            scores = scores.clone()
            scores[0] = float("nan")
            return scores, deltas

        heads.box_predictor.forward = poisoned
        with torch.no_grad():
            (det,), _ = heads(images, features, [p])
            (q,) = heads.forward_with_given_boxes(
                features, [Instances((96, 128), pred_boxes=Boxes(boxes))]
            )
        self.assertEqual(len(det), 2)
        for e in det.pred_embeds:
            d = (q.pred_embeds[1:] - e).norm(dim=1)
            self.assertLess(float(d.min()), 1e-5)


if __name__ == "__main__":
    unittest.main()
