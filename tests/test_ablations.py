"""projects/ablations/run.py and projects/ablations/report.py: the bootstrap statistics on made-up per-query
values, the report from fake finished runs, the plan (one setting per variant, one schedule),
skipping and resuming; end to end in --quick mode (slow)."""

import glob
import json
import os
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest

from projects.ablations import report
from projects.ablations import run as runner


def _fake_run(seed, variant, ap, top1, sizes=(50, 100, -1)):
    per_query = {}
    for size in sizes:
        per_query["full" if size < 0 else f"g{size}"] = {
            "gallery_size": size,
            "query_index": list(range(len(ap))),
            "ap": [float(v) for v in ap],
            "top1": [float(v) for v in top1],
        }
    return {
        "variant": variant,
        "label": variant.replace("_", " "),
        "seed": seed,
        "opts": {},
        "per_query": per_query,
        "detection": {"AP": 80.0 + seed, "recall": 90.0},
    }


def _write_runs(root, values):
    """values: {(seed, variant): (ap [Q], top1 [Q])} -> fake finished runs under root."""
    for (seed, variant), (ap, top1) in values.items():
        d = os.path.join(root, f"seed{seed}", variant)
        os.makedirs(d)
        with open(os.path.join(d, report.RUN_FILE), "w") as f:
            json.dump(_fake_run(seed, variant, ap, top1), f)


class TestBootstrap(unittest.TestCase):
    def test_indices(self):
        c = report.bootstrap_indices(50, 200, seed=3)
        self.assertEqual(c.shape, (200, 50))
        np.testing.assert_array_equal(c.sum(axis=1), 50)
        np.testing.assert_array_equal(c, report.bootstrap_indices(50, 200, seed=3))
        self.assertFalse(np.array_equal(c, report.bootstrap_indices(50, 200, seed=4)))

    def test_summarize(self):
        rng = np.random.default_rng(0)
        values = rng.random((3, 300))  # 3 seeds x 300 queries, AP-like
        counts = report.bootstrap_indices(300, 1000)
        s = report.summarize(values, counts)
        per_seed = 100 * values.mean(axis=1)
        np.testing.assert_allclose(s["per_seed"], per_seed)
        self.assertAlmostEqual(s["mean"], per_seed.mean())
        self.assertAlmostEqual(s["seed_sd"], per_seed.std(ddof=1))
        lo, hi = s["ci"]
        self.assertLess(lo, s["mean"])
        self.assertLess(s["mean"], hi)
        # uniform AP: the mean's standard error over 300 queries (x 3 seeds averaged) is
        # ~100 * sqrt(1/12 / 300 / 3) = 0.96 points; the 95% interval is ~4 SE wide
        self.assertTrue(2.5 < hi - lo < 5.5, (lo, hi))
        # 4x the queries: about half the width
        counts4 = report.bootstrap_indices(1200, 1000)
        s4 = report.summarize(rng.random((3, 1200)), counts4)
        self.assertLess(s4["ci"][1] - s4["ci"][0], 0.65 * (hi - lo))
        one = report.summarize(values[:1], counts)
        self.assertEqual(one["seed_sd"], 0.0)

    def test_contrast_is_paired(self):
        rng = np.random.default_rng(1)
        hard = rng.random(300)  # how hard each query is: shared by both variants
        b = np.clip(np.stack([hard + 0.05 * rng.standard_normal(300) for _ in range(3)]), 0, 1)
        a = np.clip(b + 0.03, 0, 1)  # A is better on (almost) every query, by ~3 points
        counts = report.bootstrap_indices(300, 1000)
        c = report.contrast(a, b, counts)
        self.assertAlmostEqual(c["mean"], 100 * (a.mean() - b.mean()))
        self.assertGreater(c["ci"][0], 0.0)  # paired: the difference is clear
        self.assertLess(c["ci"][0], c["mean"])
        self.assertLess(c["mean"], c["ci"][1])
        self.assertEqual(c["seeds_positive"], 3)
        self.assertEqual(c["p_boot_le_0"], 0.0)
        # unpaired, the two variants' own intervals overlap: the pairing is what resolves it
        sa, sb = report.summarize(a, counts), report.summarize(b, counts)
        self.assertLess(sa["ci"][0], sb["ci"][1])
        # B - A: the opposite sign
        r = report.contrast(b, a, counts)
        self.assertAlmostEqual(r["mean"], -c["mean"])
        self.assertLess(r["ci"][1], 0.0)
        self.assertEqual(r["seeds_positive"], 0)
        with self.assertRaises(ValueError):
            report.contrast(a, b[:2], counts)

    def test_no_difference_interval_covers_zero(self):
        rng = np.random.default_rng(2)
        a = rng.random((3, 300))
        b = rng.permutation(a.T).T  # the same values, shuffled over queries: no true difference
        c = report.contrast(a, b, report.bootstrap_indices(300, 1000))
        self.assertLess(c["ci"][0], 0.0)
        self.assertGreater(c["ci"][1], 0.0)


class TestReport(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        rng = np.random.default_rng(0)
        q = 120
        base = rng.random(q)
        values = {}
        for seed in (0, 1, 2):
            noise = 0.02 * rng.standard_normal(q)
            for k, v in enumerate(["step2", "lambda_0", "lambda_0.032", "all_pos"]):
                ap = np.clip(base + noise + 0.02 * k, 0, 1)
                values[(seed, v)] = (ap, (ap > 0.5).astype(float))
        values[(3, "lambda_0")] = values[(0, "lambda_0")]  # an unfinished seed
        self.runs_dir = os.path.join(self._tmp.name, "runs")
        _write_runs(self.runs_dir, values)

    def test_report_files(self):
        out = os.path.join(self._tmp.name, "report")
        res = report.write_report(
            self.runs_dir,
            out,
            variants=["lambda_0", "lambda_0.032", "all_pos"],
            resamples=200,
            meta={"pool_images": 400},
        )
        self.assertEqual(res["meta"]["seeds"], [0, 1, 2])
        self.assertEqual(res["meta"]["incomplete_seeds"], [3])
        self.assertEqual(sorted(res["protocols"]), ["full", "g100", "g50"])
        self.assertEqual(res["protocols"]["g100"]["n_queries"], 120)
        m = res["metrics"]["lambda_0.032"]["g100"]["mAP"]
        self.assertEqual(len(m["per_seed"]), 3)
        self.assertLessEqual(m["ci"][0], m["mean"])
        self.assertLessEqual(m["mean"], m["ci"][1])
        self.assertIn("step2", res["metrics"])  # the shared start is reported too
        pairs = {(c["a"], c["b"]) for c in res["contrasts"]}
        self.assertIn(("lambda_0.032", "lambda_0"), pairs)
        self.assertIn(("all_pos", "lambda_0.032"), pairs)
        self.assertIn(("lambda_0", "step2"), pairs)
        d = next(
            c
            for c in res["contrasts"]
            if (c["a"], c["b"], c["protocol"]) == ("lambda_0.032", "lambda_0", "g100")
        )
        self.assertGreater(d["mAP"]["mean"], 0.0)
        self.assertEqual(d["mAP"]["seeds_positive"], 3)
        with open(os.path.join(out, "results.json")) as f:
            self.assertEqual(json.load(f)["metrics"].keys(), res["metrics"].keys())
        with open(os.path.join(out, "results.md")) as f:
            md = f.read()
        self.assertIn("## Table I", md)
        self.assertIn("## Table II", md)
        self.assertIn("## Fig. 5", md)
        self.assertIn("| lambda 0.032 − lambda 0 |", md)
        self.assertIn("77.2 / 80.5", md)  # IAN's published number (docs/protocols.md)
        for png in ("fig4_lambda.png", "fig5_gallery.png"):
            self.assertGreater(os.path.getsize(os.path.join(out, png)), 1000)

    def test_standalone_report_reads_its_facts_from_the_runs(self):
        # python -m projects.ablations.report without the runner: pool size (Fig. 5's x axis), data
        # set, schedule, device and wall time come from the runs' own records
        for path in glob.glob(os.path.join(self.runs_dir, "seed*", "*", report.RUN_FILE)):
            with open(path) as f:
                run = json.load(f)
            step2 = run["variant"] == "step2"
            run["opts"] = {"SOLVER.MAX_ITER": 800 if step2 else 300, "MODEL.DEVICE": "cpu"}
            run["spec"] = {"dataset": {"preset": "ablation", "queries": 120, "test_images": 400}}
            run["train_seconds"], run["score_seconds"] = (100.0 if step2 else 10.0), 1.0
            with open(path, "w") as f:
                json.dump(run, f)
        out = os.path.join(self._tmp.name, "standalone")
        res = report.write_report(self.runs_dir, out, resamples=50)
        meta = res["meta"]
        self.assertEqual(meta["pool_images"], 400)
        self.assertEqual(meta["device"], "cpu")
        self.assertEqual(meta["finished_runs"], 13)  # 3 seeds x 4 runs + the unfinished seed's
        self.assertAlmostEqual(meta["compute_seconds"], 3 * (101 + 3 * 11) + 11)
        self.assertEqual(meta["median_seconds_per_run"], {"step2": 101.0, "variant": 11.0})
        self.assertTrue(meta["schedule"].startswith("step 2 800, variant 300 iterations"))
        # the paper's order (step 2, the lambda sweep, the other variants), not the folders'
        self.assertEqual(list(res["metrics"]), ["step2", "lambda_0", "lambda_0.032", "all_pos"])
        self.assertGreater(os.path.getsize(os.path.join(out, "fig5_gallery.png")), 1000)
        with open(os.path.join(out, "results.md")) as f:
            self.assertIn("every one of the 400 test images", f.read())

    def test_other_queries_refused(self):
        bad = os.path.join(self.runs_dir, "seed1", "all_pos", report.RUN_FILE)
        with open(bad) as f:
            run = json.load(f)
        run["per_query"]["g100"]["query_index"][0] = 999
        with open(bad, "w") as f:
            json.dump(run, f)
        with self.assertRaisesRegex(ValueError, "other queries"):
            report.build_report(report.load_runs(self.runs_dir), ["lambda_0", "all_pos"])


class TestPlan(unittest.TestCase):
    def test_one_setting_per_variant_one_schedule(self):
        runs = runner.plan("/out", [0, 1], list(runner.VARIANTS), 1.0, "cpu")
        self.assertEqual(len(runs), 2 * (2 + len(runner.VARIANTS)))
        variants = [(r, label) for r, label in runs if r.name not in ("step1", "step2")]
        ian = dict(runner.IAN_OPTS)
        step3 = runner.schedule_opts(runner.STEP3, 1.0)
        self.assertEqual(step3["SOLVER.MAX_ITER"], 300)
        for run, _ in variants:
            changed = {k for k in ian if str(run.opts[k]) != str(ian[k])}
            if run.name == "lambda_0.032":
                self.assertEqual(changed, set())
            elif run.name == "dropout_lambda_0":  # dropout, compared with lambda_0
                self.assertEqual(changed, {"MODEL.REID.DROPOUT", "MODEL.CENTER_LOSS.WEIGHT"})
            else:
                self.assertEqual(len(changed), 1, (run.name, changed))
            for k, v in step3.items():
                self.assertEqual(run.opts[k], v)
            self.assertEqual(run.opts["SEED"], run.seed)
            self.assertEqual(
                run.opts["MODEL.WEIGHTS"], f"/out/seed{run.seed}/step2/model_final.pth"
            )
            self.assertEqual(run.config, runner.STEP3)
        # the lambda sweep and the other settings, as the paper
        lams = sorted(
            float(r.opts["MODEL.CENTER_LOSS.WEIGHT"])
            for r, _ in variants
            if r.seed == 0 and r.name.startswith("lambda_")
        )
        self.assertEqual(lams, [0.0, 0.008, 0.016, 0.032, 0.064, 0.128])

    def test_demo_schedules(self):
        """The ablations train the demo's model with the demo's three schedules."""
        from ian_d2.config import get_ian_cfg

        demo = os.path.join(runner.REPO, "configs", "Synthetic")
        for mine, theirs in (
            (runner.STEP1, "IAN_R18_GN_step1_crop_pretrain.yaml"),
            (runner.STEP2, "IAN_R18_GN_step2_det_rss.yaml"),
            (runner.STEP3, "IAN_R18_GN_step3_center.yaml"),
        ):
            a, b = get_ian_cfg(mine), get_ian_cfg(os.path.join(demo, theirs))
            self.assertEqual(a.SOLVER, b.SOLVER, mine)
            self.assertEqual(a.MODEL.META_ARCHITECTURE, b.MODEL.META_ARCHITECTURE)
            self.assertEqual(a.MODEL.RESNETS, b.MODEL.RESNETS)
            self.assertEqual(a.INPUT, b.INPUT)
            self.assertEqual(a.SEED, 0)

    def test_schedule_scaling(self):
        s = runner.schedule_opts(runner.STEP2, 0.01)
        self.assertEqual(s["SOLVER.MAX_ITER"], 8)
        self.assertEqual(s["SOLVER.STEPS"], "(6,)")
        s = runner.schedule_opts(runner.STEP1, 0.001)
        self.assertEqual(s["SOLVER.MAX_ITER"], 2)
        self.assertEqual(s["SOLVER.STEPS"], "(1,)")


class TestSkipAndResume(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        self.out = os.path.join(self._tmp.name, "runs")
        self.dataset = {"preset": "tiny", "seed": 0, "gallery_sizes": [5, 10]}
        self.runs = runner.plan(self.out, [0], ["lambda_0", "lambda_0.032"], 0.01, "cpu")

    def _no_work(self):
        fail = mock.Mock(side_effect=AssertionError("no training or scoring expected"))
        return mock.patch.multiple(runner, _train=fail, _rescore=fail, per_query_metrics=fail)

    def test_finished_runs_are_skipped(self):
        for run, label in self.runs:
            os.makedirs(run.dir)
            record = _fake_run(run.seed, run.name, [0.5], [1.0])
            record["spec"] = run.spec(self.dataset)
            with open(run.marker, "w") as f:
                json.dump(record, f)
        with self._no_work():
            for run, label in self.runs:
                self.assertTrue(run.done(self.dataset))
                rec = runner.execute(run, {}, "/data", self.dataset, label)
                self.assertEqual(rec["variant"], run.name)
        # the same folder with another setting: refused, not mixed
        run, label = self.runs[-1]
        run.opts["MODEL.CENTER_LOSS.WEIGHT"] = 0.5
        with self.assertRaisesRegex(RuntimeError, "other settings"):
            runner.execute(run, {}, "/data", self.dataset, label)

    def test_trained_but_unscored_run_is_only_scored(self):
        run, label = self.runs[2]  # lambda_0: trained and evaluated, then interrupted
        inf = os.path.join(run.dir, "inference", runner.TEST_SET)
        os.makedirs(inf)
        open(os.path.join(run.dir, "model_final.pth"), "w").close()
        open(os.path.join(run.dir, "model_0000001.pth"), "w").close()
        with open(os.path.join(inf, runner.RESULTS_FILE), "w") as f:
            json.dump({"results": {"detection": {"AP": 1.0, "recall": 2.0}}}, f)
        fake_pq = {"g5": {"gallery_size": 5, "query_index": [0], "ap": [1.0], "top1": [1.0]}}
        with mock.patch.multiple(
            runner,
            _train=mock.Mock(side_effect=AssertionError("must not retrain")),
            _rescore=mock.Mock(return_value={"results": {}, "settings": {}}),
            per_query_metrics=mock.Mock(return_value=fake_pq),
        ):
            rec = runner.execute(run, {}, "/data", self.dataset, label)
        self.assertEqual(rec["per_query"], fake_pq)
        self.assertTrue(run.done(self.dataset))
        self.assertEqual(sorted(os.listdir(run.dir))[:2], ["ablation_run.json", "inference"])
        self.assertFalse(os.path.exists(os.path.join(run.dir, "model_0000001.pth")))
        self.assertTrue(os.path.exists(os.path.join(run.dir, "model_final.pth")))

    def test_unfinished_run_resumes(self):
        run, label = self.runs[0]  # step 1, interrupted: train_net.py --resume is called
        calls = []

        def fake_train(r, env):
            calls.append(r.dir)
            os.makedirs(r.dir, exist_ok=True)
            open(os.path.join(r.dir, "model_final.pth"), "w").close()
            return 1.0

        with mock.patch.object(runner, "_train", side_effect=fake_train):
            rec = runner.execute(run, {}, "/data", self.dataset, label)
            self.assertEqual(calls, [run.dir])
            runner.execute(run, {}, "/data", self.dataset, label)  # now skipped
            self.assertEqual(calls, [run.dir])
        self.assertNotIn("per_query", rec)


class TestPerQuery(unittest.TestCase):
    """Per-query AP / top-1 of saved predictions: their means are the rescore CLI's numbers."""

    def test_per_query_matches_rescore(self):
        from ian_d2.data.datasets.builtin import load_test_split
        from ian_d2.data.synthetic import generate_cuhk_sysu
        from ian_d2.evaluation import PersonSearchPredictions, save_predictions

        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "cuhk")
            generate_cuhk_sysu(root, size="tiny", seed=0)
            gallery, queries = load_test_split("cuhk_sysu", root)
            # a mediocre model: GT boxes with random scores, noisy one-hot identity embeddings
            rng = np.random.default_rng(0)
            dim = 32

            def embed(pid):
                e = rng.normal(scale=0.5, size=dim)
                if pid >= 0:
                    e[pid % dim] += 1.0
                return (e / np.linalg.norm(e)).astype(np.float32)

            g_entries = [
                {
                    "image_id": r["image_id"],
                    "height": r["height"],
                    "width": r["width"],
                    "boxes": np.asarray([a["bbox"] for a in r["annotations"]], np.float32),
                    "scores": rng.uniform(0.3, 1.0, len(r["annotations"])).astype(np.float32),
                    "embeds": np.stack([embed(a["person_id"]) for a in r["annotations"]]),
                }
                for r in gallery
            ]
            q_entries = [
                {
                    "query_index": r["query_index"],
                    "image_id": r["image_id"],
                    "height": r["height"],
                    "width": r["width"],
                    "box": np.asarray(r["annotations"][0]["bbox"], np.float32),
                    "embed": embed(r["annotations"][0]["person_id"]),
                }
                for r in queries
            ]
            preds = PersonSearchPredictions.from_entries(
                g_entries, q_entries, "cuhk_sysu", "synthetic", embed_dim=dim
            )
            path = os.path.join(tmp, "preds.npz")
            save_predictions(preds, path)
            rescored = runner._rescore(path, root, [5, 10], os.path.join(tmp, "rescore.json"))
            pq = runner.per_query_metrics(path, root, rescored)
            self.assertEqual(sorted(pq), ["full", "g10", "g5"])
            self.assertEqual(pq["full"]["gallery_size"], -1)
            ap = np.asarray(pq["g10"]["ap"], float)
            self.assertEqual(ap.shape, (len(queries),))
            self.assertTrue(((ap > 0) & (ap < 1)).any())  # not all trivially 0 or 1
            key = next(k for k, v in rescored["settings"].items() if v.get("gallery_size") == 10)
            self.assertAlmostEqual(100 * ap.mean(), rescored["results"][key]["mAP"], places=6)
            rescored["results"][key]["mAP"] += 1.0
            with self.assertRaisesRegex(RuntimeError, "per-query mAP"):
                runner.per_query_metrics(path, root, rescored)


@pytest.mark.slow
class TestQuickRun(unittest.TestCase):
    """The runner in --quick mode (tiny data, a few iterations): 2 seeds x (step 1, step 2,
    2 variants) trained with train_net.py, scored, reported; the next call skips everything;
    the same seed trained again gives the same per-query results."""

    def test_quick_end_to_end(self):
        with tempfile.TemporaryDirectory() as tmp:
            out, data = os.path.join(tmp, "runs"), os.path.join(tmp, "data")
            rep = os.path.join(tmp, "report")
            argv = ["--quick", "--seeds", "0", "1", "--variants", "lambda_0", "lambda_0.032",
                    "--output-dir", out, "--data-root", data, "--report-dir", rep]  # fmt: skip
            first = runner.main(argv)
            self.assertEqual(len(first["records"]), 8)
            res = first["report"]
            self.assertEqual(res["meta"]["seeds"], [0, 1])
            self.assertEqual(sorted(res["metrics"]), ["lambda_0", "lambda_0.032", "step2"])
            self.assertIn("full", res["protocols"])
            for name in ("results.json", "results.md", "fig4_lambda.png", "fig5_gallery.png"):
                self.assertTrue(os.path.isfile(os.path.join(rep, name)), name)
            for rec in first["records"][1:4]:  # seed 0's step 2 and variants: rescored
                self.assertLessEqual({"search", "search_g10", "search_full"}, set(rec["rescore"]))
            # everything finished: the next call trains nothing
            with mock.patch.object(runner, "_train", side_effect=AssertionError("retrained")):
                again = runner.main(argv)
            self.assertEqual(again["report"]["metrics"], res["metrics"])
            # seed 0's lambda_0.032 trained again from the same step-2 model: same results
            other = os.path.join(tmp, "again")
            for step in ("step1", "step2"):
                os.makedirs(os.path.join(other, "seed0"), exist_ok=True)
                os.rename(os.path.join(out, "seed0", step), os.path.join(other, "seed0", step))
            runner.main(["--quick", "--seeds", "0", "--variants", "lambda_0.032", "--output-dir",
                         other, "--data-root", data, "--no-report"])  # fmt: skip
            runs = [report.load_runs(d)[(0, "lambda_0.032")] for d in (out, other)]
            self.assertEqual(runs[0]["per_query"], runs[1]["per_query"])
            # ... down to the last bit of every saved detection and embedding
            preds = [
                np.load(os.path.join(d, "seed0", "lambda_0.032", "inference", runner.TEST_SET,
                                     runner.PREDICTIONS_FILE))
                for d in (out, other)
            ]  # fmt: skip
            for k in ("gallery_boxes", "gallery_scores", "gallery_embeddings", "query_embeddings"):
                self.assertGreater(preds[0][k].size, 0, k)
                np.testing.assert_array_equal(preds[0][k], preds[1][k], err_msg=k)


if __name__ == "__main__":
    unittest.main()
