"""A tiny adaptation end to end (fast tier): the tiny synthetic CUHK-SYSU as the labeled source,
a small random-init model trained on nothing, the tiny synthetic video indexed with tracks by
that model as the unlabeled footage; 2 rounds of 2 iterations. And the refusals of bad input,
each before anything is written."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np
import pytest
import torch

from ian_d2.adapt.footage import read_footage
from ian_d2.adapt.memory import centroids
from ian_d2.adapt.rounds import MANIFEST, adapt, round_dir, target_repeat
from ian_d2.data.datasets.builtin import get_num_train_pids
from ian_d2.data.synthetic import generate_video
from ian_d2.search import index_gallery
from ian_d2.utils.testing import save_small_model, small_cfg
from tests.synthetic_testing import registered

ROUNDS = 2


def _tree_digest(folder: str) -> str:
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(base, f)
            h.update(os.path.relpath(p, folder).encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def adapt_cfg(weights: str, num_pids: int, train: str, *opts):
    """The small model's config with a tiny adaptation schedule."""
    return small_cfg(
        weights,
        "MODEL.REID.NUM_PIDS", num_pids,
        "TEST.DETECTIONS_PER_IMAGE", 4,
        "DATASETS.TRAIN", (train,),
        "DATASETS.TEST", (),
        "ADAPT.ROUNDS", ROUNDS,
        "ADAPT.ITERS_PER_ROUND", 2,
        "ADAPT.BOX_THRESH", 0.0,
        "ADAPT.MIN_SAMPLES", 2,
        "ADAPT.K1", 5,
        "ADAPT.K2", 2,
        "SOLVER.IMS_PER_BATCH", 2,
        "SOLVER.REFERENCE_WORLD_SIZE", 1,
        "SOLVER.STEPS", (),
        "SOLVER.WARMUP_ITERS", 0,
        "INPUT.MIN_SIZE_TRAIN", (96,),
        "INPUT.MAX_SIZE_TRAIN", 128,
        "DATALOADER.NUM_WORKERS", 0,
        "SEED", 0,
        *opts,
    )  # fmt: skip


@pytest.mark.synthetic_cuhk_sysu
class TestTinyAdaptation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls._registered = registered("cuhk_sysu", "adapt_src", cls.synthetic.root)
        names = cls._registered.__enter__()
        cls.train = names["train"]
        cls.num_source = get_num_train_pids(cls.train)
        cls.weights = save_small_model(
            os.path.join(tmp, "model.pth"), 0, "MODEL.REID.NUM_PIDS", cls.num_source
        )
        cls.cfg = adapt_cfg(cls.weights, cls.num_source, cls.train)
        cls.videos = os.path.join(tmp, "videos")
        generate_video(cls.videos, size="tiny", seed=0)
        cls.index = os.path.join(tmp, "index")
        index_gallery(cls.cfg, [cls.videos], cls.index, fps=5, score_thresh=0.0, num_workers=0,
                      progress=False)  # fmt: skip
        cls.index_digest = _tree_digest(cls.index)
        cls.out = os.path.join(tmp, "out")
        cls.manifest = adapt(cls.cfg, cls.index, cls.out)

    @classmethod
    def tearDownClass(cls):
        cls._registered.__exit__(None, None, None)
        cls._tmp.cleanup()

    def test_manifest_records_rounds_and_clusters(self):
        m = self.manifest
        with open(os.path.join(self.out, MANIFEST)) as f:
            self.assertEqual(json.load(f), m)
        self.assertEqual(m["index"], os.path.abspath(self.index))
        self.assertEqual(m["num_source_identities"], self.num_source)
        self.assertEqual(m["settings"]["pseudo_labels"], "both")
        self.assertEqual([r["round"] for r in m["rounds"]], list(range(ROUNDS)))
        footage = read_footage(self.index)
        for r in m["rounds"]:
            k = r["num_identities"]
            self.assertGreater(k, 0)
            hist = r["pseudo_labels"]["identity_size_histogram"]
            self.assertEqual(sum(hist.values()), k)  # one size per identity
            self.assertEqual(r["pseudo_labels"]["num_detections"], len(footage))
            self.assertEqual(r["identity_rows"]["roi_heads.center_loss.centers"],
                             self.num_source + k)  # fmt: skip
        self.assertTrue(os.path.isfile(m["final"]["weights"]))

    def test_target_share_of_the_batches(self):
        self.assertEqual(target_repeat(0.5, 100, 10), 10)
        self.assertEqual(target_repeat(0.75, 100, 10), 30)
        self.assertEqual(target_repeat(0.5, 10, 100), 1)  # never cut
        with self.assertRaisesRegex(ValueError, "TARGET_SHARE 1.0"):
            target_repeat(1.0, 10, 10)
        for r in self.manifest["rounds"]:
            want = target_repeat(0.5, r["source_images"], r["target_images"])
            self.assertEqual(r["target_repeat"], want)
            self.assertGreater(r["source_images"], 0)

    def test_round_starts_from_source_rows_and_centroids(self):
        start = torch.load(self.weights, map_location="cpu", weights_only=False)["model"]
        init = torch.load(os.path.join(round_dir(self.out, 0), "init.pth"), weights_only=False)
        init = init["model"]
        labels = np.load(os.path.join(round_dir(self.out, 0), "pseudo_labels.npy"))
        footage = read_footage(self.index)
        k = int(labels.max()) + 1
        c = torch.from_numpy(centroids(footage.embeddings, labels, k))
        s = self.num_source
        key = "roi_heads.center_loss.centers"
        self.assertTrue(torch.equal(init[key][:s], start[key][:s]))
        self.assertTrue(torch.allclose(init[key][s:], c))
        w = "roi_heads.reid_loss.classifier.weight"
        self.assertEqual(init[w].shape[0], s + k + 1)
        self.assertTrue(torch.equal(init[w][:s], start[w][:s]))
        self.assertTrue(torch.equal(init[w][-1], start[w][-1]))  # the background class
        cos = torch.nn.functional.cosine_similarity(init[w][s : s + k], c)
        self.assertTrue(bool((cos > 0.999).all()))
        # every other tensor is the start model's
        same = [n for n in start if n not in (key, w, "roi_heads.reid_loss.classifier.bias")]
        self.assertTrue(all(torch.equal(init[n], start[n]) for n in same))

    def test_pseudo_boxes_follow_the_cannot_link(self):
        with open(os.path.join(round_dir(self.out, 1), "target.json")) as f:
            records = json.load(f)
        self.assertTrue(records)
        for r in records:
            pids = [a["person_id"] for a in r["annotations"] if a["person_id"] >= 0]
            self.assertEqual(len(pids), len(set(pids)), r["image_id"])  # one frame, distinct
            self.assertTrue(all(p >= self.num_source for p in pids))
            self.assertTrue(os.path.isfile(r["file_name"]))

    def test_adapted_model_is_trained_and_loads(self):
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.modeling import build_model

        from ian_d2.modeling.query import extract_query_embeddings
        from ian_d2.modeling.num_pids import num_pids_in_checkpoint

        final = self.manifest["final"]["weights"]
        k = self.manifest["rounds"][-1]["num_identities"]
        self.assertEqual(num_pids_in_checkpoint(final), self.num_source + k)
        start = torch.load(self.weights, map_location="cpu", weights_only=False)["model"]
        end = torch.load(final, map_location="cpu", weights_only=False)["model"]
        key = "roi_heads.reid_head.proj.weight"
        key = key if key in end else next(n for n in end if n.startswith("backbone"))
        self.assertFalse(torch.equal(start[key], end[key]))  # trained
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.MODEL.REID.NUM_PIDS = 0  # resolved from the checkpoint, as DefaultPredictor does
        cfg.MODEL.WEIGHTS = final
        cfg.DATASETS.TRAIN = ()
        model = build_model(cfg)
        DetectionCheckpointer(model).load(final)
        model.eval()
        image = torch.rand(3, 96, 128) * 255
        emb = extract_query_embeddings(model, [{"image": image}], [[[10, 10, 40, 90]]])
        self.assertEqual(tuple(emb.shape), (1, cfg.MODEL.REID.EMBED_DIM))
        self.assertAlmostEqual(float(emb.norm()), 1.0, places=4)

    def test_rerun_resumes_without_training_again(self):
        done = os.path.join(round_dir(self.out, ROUNDS - 1), "round.json")
        before = os.path.getmtime(done)
        again = adapt(self.cfg, self.index, self.out)
        self.assertEqual(again["rounds"], self.manifest["rounds"])
        self.assertEqual(os.path.getmtime(done), before)

    def test_index_untouched(self):
        self.assertEqual(_tree_digest(self.index), self.index_digest)

    def test_output_of_another_run_refused(self):
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.ADAPT.EPS = 0.5
        with self.assertRaisesRegex(ValueError, "another index, model or settings"):
            adapt(cfg, self.index, self.out)

    # bad input: a named error, nothing written

    def _refused(self, cfg, index, pattern):
        out = os.path.join(self._tmp.name, "refused")
        digest = _tree_digest(index) if os.path.isdir(index) else None
        with self.assertRaisesRegex(ValueError, pattern):
            adapt(cfg, index, out)
        self.assertFalse(os.path.exists(os.path.join(out, MANIFEST)))
        if digest is not None:
            self.assertEqual(_tree_digest(index), digest)

    def test_index_without_tracks_refused(self):
        index = os.path.join(self._tmp.name, "no_tracks")
        if not os.path.isdir(index):
            index_gallery(self.cfg, [self.videos], index, fps=5, score_thresh=0.0, num_workers=0,
                          progress=False, tracks=False)  # fmt: skip
        self._refused(self.cfg, index, r"has no tracks.*python -m ian_d2\.search tracks")

    def test_another_model_refused(self):
        other = save_small_model(
            os.path.join(self._tmp.name, "other.pth"), 1, "MODEL.REID.NUM_PIDS", self.num_source
        )
        cfg = adapt_cfg(other, self.num_source, self.train)
        self._refused(cfg, self.index, "built with another model")

    def test_too_few_confident_detections_refused(self):
        cfg = adapt_cfg(self.weights, self.num_source, self.train, "ADAPT.BOX_THRESH", 1.5)
        self._refused(cfg, self.index, r"ADAPT\.BOX_THRESH 1\.5")

    def test_moved_footage_refused(self):
        videos = os.path.join(self._tmp.name, "videos_to_move")
        index = os.path.join(self._tmp.name, "index_moved")
        shutil.copytree(self.videos, videos)
        index_gallery(self.cfg, [videos], index, fps=5, score_thresh=0.0, num_workers=0,
                      progress=False)  # fmt: skip
        os.rename(videos, videos + "_elsewhere")
        self._refused(self.cfg, index, r"no longer exist, e\.g\. '.*videos_to_move.*cam1\.avi'")

    def test_not_an_index_refused(self):
        self._refused(self.cfg, self.videos, "is not a search index")


if __name__ == "__main__":
    unittest.main()


@pytest.mark.slow
@pytest.mark.synthetic_cuhk_sysu
class TestAdaptationTwoProcesses(unittest.TestCase):
    """``launch`` with 2 processes (gloo): every round ends with the same model on both, the
    identity memories (center-loss centers, RSS classifier) included, bit for bit."""

    def test_identical_on_every_process(self):
        from datetime import timedelta

        import tests.distributed_workers as workers
        from ian_d2.utils.comm import launch

        with (
            tempfile.TemporaryDirectory() as tmp,
            registered("cuhk_sysu", "adapt2_parent", self.synthetic.root) as names,
        ):
            num_source = get_num_train_pids(names["train"])
            weights = save_small_model(
                os.path.join(tmp, "model.pth"), 0, "MODEL.REID.NUM_PIDS", num_source
            )
            cfg = adapt_cfg(weights, num_source, names["train"])
            videos = os.path.join(tmp, "videos")
            generate_video(videos, size="tiny", seed=0)
            index = os.path.join(tmp, "index")
            index_gallery(cfg, [videos], index, fps=5, score_thresh=0.0, num_workers=0,
                          progress=False)  # fmt: skip
            launch(workers.adapt_worker, 2, dist_url="auto", timeout=timedelta(seconds=300),
                   args=(self.synthetic.root, weights, index, tmp))  # fmt: skip
            for k in range(ROUNDS):
                a, b = (
                    torch.load(os.path.join(tmp, f"rank{r}.round{k}.pth"), weights_only=False)
                    for r in range(2)
                )
                self.assertEqual(sorted(a), sorted(b))
                for key in a:
                    with self.subTest(round=k, key=key):
                        self.assertTrue(torch.equal(a[key], b[key]))
                self.assertIn("roi_heads.center_loss.centers", a)
            with open(os.path.join(tmp, "adapted", MANIFEST)) as f:
                self.assertEqual(len(json.load(f)["rounds"]), ROUNDS)


@pytest.mark.slow
@pytest.mark.synthetic_cuhk_sysu
class TestAdaptCommandKilled(unittest.TestCase):
    """``python -m ian_d2.adapt`` killed with SIGKILL in the middle, then run again: the same
    adapted model as a run that was never stopped."""

    def _argv(self, out):
        from tests.repo_scripts import QUICK_CONFIG

        cfg = adapt_cfg(self.weights, self.num_source, "cuhk_sysu_synth_train")
        opts = []
        for key in ("MODEL.REID.NUM_PIDS", "TEST.DETECTIONS_PER_IMAGE", "ADAPT.ROUNDS",
                    "ADAPT.ITERS_PER_ROUND", "ADAPT.BOX_THRESH", "ADAPT.MIN_SAMPLES", "ADAPT.K1",
                    "ADAPT.K2", "SOLVER.IMS_PER_BATCH", "SOLVER.REFERENCE_WORLD_SIZE",
                    "SOLVER.WARMUP_ITERS", "INPUT.MAX_SIZE_TRAIN", "DATALOADER.NUM_WORKERS",
                    "SEED", "MODEL.RPN.POST_NMS_TOPK_TEST", "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                    "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST"):  # fmt: skip
            node = cfg
            for part in key.split("."):
                node = node[part]
            opts += [key, str(node)]
        opts += [
            "SOLVER.STEPS",
            "()",
            "INPUT.MIN_SIZE_TRAIN",
            "(96,)",
            "DATASETS.TEST",
            "()",
            "DATASETS.TRAIN",
            "('cuhk_sysu_synth_train',)",
            "MODEL.WEIGHTS",
            self.weights,
        ]
        return [sys.executable, "-m", "ian_d2.adapt", "--index", self.index, "--config-file",
                QUICK_CONFIG, "--output", out, *opts]  # fmt: skip

    def _run(self, out, kill_when=None):
        from tests.repo_scripts import REPO

        env = dict(os.environ, DETECTRON2_DATASETS=self.synthetic.datasets)
        proc = subprocess.Popen(self._argv(out), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        if kill_when is None:
            _, err = proc.communicate(timeout=600)
            self.assertEqual(proc.returncode, 0, err.decode()[-3000:])
            return
        deadline = time.time() + 600
        while not os.path.exists(kill_when) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        self.assertEqual(proc.returncode, -signal.SIGKILL, "it ended before being killed")

    def test_killed_then_resumed_equals_uninterrupted(self):
        with tempfile.TemporaryDirectory() as tmp:
            from ian_d2.data import register_person_search_dataset
            from tests.synthetic_testing import unregister

            names = register_person_search_dataset("cuhk_sysu", "adapt_kill", self.synthetic.root)
            try:
                self.num_source = get_num_train_pids(names["train"])
                cfg = adapt_cfg("", self.num_source, names["train"])
            finally:
                unregister(names)
            self.weights = save_small_model(
                os.path.join(tmp, "model.pth"), 0, "MODEL.REID.NUM_PIDS", self.num_source
            )
            cfg.defrost()
            cfg.MODEL.WEIGHTS = self.weights
            videos = os.path.join(tmp, "videos")
            generate_video(videos, size="tiny", seed=0)
            self.index = os.path.join(tmp, "index")
            index_gallery(cfg, [videos], self.index, fps=5, score_thresh=0.0, num_workers=0,
                          progress=False)  # fmt: skip
            whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
            self._run(whole)
            # killed once its second round is prepared (training it), then run again
            self._run(killed, kill_when=os.path.join(round_dir(killed, 1), "prepared.json"))
            self.assertFalse(os.path.exists(os.path.join(killed, "model_final.pth")))
            self._run(killed)
            with open(os.path.join(whole, MANIFEST)) as f:
                a = json.load(f)
            with open(os.path.join(killed, MANIFEST)) as f:
                b = json.load(f)
            self.assertEqual([r["num_identities"] for r in a["rounds"]],
                             [r["num_identities"] for r in b["rounds"]])  # fmt: skip
            self.assertEqual(a["final"]["weights_sha256"], b["final"]["weights_sha256"])
