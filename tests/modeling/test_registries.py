"""Registries of the identity losses, the center loss and the embedding head: parts plugged in
from outside the package (here, from this test file) by their config names."""

import unittest

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from ian_d2.utils.testing import quick_cfg, synthetic_inputs

from ian_d2.modeling import (
    CENTER_LOSS_REGISTRY,
    REID_HEAD_REGISTRY,
    REID_LOSS_REGISTRY,
    CenterLoss,
    OIMLoss,
    RandomSamplingSoftmaxLoss,
    ReIDEmbeddingHead,
)
from ian_d2.modeling.losses import build_center_loss, build_reid_loss
from ian_d2.modeling.reid_head import build_reid_head

DETECTION_KEYS = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}


@REID_LOSS_REGISTRY.register()
class ToyIdentityLoss(nn.Module):
    """Plain softmax over the labeled identities, returned under its own name, ``loss_toy``."""

    calls = []  # (number of boxes, number of labeled boxes) of every call

    @configurable
    def __init__(self, *, num_pids: int, embed_dim: int):
        super().__init__()
        self.classifier = nn.Linear(embed_dim, num_pids)

    @classmethod
    def from_config(cls, cfg):
        return {"num_pids": cfg.MODEL.REID.NUM_PIDS, "embed_dim": cfg.MODEL.REID.EMBED_DIM}

    def forward(self, feats, labels):
        keep = labels >= 0
        ToyIdentityLoss.calls.append((len(labels), int(keep.sum())))
        if not keep.any():
            return {"loss_toy": feats.sum() * 0.0 + self.classifier.weight.sum() * 0.0}, {}
        loss = F.cross_entropy(self.classifier(feats[keep]), labels[keep])
        return {"loss_toy": loss}, {"toy_boxes": float(keep.sum())}


@CENTER_LOSS_REGISTRY.register()
class ToyCenterLoss(nn.Module):
    """A plain ``__init__(cfg)`` (no @configurable) returning a scalar: named ``loss_center``."""

    calls = 0

    def __init__(self, cfg):
        super().__init__()
        self.embed_dim = cfg.MODEL.REID.EMBED_DIM

    def forward(self, feats, labels):
        ToyCenterLoss.calls += 1
        keep = labels >= 0
        return (feats[keep] ** 2).sum() / max(int(keep.sum()), 1) + feats.sum() * 0.0, {}


@REID_HEAD_REGISTRY.register()
class ToyEmbeddingHead(nn.Module):
    """Linear projection and L2 normalisation, nothing else."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        self.embed_dim = cfg.MODEL.REID.EMBED_DIM
        self.fc = nn.Linear(input_shape.channels, self.embed_dim)

    def forward(self, x):
        if x.dim() > 2:
            x = x.mean(dim=[2, 3])
        return F.normalize(self.fc(x), dim=1)


def _train_step(model, inputs):
    model.train()
    with EventStorage() as storage:
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses, storage


class TestLossRegistry(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        ToyIdentityLoss.calls.clear()
        ToyCenterLoss.calls = 0

    def test_builtin_names(self):
        for name, cls in [
            ("RSS", RandomSamplingSoftmaxLoss),
            ("rss", RandomSamplingSoftmaxLoss),
            ("RandomSamplingSoftmaxLoss", RandomSamplingSoftmaxLoss),
            ("OIM", OIMLoss),
            ("oim", OIMLoss),
            ("oimloss", OIMLoss),
        ]:
            loss = build_reid_loss(quick_cfg(opts=["MODEL.REID.LOSS_TYPE", name]))
            self.assertIs(type(loss), cls, name)
        self.assertIs(type(build_center_loss(quick_cfg())), CenterLoss)
        self.assertIs(type(build_reid_head(quick_cfg(), ShapeSpec(channels=8))), ReIDEmbeddingHead)

    def test_unknown_names_list_the_registered_ones(self):
        with self.assertRaisesRegex(ValueError, r"MODEL\.REID\.LOSS_TYPE='Triplet'") as ctx:
            build_reid_loss(quick_cfg(opts=["MODEL.REID.LOSS_TYPE", "Triplet"]))
        for name in (
            "'RandomSamplingSoftmaxLoss'",
            "'OIMLoss'",
            "'RSS'",
            "'OIM'",
            "'ToyIdentityLoss'",
        ):
            self.assertIn(name, str(ctx.exception))
        self.assertIn("REID_LOSS_REGISTRY", str(ctx.exception))
        with self.assertRaisesRegex(ValueError, r"MODEL\.CENTER_LOSS\.NAME='Nope'.*'CenterLoss'"):
            build_center_loss(quick_cfg(opts=["MODEL.CENTER_LOSS.NAME", "Nope"]))
        with self.assertRaisesRegex(
            ValueError, r"MODEL\.REID\.HEAD_NAME='Nope'.*'ReIDEmbeddingHead'"
        ):
            build_model(quick_cfg(opts=["MODEL.REID.HEAD_NAME", "Nope"]))
        # weight 0: no center loss, its name is not even looked up
        cfg = quick_cfg(opts=["MODEL.CENTER_LOSS.NAME", "Nope", "MODEL.CENTER_LOSS.WEIGHT", 0.0])
        self.assertIsNone(build_center_loss(cfg))

    def test_train_one_iteration_with_a_plugged_in_identity_loss(self):
        cfg = quick_cfg(opts=["MODEL.REID.LOSS_TYPE", "ToyIdentityLoss",
                                 "MODEL.REID.LOSS_WEIGHT", 0.5])  # fmt: skip
        model = build_model(cfg)
        self.assertIsInstance(model.roi_heads.reid_loss, ToyIdentityLoss)
        inputs = synthetic_inputs()
        num_labeled = sum(int((x["instances"].gt_pids >= 0).sum()) for x in inputs)
        losses, storage = _train_step(model, inputs)
        self.assertEqual(len(ToyIdentityLoss.calls), 1)
        num_boxes, num_labeled_boxes = ToyIdentityLoss.calls[0]
        self.assertGreaterEqual(num_labeled_boxes, num_labeled)  # every GT box, and matched ones
        self.assertEqual(set(losses), DETECTION_KEYS | {"loss_toy", "loss_center"})
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        self.assertGreater(losses["loss_toy"].item(), 0)
        # the toy classifier is trained, the stats are logged
        self.assertIsNotNone(model.roi_heads.reid_loss.classifier.weight.grad)
        self.assertEqual(storage.history("reid/toy_boxes").latest(), num_labeled_boxes)
        # weighted by MODEL.REID.LOSS_WEIGHT: the same model at weight 1 doubles it
        model2 = build_model(quick_cfg(opts=["MODEL.REID.LOSS_TYPE", "toyidentityloss"]))
        model2.load_state_dict(model.state_dict())
        # the same sampled proposals need the same random state
        torch.manual_seed(1)
        l1, _ = _train_step(model, inputs)
        torch.manual_seed(1)
        l2, _ = _train_step(model2, inputs)
        self.assertAlmostEqual(2 * l1["loss_toy"].item(), l2["loss_toy"].item(), places=4)

    def test_plugged_in_center_loss_and_head(self):
        cfg = quick_cfg(opts=["MODEL.CENTER_LOSS.NAME", "ToyCenterLoss",
                                 "MODEL.REID.HEAD_NAME", "ToyEmbeddingHead"])  # fmt: skip
        model = build_model(cfg)
        self.assertIsInstance(model.roi_heads.center_loss, ToyCenterLoss)
        self.assertIsInstance(model.roi_heads.reid_head, ToyEmbeddingHead)
        losses, _ = _train_step(model, synthetic_inputs())
        self.assertEqual(ToyCenterLoss.calls, 1)
        self.assertEqual(set(losses), DETECTION_KEYS | {"loss_reid", "loss_center"})
        self.assertIsNotNone(model.roi_heads.reid_head.fc.weight.grad)
        model.eval()
        with torch.no_grad():
            out = model(synthetic_inputs(seed=1))
        self.assertEqual(out[0]["instances"].pred_embeds.shape[1], cfg.MODEL.REID.EMBED_DIM)

    def test_crop_classifier_uses_the_registries(self):
        cfg = quick_cfg(
            "quick_schedules/step1_crop_pretrain_R18_GN_instant_test.yaml",
            ["MODEL.REID.LOSS_TYPE", "ToyIdentityLoss", "MODEL.REID.HEAD_NAME", "ToyEmbeddingHead"],
        )
        model = build_model(cfg)
        self.assertIsInstance(model.roi_heads.reid_head, ToyEmbeddingHead)
        losses, _ = _train_step(model, synthetic_inputs())
        self.assertEqual(set(losses), {"loss_toy"})
        self.assertEqual(len(ToyIdentityLoss.calls), 1)
        # no crop at all: the head and the loss are still called (collectives under DDP)
        inputs = synthetic_inputs()
        for x in inputs:
            x["instances"].gt_pids[:] = -1
        cfg.defrost()
        cfg.MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE = -1
        losses, _ = _train_step(build_model(cfg), inputs)
        self.assertEqual(set(losses), {"loss_toy"})
        self.assertEqual(losses["loss_toy"].item(), 0.0)
        self.assertEqual(ToyIdentityLoss.calls[-1], (0, 0))


if __name__ == "__main__":
    unittest.main()
