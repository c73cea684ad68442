"""PersonSearchEvaluator on tiny generated CUHK-SYSU / PRW datasets with hand-made outputs."""

import os
import tempfile
import unittest

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from ian_d2.data import register_person_search_dataset
from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol
from ian_d2.data.synthetic import generate_cuhk_sysu, generate_prw
from ian_d2.evaluation import (
    PREDICTIONS_FILE,
    GalleryTable,
    PersonSearchEvaluator,
    SearchGalleries,
    add_person_search_eval_config,
    build_prw_galleries,
    evaluate_detections,
    evaluate_search,
    load_predictions,
)
from tests.synthetic_testing import unregister

EMBED_DIM = 64
SEARCH_KEYS = ("mAP", "top-1", "top-5", "top-10")


class OracleModel:
    """Outputs the GT boxes (score 1) with one-hot embeddings of the person id (unlabeled persons:
    random vectors orthogonal to every one-hot), and the query box with its id's one-hot."""

    def __init__(self, records, seed=0):
        pids = sorted({a["person_id"] for r in records for a in r["annotations"]} - {-1})
        assert len(pids) <= EMBED_DIM // 2
        self.pid_dim = {p: i for i, p in enumerate(pids)}
        self.rng = np.random.default_rng(seed)

    def embed(self, pid):
        v = np.zeros(EMBED_DIM, np.float32)
        if pid >= 0:
            v[self.pid_dim[pid]] = 1.0
        else:
            v[EMBED_DIM // 2 :] = self.rng.normal(size=EMBED_DIM // 2)
        return v / np.linalg.norm(v)

    def output(self, record, keep=None, scores=None, noise=0.0):
        """Instances of one record; ``keep`` [K] bool drops GT boxes, ``scores`` [K] replaces 1."""
        annos = record["annotations"]
        boxes = np.asarray([a["bbox"] for a in annos], np.float32).reshape(-1, 4)
        emb = np.stack([self.embed(a["person_id"]) for a in annos] or [np.zeros(EMBED_DIM)])
        emb = emb[: len(annos)].astype(np.float32)
        if noise:
            emb = emb + noise * self.rng.normal(size=emb.shape).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        sc = np.ones(len(annos), np.float32) if scores is None else np.asarray(scores, np.float32)
        if keep is not None:
            boxes, emb, sc = boxes[keep], emb[keep], sc[keep]
        inst = Instances((record["height"], record["width"]))
        inst.pred_boxes = Boxes(torch.from_numpy(boxes))
        inst.scores = torch.from_numpy(sc)
        inst.pred_classes = torch.zeros(len(sc), dtype=torch.int64)
        inst.pred_embeds = torch.from_numpy(emb.reshape(-1, EMBED_DIM))
        return {"instances": inst}


class OracleModule(torch.nn.Module):
    """nn.Module wrapper of :class:`OracleModel` for ``inference_on_dataset``."""

    def __init__(self, oracle):
        super().__init__()
        self.oracle = oracle

    def forward(self, inputs):
        return [self.oracle.output(x) for x in inputs]


def degraded_outputs(records, seed=1):
    """Outputs of a worse model: noisy embeddings, random scores, every third box dropped."""
    oracle = OracleModel(records, seed)
    rng = np.random.default_rng(seed)
    outs = []
    for r in records:
        k = len(r["annotations"])
        if "query_index" in r:
            outs.append(oracle.output(r, noise=0.3))
        else:
            keep = np.arange(k) % 3 != 1
            scores = rng.uniform(0.3, 1.0, size=k)
            outs.append(oracle.output(r, keep=keep, scores=scores, noise=0.3))
    return outs


def table_of(records, outputs):
    """GalleryTable of the gallery records' outputs (for direct evaluate_search calls)."""
    gal = [(r, o["instances"]) for r, o in zip(records, outputs) if "query_index" not in r]
    return GalleryTable.from_per_image(
        [i.pred_boxes.tensor.numpy() for _, i in gal],
        [i.scores.numpy() for _, i in gal],
        [i.pred_embeds.numpy() for _, i in gal],
        image_names=[r["image_id"] for r, _ in gal],
        embed_dim=EMBED_DIM,
    )


def query_embeddings(records, outputs):
    """[Q, E] query embeddings ordered by query_index."""
    q = sorted(
        (r["query_index"], o["instances"].pred_embeds.numpy()[0])
        for r, o in zip(records, outputs)
        if "query_index" in r
    )
    return np.stack([e for _, e in q])


def run_evaluator(dataset, records, outputs, output_dir=None, **kwargs):
    ev = PersonSearchEvaluator(dataset, None, False, output_dir, **kwargs)
    ev.reset()
    for i in range(0, len(records), 3):
        ev.process(records[i : i + 3], outputs[i : i + 3])
    return ev, ev.evaluate()


class _DatasetCase(unittest.TestCase):
    family = None

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.root = os.path.join(cls._tmp.name, cls.family)
        gen = generate_cuhk_sysu if cls.family == "cuhk_sysu" else generate_prw
        cls.summary = gen(cls.root, size="tiny", seed=0)
        cls.names = register_person_search_dataset(cls.family, f"_ev_{cls.family}", cls.root)
        cls.dataset = cls.names["test"]
        cls.records = DatasetCatalog.get(cls.dataset)
        cls.oracle = OracleModel(cls.records)
        cls.oracle_outputs = [cls.oracle.output(r) for r in cls.records]

    @classmethod
    def tearDownClass(cls):
        unregister(cls.names)
        cls._tmp.cleanup()

    def assertAll100(self, results):
        for key, metrics in results.items():
            for name, value in metrics.items():
                self.assertIsInstance(value, float)
                if (key, name) == ("detection_labeled", "AP"):
                    # a perfect detector also finds the unlabeled persons: in the reference's
                    # labeled-only evaluation those detections are false positives
                    self.assertLess(value, 100.0)
                    continue
                self.assertAlmostEqual(value, 100.0, places=9, msg=f"{key}/{name}")

    def expect_error(self, records, outputs, *fragments, **kwargs):
        with self.assertRaises(ValueError) as ctx:
            run_evaluator(self.dataset, records, outputs, **kwargs)
        for frag in fragments:
            self.assertIn(frag, str(ctx.exception))
        return str(ctx.exception)


class TestCuhkSysuEvaluator(_DatasetCase):
    family = "cuhk_sysu"

    def test_oracle_all_protocols_perfect(self):
        with tempfile.TemporaryDirectory() as out:
            ev, res = run_evaluator(self.dataset, self.records, self.oracle_outputs, out)
            self.assertTrue(os.path.isfile(os.path.join(out, PREDICTIONS_FILE)))
            self.assertTrue(os.path.isfile(os.path.join(out, "person_search_results.json")))
        self.assertEqual(self.summary["gallery_sizes"], [5, 10])
        expected = ["search", "search_g10", "search_full", "search_occlusion", "search_resolution"]
        self.assertEqual(list(res), expected + ["detection", "detection_labeled"])
        for key in expected:
            self.assertEqual(tuple(res[key]), SEARCH_KEYS)
        self.assertEqual(set(res["detection"]), {"AP", "recall"})
        self.assertEqual(set(res["detection_labeled"]), {"AP", "recall"})
        self.assertEqual(ev.settings["detection_labeled"]["det_labeled"], "reference")
        self.assertAll100(res)
        # Every result says which protocol and thresholds produced it.
        self.assertEqual(ev.settings["search"]["gallery_size"], 5)
        self.assertEqual(ev.settings["search_g10"]["gallery_size"], 10)
        self.assertEqual(ev.settings["search_full"]["gallery_size"], -1)
        self.assertEqual(ev.settings["search"]["det_thresh"], 0.5)
        self.assertEqual(ev.settings["search"]["duplicates"], "first")
        self.assertEqual(ev.settings["search"]["n_queries"], self.summary["queries"])
        self.assertEqual(ev.settings["search"]["n_skipped"], 0)
        self.assertEqual(ev.settings["detection"]["score_thresh"], 0.01)
        n_occ = self.summary["occlusion_queries"]
        self.assertEqual(ev.settings["search_occlusion"]["n_queries"], n_occ)

    def test_logs_protocol_and_thresholds(self):
        with self.assertLogs("ian_d2.evaluation.scoring", "INFO") as logs:
            run_evaluator(self.dataset, self.records, self.oracle_outputs)
        text = "\n".join(logs.output)
        self.assertIn("gallery 10 (TestG10.mat)", text)
        self.assertIn("det_thresh=0.5", text)
        self.assertIn("duplicates=first", text)
        self.assertIn("score_thresh=0.01", text)
        self.assertIn("SeqNet's labeled_only=True", text)  # which labeled-detection variant

    def test_degraded_matches_direct_scoring(self):
        outputs = degraded_outputs(self.records)
        _, res = run_evaluator(self.dataset, self.records, outputs)
        table = table_of(self.records, outputs)
        qemb = query_embeddings(self.records, outputs)
        for key, size in (("search", 5), ("search_g10", 10)):
            proto = load_cuhk_sysu_protocol(self.root, size)
            gal = SearchGalleries.from_names(proto.gallery_imnames, proto.gallery_boxes, table)
            # the synthetic protocol files list the same queries in the same order
            ref_proto = load_cuhk_sysu_protocol(self.root, 5)
            self.assertEqual(proto.query_imnames, ref_proto.query_imnames)
            direct = evaluate_search(qemb, table, gal, det_thresh=0.5).metrics()
            self.assertEqual(res[key], direct, key)
        self.assertLess(res["search"]["mAP"], 100.0)
        self.assertLess(res["detection"]["recall"], 100.0)
        gallery = [r for r in self.records if "query_index" not in r]
        outs = [o for r, o in zip(self.records, outputs) if "query_index" not in r]
        det = evaluate_detections(
            [o["instances"].pred_boxes.tensor.numpy() for o in outs],
            [o["instances"].scores.numpy() for o in outs],
            [np.asarray([a["bbox"] for a in r["annotations"]]).reshape(-1, 4) for r in gallery],
            gt_labeled=[
                np.asarray([a["person_id"] >= 0 for a in r["annotations"]]) for r in gallery
            ],
            score_thresh=0.01,
        )
        self.assertEqual(res["detection"], {"AP": 100.0 * det.ap, "recall": 100.0 * det.recall})
        labeled = evaluate_detections(
            [o["instances"].pred_boxes.tensor.numpy() for o in outs],
            [o["instances"].scores.numpy() for o in outs],
            [np.asarray([a["bbox"] for a in r["annotations"]]).reshape(-1, 4) for r in gallery],
            gt_labeled=[
                np.asarray([a["person_id"] >= 0 for a in r["annotations"]]) for r in gallery
            ],
            labeled_only=True,
            score_thresh=0.01,
        )
        self.assertEqual(
            res["detection_labeled"], {"AP": 100.0 * labeled.ap, "recall": 100.0 * labeled.recall}
        )
        # the other named variant: matched against all GT, recall over the labeled ones
        _, res_all = run_evaluator(self.dataset, self.records, outputs, det_labeled="all_gt")
        self.assertEqual(res_all["detection_labeled"], {"recall": 100.0 * det.labeled_recall})
        # A higher search threshold only changes search, and the settings say so.
        ev, res9 = run_evaluator(self.dataset, self.records, outputs, det_thresh=0.9)
        self.assertEqual(ev.settings["search"]["det_thresh"], 0.9)
        self.assertEqual(res9["detection"], res["detection"])
        self.assertNotEqual(res9["search"], res["search"])

    def test_full_pool_gallery(self):
        outputs = degraded_outputs(self.records)
        ev = PersonSearchEvaluator(self.dataset, None, False, gallery_sizes=[-1], full_pool=False)
        ev.process(self.records, outputs)
        res = ev.evaluate()
        self.assertEqual(list(res), ["search_full", "detection", "detection_labeled"])
        self.assertEqual(ev.settings["search_full"]["base_gallery_size"], 5)
        # Direct: TestG5 galleries + every other pool image except the query image.
        table = table_of(self.records, outputs)
        proto = load_cuhk_sysu_protocol(self.root, 5)
        rows = []
        for q in range(proto.num_queries):
            listed = list(proto.gallery_imnames[q])
            extra = [
                n for n in table.image_names if n not in listed and n != proto.query_imnames[q]
            ]
            rows.append(
                (listed + extra, list(proto.gallery_boxes[q]) + [[np.nan] * 4] * len(extra))
            )
        gal = SearchGalleries.from_lists(
            [table.index_of(n) for n, _ in rows], [np.asarray(b) for _, b in rows]
        )
        direct = evaluate_search(query_embeddings(self.records, outputs), table, gal).metrics()
        self.assertEqual(res["search_full"], direct)

    def test_inference_on_dataset_cpu(self):
        loader = [self.records[i : i + 2] for i in range(0, len(self.records), 2)]
        ev = PersonSearchEvaluator(self.dataset)  # distributed=True on a single process
        res = inference_on_dataset(OracleModule(self.oracle), loader, ev)
        self.assertAll100(res)
        self.assertIn("search_full", res)

    def test_config_keys(self):
        cfg = get_cfg()
        add_person_search_eval_config(cfg)
        ps = cfg.TEST.PERSON_SEARCH
        self.assertEqual(
            (ps.DET_THRESH, ps.DET_EVAL_THRESH, ps.GALLERY_SIZES, ps.FULL_POOL, ps.MULTI_VIEW),
            (0.5, 0.01, [], True, True),
        )
        self.assertEqual((ps.DUPLICATES, ps.SAVE_PREDICTIONS), ("first", True))
        cfg.TEST.PERSON_SEARCH.GALLERY_SIZES = [10]
        cfg.TEST.PERSON_SEARCH.FULL_POOL = False
        cfg.TEST.PERSON_SEARCH.DUPLICATES = "per_entry"
        with tempfile.TemporaryDirectory() as out:
            cfg.TEST.PERSON_SEARCH.SAVE_PREDICTIONS = False
            ev = PersonSearchEvaluator(self.dataset, cfg, False, out)
            ev.process(self.records, self.oracle_outputs)
            res = ev.evaluate()
            self.assertFalse(os.path.exists(os.path.join(out, PREDICTIONS_FILE)))
        self.assertEqual(list(res), ["search_g10", "detection", "detection_labeled"])
        self.assertEqual(ev.settings["search_g10"]["duplicates"], "per_entry")
        # Keyword arguments override the config.
        ev = PersonSearchEvaluator(self.dataset, cfg, False, det_thresh=0.7)
        self.assertEqual(ev.options.det_thresh, 0.7)
        self.assertEqual(ev.options.gallery_sizes, (10,))

    def test_model_score_threshold_is_the_applied_one(self):
        """Detections under the model's SCORE_THRESH_TEST do not exist: the evaluation says it
        applied that threshold (not the lower DET_EVAL_THRESH), and the file records it."""
        from ian_d2.config import add_ian_config

        cfg = get_cfg()
        add_ian_config(cfg)
        cfg.MODEL.REID.EMBED_DIM = EMBED_DIM
        for model_thresh, applied in ((0.05, 0.05), (0.01, 0.01), (0.0, 0.01)):
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = model_thresh
            with self.subTest(model_thresh=model_thresh), tempfile.TemporaryDirectory() as out:
                ev = PersonSearchEvaluator(self.dataset, cfg, False, out)
                ev.process(self.records, self.oracle_outputs)
                if model_thresh > 0.01:
                    with self.assertLogs("ian_d2.evaluation.scoring", "WARNING") as logs:
                        ev.evaluate()
                    self.assertIn("SCORE_THRESH_TEST=0.05", "\n".join(logs.output))
                else:
                    ev.evaluate()
                self.assertEqual(ev.settings["detection"]["score_thresh"], applied)
                self.assertEqual(ev.settings["detection"]["model_score_thresh"], model_thresh)
                self.assertEqual(ev.settings["search"]["det_thresh"], 0.5)
                preds = load_predictions(os.path.join(out, PREDICTIONS_FILE))
                self.assertEqual(preds.score_floor, model_thresh)

    def test_embed_boxes_recorded(self):
        """The predictions file and the search settings say which box the gallery embeddings
        were pooled on (MODEL.ROI_HEADS.EMBED_BOXES); without a model config: unknown."""
        from ian_d2.config import add_ian_config

        cfg = get_cfg()
        add_ian_config(cfg)
        cfg.MODEL.REID.EMBED_DIM = EMBED_DIM
        for mode in ("final", "proposals", None):
            if mode is not None:
                cfg.MODEL.ROI_HEADS.EMBED_BOXES = mode
            with self.subTest(mode=mode), tempfile.TemporaryDirectory() as out:
                if mode is None:
                    run_evaluator(self.dataset, self.records, self.oracle_outputs, out)
                else:
                    ev = PersonSearchEvaluator(self.dataset, cfg, False, out)
                    ev.process(self.records, self.oracle_outputs)
                    ev.evaluate()
                    search = [k for k in ev.settings if k.startswith("search")]
                    self.assertTrue(search)
                    for k in search:
                        self.assertEqual(ev.settings[k]["embed_boxes"], mode)
                preds = load_predictions(os.path.join(out, PREDICTIONS_FILE))
                self.assertEqual(preds.embed_boxes, mode)

    def test_embed_dim_from_config(self):
        cfg = get_cfg()
        add_person_search_eval_config(cfg)
        from ian_d2.config import add_ian_config

        add_ian_config(cfg)  # MODEL.REID.EMBED_DIM = 256, the outputs have 64
        ev = PersonSearchEvaluator(self.dataset, cfg, False)
        ev.process(self.records, self.oracle_outputs)
        with self.assertRaises(ValueError) as ctx:
            ev.evaluate()
        self.assertIn("dimension 256", str(ctx.exception))

    def test_saved_predictions_round_trip(self):
        with tempfile.TemporaryDirectory() as out:
            run_evaluator(self.dataset, self.records, self.oracle_outputs, out)
            preds = load_predictions(os.path.join(out, PREDICTIONS_FILE))
        gallery = [r for r in self.records if "query_index" not in r]
        queries = [r for r in self.records if "query_index" in r]
        self.assertEqual(preds.dataset_family, "cuhk_sysu")
        self.assertEqual(preds.dataset_name, self.dataset)
        self.assertEqual(preds.embed_dim, EMBED_DIM)
        self.assertEqual(preds.gallery_image_ids, [r["image_id"] for r in gallery])
        self.assertEqual(preds.query_indices.tolist(), sorted(r["query_index"] for r in queries))
        self.assertEqual(
            preds.gallery_image_sizes[0].tolist(), [gallery[0]["height"], gallery[0]["width"]]
        )
        self.assertEqual(
            int(preds.gallery_offsets[-1]), sum(len(r["annotations"]) for r in gallery)
        )
        self.assertEqual(preds.gallery_embeddings.dtype, np.float32)
        b, s, e = preds.detections(0)
        np.testing.assert_array_equal(
            b, np.asarray([a["bbox"] for a in gallery[0]["annotations"]], np.float32)
        )

    # ---- bad inputs ---------------------------------------------------------------------- #
    def _gallery_pos(self, k=0):
        return [i for i, r in enumerate(self.records) if "query_index" not in r][k]

    def _query_pos(self, k=0):
        return [i for i, r in enumerate(self.records) if "query_index" in r][k]

    def test_missing_gallery_image(self):
        i = self._gallery_pos(3)
        recs = self.records[:i] + self.records[i + 1 :]
        outs = self.oracle_outputs[:i] + self.oracle_outputs[i + 1 :]
        self.expect_error(recs, outs, self.records[i]["image_id"], "no prediction")

    def test_missing_query(self):
        i = self._query_pos(1)
        recs = self.records[:i] + self.records[i + 1 :]
        outs = self.oracle_outputs[:i] + self.oracle_outputs[i + 1 :]
        q = self.records[i]["query_index"]
        self.expect_error(recs, outs, f"query {q} ", "no prediction")

    def _replace(self, pos, **fields):
        outs = list(self.oracle_outputs)
        inst = outs[pos]["instances"]
        new = Instances(inst.image_size)
        for k, v in inst.get_fields().items():
            new.set(k, fields.get(k, v))
        outs[pos] = {"instances": new}
        return outs

    def test_wrong_embedding_dimension(self):
        i = self._gallery_pos(2)
        n = len(self.oracle_outputs[i]["instances"])
        outs = self._replace(i, pred_embeds=torch.ones(n, EMBED_DIM // 2))
        self.expect_error(self.records, outs, self.records[i]["image_id"], "dimension")
        j = self._query_pos(0)
        outs = self._replace(j, pred_embeds=torch.ones(1, EMBED_DIM + 1))
        self.expect_error(
            self.records, outs, f"query {self.records[j]['query_index']}", "dimension"
        )

    def test_nan_embedding_and_score(self):
        i = self._gallery_pos(4)
        inst = self.oracle_outputs[i]["instances"]
        emb = inst.pred_embeds.clone()
        emb[0, 0] = float("nan")
        outs = self._replace(i, pred_embeds=emb)
        self.expect_error(self.records, outs, self.records[i]["image_id"], "NaN")
        sc = inst.scores.clone()
        sc[-1] = float("nan")
        outs = self._replace(i, scores=sc)
        self.expect_error(self.records, outs, self.records[i]["image_id"], "score")
        j = self._query_pos(2)
        outs = self._replace(j, pred_embeds=torch.full((1, EMBED_DIM), float("nan")))
        self.expect_error(self.records, outs, f"query {self.records[j]['query_index']}", "NaN")

    def test_box_outside_image(self):
        i = self._gallery_pos(1)
        inst = self.oracle_outputs[i]["instances"]
        boxes = inst.pred_boxes.tensor.clone()
        boxes[0, 2] = self.records[i]["width"] + 20.0
        outs = self._replace(i, pred_boxes=Boxes(boxes))
        self.expect_error(self.records, outs, self.records[i]["image_id"], "outside the image")

    def test_query_with_two_instances(self):
        j = self._query_pos(0)
        ev = PersonSearchEvaluator(self.dataset, None, False)
        out = self.oracle.output(self.records[self._gallery_pos(0)])
        with self.assertRaises(ValueError) as ctx:
            ev.process([self.records[j]], [out])
        self.assertIn(f"query {self.records[j]['query_index']}", str(ctx.exception))

    def test_not_a_person_search_dataset(self):
        with self.assertRaises(ValueError):
            PersonSearchEvaluator("coco_2017_val")


class TestPrwEvaluator(_DatasetCase):
    family = "prw"

    def test_oracle_both_protocols(self):
        ev, res = run_evaluator(self.dataset, self.records, self.oracle_outputs)
        self.assertEqual(
            list(res), ["search", "search_multiview", "detection", "detection_labeled"]
        )
        self.assertAll100(res)
        all_cam, multi = ev.settings["search"], ev.settings["search_multiview"]
        self.assertFalse(all_cam["multi_view"])
        self.assertTrue(multi["multi_view"])
        self.assertLess(multi["gallery_entries"], all_cam["gallery_entries"])
        self.assertEqual(all_cam["n_queries"], self.summary["queries"])

    def test_multi_view_off(self):
        ev, res = run_evaluator(self.dataset, self.records, self.oracle_outputs, multi_view=False)
        self.assertEqual(list(res), ["search", "detection", "detection_labeled"])

    def test_degraded_matches_direct_scoring(self):
        outputs = degraded_outputs(self.records, seed=3)
        _, res = run_evaluator(self.dataset, self.records, outputs)
        table = table_of(self.records, outputs)
        gallery = [r for r in self.records if "query_index" not in r]
        queries = sorted(
            (r for r in self.records if "query_index" in r), key=lambda r: r["query_index"]
        )
        for key, mv in (("search", False), ("search_multiview", True)):
            gal = build_prw_galleries(
                table.index_of([r["image_id"] for r in queries]),
                [r["camera_id"] for r in queries],
                [r["annotations"][0]["person_id"] for r in queries],
                table.index_of([r["image_id"] for r in gallery]),
                [r["camera_id"] for r in gallery],
                [[a["person_id"] for a in r["annotations"]] for r in gallery],
                [np.asarray([a["bbox"] for a in r["annotations"]]).reshape(-1, 4) for r in gallery],
                multi_view=mv,
            )
            direct = evaluate_search(query_embeddings(self.records, outputs), table, gal)
            self.assertEqual(res[key], direct.metrics(), key)
        self.assertLess(res["search"]["mAP"], 100.0)


if __name__ == "__main__":
    unittest.main()
