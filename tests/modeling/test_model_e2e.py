"""End-to-end tests of the IAN model on tiny CPU configs with synthetic inputs."""

import os
import tempfile
import unittest

import numpy as np
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from ian_d2.utils.testing import quick_cfg, synthetic_inputs

from ian_d2.modeling import CropClassifier, extract_query_embeddings

LOSS_KEYS = {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc", "loss_reid", "loss_center"}


def _train_step(model, inputs):
    model.train()
    with EventStorage() as storage:
        losses = model(inputs)
        sum(losses.values()).backward()
    return losses, storage


class _FixedProposals(nn.Module):
    """Stands in for the RPN at inference: returns given proposals (resized input coords)."""

    def __init__(self, boxes):
        super().__init__()
        self.boxes = boxes

    def forward(self, images, features, gt_instances=None):
        out = []
        for b, size in zip(self.boxes, images.image_sizes):
            p = Instances(size, proposal_boxes=Boxes(b), objectness_logits=torch.ones(len(b)))
            out.append(p)
        return out, {}


class TestIANModelE2E(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_train_step_rss(self):
        model = build_model(quick_cfg())
        losses, storage = _train_step(model, synthetic_inputs())
        self.assertEqual(set(losses), LOSS_KEYS)
        for k, v in losses.items():
            self.assertTrue(torch.isfinite(v).all(), k)
        self.assertIsNotNone(model.roi_heads.reid_head.proj.weight.grad)
        self.assertIsNotNone(model.roi_heads.reid_loss.classifier.weight.grad)
        histories = storage.histories()
        for key in ("reid/accuracy", "reid/center_dist"):
            self.assertIn(key, histories)
        # the center loss moved the centers of the identities in the batch, not the others
        self.assertGreater(model.roi_heads.center_loss.centers.abs().sum().item(), 0)

    def test_train_step_oim_and_lambda_zero(self):
        model = build_model(
            quick_cfg(opts=["MODEL.REID.LOSS_TYPE", "OIM", "MODEL.CENTER_LOSS.WEIGHT", 0.0])
        )
        self.assertIsNone(model.roi_heads.center_loss)
        losses, _ = _train_step(model, synthetic_inputs())
        self.assertEqual(set(losses), LOSS_KEYS - {"loss_center"})
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        self.assertGreater(int(model.roi_heads.reid_loss.queue_ptr), 0)
        self.assertGreater(model.roi_heads.reid_loss.lut.abs().sum().item(), 0)

    def test_train_step_without_annotations(self):
        model = build_model(quick_cfg())
        inputs = synthetic_inputs()
        for x in inputs:
            inst = x["instances"]
            x["instances"] = inst[torch.zeros(len(inst), dtype=torch.bool)]
        losses, _ = _train_step(model, inputs)
        self.assertEqual(set(losses), LOSS_KEYS)
        self.assertEqual(losses["loss_center"].item(), 0.0)
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))

    def test_inference_two_images(self):
        model = build_model(quick_cfg())
        _train_step(model, synthetic_inputs())
        model.eval()
        inputs = synthetic_inputs(seed=1)
        with torch.no_grad():
            outputs = model(inputs)
        self.assertEqual(len(outputs), 2)
        for inp, out in zip(inputs, outputs):
            inst = out["instances"]
            self.assertEqual(inst.image_size, (inp["height"], inp["width"]))
            self.assertGreater(len(inst), 0)
            self.assertEqual(inst.pred_embeds.shape, (len(inst), 256))
            self.assertEqual(inst.scores.shape, (len(inst),))
            norms = inst.pred_embeds.norm(dim=1)
            self.assertTrue(torch.allclose(norms, torch.ones_like(norms), atol=1e-5))

    def test_query_embeddings_match_gallery(self):
        cfg = quick_cfg(opts=["MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.0])
        model = build_model(cfg)
        _train_step(model, synthetic_inputs())
        model.eval()
        inputs = synthetic_inputs(seed=2)  # original size = 2x the input size
        boxes = [torch.tensor([[10.0, 12.0, 40.0, 80.0]]), torch.tensor([[50.0, 5.0, 70.0, 60.0]])]
        model.proposal_generator = _FixedProposals(boxes)
        with torch.no_grad():
            gallery = model(inputs)
        query = extract_query_embeddings(model, inputs, [b * 2 for b in boxes])
        self.assertEqual(query.shape, (2, 256))
        for i, out in enumerate(gallery):
            self.assertEqual(len(out["instances"]), 1)
            self.assertTrue(torch.allclose(out["instances"].pred_embeds[0], query[i], atol=1e-5))
        # several boxes per image, given as lists / ndarrays
        q2 = extract_query_embeddings(
            model, inputs[:1], [np.array([[20.0, 24.0, 80.0, 160.0], [100, 10, 140, 120]])]
        )
        self.assertEqual(q2.shape, (2, 256))
        self.assertTrue(torch.allclose(q2[0], query[0], atol=1e-5))

    def test_query_records_in_test_batch(self):
        """PersonSearchRCNN: a batch mixing gallery and query records (the *_test splits)."""
        cfg = quick_cfg()
        model = build_model(cfg)
        _train_step(model, synthetic_inputs())
        model.eval()
        inputs = synthetic_inputs(seed=3)
        query = dict(inputs[1], query_index=0)  # its instances.gt_boxes = the given boxes
        given = inputs[1]["instances"].gt_boxes.tensor.clone()
        with torch.no_grad():
            gallery_out, query_out = model([inputs[0], query])
        self.assertGreater(len(gallery_out["instances"]), 0)
        qi = query_out["instances"]
        self.assertEqual(len(qi), len(inputs[1]["instances"]))
        # post-processed to the original (2x) size; embeddings equal the given-box path
        self.assertTrue(torch.allclose(qi.pred_boxes.tensor, given * 2))
        # the input's own boxes are left untouched
        self.assertTrue(torch.equal(inputs[1]["instances"].gt_boxes.tensor, given))
        expected = extract_query_embeddings(model, [inputs[1]], [given * 2])
        self.assertTrue(torch.allclose(qi.pred_embeds, expected, atol=1e-5))
        with self.assertRaisesRegex(ValueError, "query_index=0.*no 'instances'"):
            model([{k: v for k, v in query.items() if k != "instances"}])

    def test_checkpoint_and_default_predictor(self):
        cfg = quick_cfg(opts=["MODEL.REID.LOSS_TYPE", "OIM"])
        model = build_model(cfg)
        _train_step(model, synthetic_inputs())
        model.eval()
        rng = np.random.RandomState(0)
        image = rng.randint(0, 255, size=(192, 256, 3)).astype("uint8")  # BGR, original size
        with tempfile.TemporaryDirectory() as tmp:
            DetectionCheckpointer(model, save_dir=tmp).save("model_final")
            cfg.defrost()
            cfg.MODEL.WEIGHTS = os.path.join(tmp, "model_final.pth")
            predictor = DefaultPredictor(cfg)
        out = predictor(image)["instances"]
        # the same image through the trained model
        aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        resized = aug.get_transform(image).apply_image(image)
        inp = {
            "image": torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)),
            "height": 192,
            "width": 256,
        }
        with torch.no_grad():
            ref = model([inp])[0]["instances"]
        self.assertGreater(len(out), 0)
        self.assertEqual(len(out), len(ref))
        self.assertTrue(torch.allclose(out.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-4))
        self.assertTrue(torch.allclose(out.scores, ref.scores, atol=1e-5))
        self.assertTrue(torch.allclose(out.pred_embeds, ref.pred_embeds, atol=1e-5))
        loaded = predictor.model.roi_heads.reid_loss
        self.assertTrue(torch.equal(loaded.lut, model.roi_heads.reid_loss.lut))
        self.assertTrue(torch.equal(loaded.queue_ptr, model.roi_heads.reid_loss.queue_ptr))


class TestCropClassifier(unittest.TestCase):
    CONFIG = "quick_schedules/step1_crop_pretrain_R18_GN_instant_test.yaml"

    def setUp(self):
        torch.manual_seed(0)

    def test_train_step_and_inference(self):
        model = build_model(quick_cfg(self.CONFIG))
        self.assertIsInstance(model, CropClassifier)
        inputs = synthetic_inputs()
        losses, storage = _train_step(model, inputs)
        self.assertEqual(set(losses), {"loss_reid"})
        self.assertTrue(torch.isfinite(losses["loss_reid"]))
        self.assertIsNotNone(model.backbone.stem.conv1.weight.grad)
        self.assertEqual(storage.history("reid/num_crops").latest(), 5 + 2 * 2)  # 5 labeled + bg
        model.eval()
        with torch.no_grad():
            out = model(inputs)
        self.assertEqual([o["pred_embeds"].shape[0] for o in out], [3, 4])

    def test_background_crops_avoid_persons(self):
        model = build_model(quick_cfg(self.CONFIG))
        inst = synthetic_inputs()[0]["instances"]
        from detectron2.structures import pairwise_iou

        for _ in range(5):
            bg = model._sample_background(inst.gt_boxes, (96, 128), model.num_bg_per_image)
            self.assertLessEqual(len(bg), model.num_bg_per_image)
            if len(bg):
                self.assertLess(pairwise_iou(Boxes(bg), inst.gt_boxes).max().item(), 0.3)
                self.assertTrue(
                    torch.all(bg[:, 2] <= 128 + 1e-4) and torch.all(bg[:, 3] <= 96 + 1e-4)
                )

    def test_paper_crop_batch(self):
        """One person per image and as many background crops: 2 images -> 2 + 2 crops."""
        opts = ["MODEL.REID.PRETRAIN_CROPS.PERSONS_PER_IMAGE", 1,
                "MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE", -1]  # fmt: skip
        model = build_model(quick_cfg(self.CONFIG, opts))
        inputs = synthetic_inputs()
        instances = [x["instances"] for x in inputs]
        for _ in range(5):
            boxes, labels = model._crop_targets(instances, [(96, 128)] * 2)
            self.assertEqual((labels >= 0).sum().item(), 2)
            for inst, b, lab in zip(instances, boxes, labels.split([len(b) for b in boxes])):
                person = b.tensor[lab >= 0]
                self.assertEqual(len(person), 1)
                # the person crop is one of the image's labeled persons
                labeled = inst.gt_boxes.tensor[inst.gt_pids >= 0]
                self.assertTrue((labeled == person).all(dim=1).any())
                self.assertLessEqual((lab == -2).sum().item(), 1)
        _, storage = _train_step(model, inputs)
        self.assertLessEqual(storage.history("reid/num_crops").latest(), 4)
        with self.assertRaises(ValueError):
            build_model(quick_cfg(self.CONFIG, ["MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE", -2]))

    def test_no_crop_keeps_every_parameter_in_the_graph(self):
        model = build_model(
            quick_cfg(self.CONFIG, ["MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE", -1])
        )
        inputs = synthetic_inputs()
        for x in inputs:
            x["instances"].gt_pids[:] = -1  # nobody labeled: no person, no background crop
        losses, _ = _train_step(model, inputs)
        self.assertEqual(float(losses["loss_reid"]), 0.0)
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.assertIsNotNone(p.grad, name)

    def test_checkpoint_loads_into_detector(self):
        crop_model = build_model(quick_cfg(self.CONFIG))
        _train_step(crop_model, synthetic_inputs())
        detector = build_model(quick_cfg())
        det_state = detector.state_dict()
        crop_state = crop_model.state_dict()
        for name, value in crop_state.items():
            self.assertIn(name, det_state)
            self.assertEqual(det_state[name].shape, value.shape, name)
        with tempfile.TemporaryDirectory() as tmp:
            DetectionCheckpointer(crop_model, save_dir=tmp).save("model_final")
            DetectionCheckpointer(detector).load(os.path.join(tmp, "model_final.pth"))
        det_state = detector.state_dict()
        for name in (
            "backbone.stem.conv1.weight",
            "backbone.res4.1.conv2.weight",
            "roi_heads.res5.2.conv3.weight",
            "roi_heads.reid_head.proj.weight",
            "roi_heads.reid_loss.classifier.weight",
        ):
            self.assertTrue(torch.equal(det_state[name], crop_state[name]), name)


if __name__ == "__main__":
    unittest.main()
