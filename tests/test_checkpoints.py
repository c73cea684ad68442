"""Checkpoints stand alone, and a killed training resumes exactly from its last checkpoint.

* A trained checkpoint loads in ``DefaultPredictor`` and ``train_net.py --eval-only`` in a fresh
  process whose ``$DETECTRON2_DATASETS`` is an EMPTY folder: the number of identities comes
  from the checkpoint (or from the config that training saved beside it), not the training set.
* A real ``train_net.py`` process is SIGKILLed after its first periodic checkpoint; restarted
  with ``--resume`` it has the checkpoint's iteration, optimizer state, LR scheduler, centers,
  OIM lookup table and queue, and trains on to the end.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import pytest
import torch

from ian_d2.config import get_ian_cfg
from ian_d2.modeling import num_pids_in_checkpoint
from tests.repo_scripts import REPO, load_script

OIM_CONFIG = os.path.join(REPO, "configs", "quick_schedules", "IAN_R18_GN_OIM_instant_test.yaml")
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "20", "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.WARMUP_ITERS", "0",
]  # fmt: skip

# Run in a fresh interpreter with an empty $DETECTRON2_DATASETS: DefaultPredictor on one image
# with the repository config (NUM_PIDS 0) and with the config saved by training, then
# --eval-only on a test split registered from elsewhere. Prints one JSON line.
_STANDALONE_SCRIPT = r"""
import json, sys
import cv2
import ian_d2
from detectron2.data import DatasetCatalog
from detectron2.engine import DefaultPredictor
from ian_d2.data import register_person_search_dataset
from tests.repo_scripts import load_script

config, saved_config, weights, image, test_root, out_dir = sys.argv[1:7]
train_name = "cuhk_sysu_synth_train"
readable = True
try:
    DatasetCatalog.get(train_name)
except Exception:
    readable = False
result = {"train_set_readable": readable}
for name, path in (("repo_config", config), ("saved_config", saved_config)):
    cfg = ian_d2.get_ian_cfg(path)
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)
    inst = predictor(cv2.imread(image))["instances"]
    heads = predictor.model.roi_heads
    result[name] = {
        "num_pids": int(heads.reid_loss.num_pids),
        "centers_sum": float(heads.center_loss.centers.double().sum()),
        "lut_sum": float(heads.reid_loss.lut.double().sum()),
        "detections": len(inst),
        "embed_shape": list(inst.pred_embeds.shape),
    }
names = register_person_search_dataset("cuhk_sysu", "_standalone", test_root)
train_net = load_script("train_net.py", "train_net")
argv = ["--config-file", config, "--eval-only", "OUTPUT_DIR", out_dir, "MODEL.WEIGHTS", weights,
        "DATASETS.TEST", "('%s',)" % names["test"], "MODEL.DEVICE", "cpu"] + sys.argv[7:]
res = train_net.main(train_net.default_argument_parser().parse_args(argv))
result["eval_only"] = res
print("RESULT " + json.dumps(result))
"""


def _env(datasets_root):
    env = dict(os.environ)
    env["DETECTRON2_DATASETS"] = datasets_root
    # the standalone script runs from a temporary folder and imports tests.repo_scripts
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return env


def _train_net_cmd(out, *opts, resume=False):
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", OIM_CONFIG]
    cmd += ["--resume"] if resume else []
    return cmd + ["OUTPUT_DIR", out, "DATASETS.TEST", "()"] + SMALL + list(opts)


def _assert_same(test, a, b, path="checkpoint"):
    """Nested dicts/lists of tensors and numbers: equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        test.assertTrue(torch.equal(a, b.to(a.device)), path)
    elif isinstance(a, dict):
        test.assertEqual(sorted(a, key=str), sorted(b, key=str), path)
        for k in a:
            _assert_same(test, a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        test.assertEqual(len(a), len(b), path)
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(test, x, y, f"{path}[{i}]")
    else:
        test.assertEqual(a, b, path)


@pytest.mark.slow
@pytest.mark.synthetic_cuhk_sysu
class TestCheckpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.datasets = cls.synthetic.datasets
        cls.root = cls.synthetic.root  # under the built-in synthetic name, cuhk_sysu_synth
        cls.summary = cls.synthetic.summary
        cls.empty = os.path.join(cls._tmp.name, "empty")
        os.makedirs(cls.empty)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_checkpoint_without_training_set(self):
        out = os.path.join(self._tmp.name, "trained")
        cmd = _train_net_cmd(out, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000")
        subprocess.run(cmd, env=_env(self.datasets), check=True, capture_output=True, cwd=REPO)
        weights = os.path.join(out, "model_final.pth")
        num_pids = self.summary["train_identities"]
        self.assertEqual(num_pids_in_checkpoint(weights), num_pids)
        # the config saved beside the checkpoints holds the number of identities
        saved = get_ian_cfg(os.path.join(out, "config.yaml"))
        self.assertEqual(saved.MODEL.REID.NUM_PIDS, num_pids)

        image = os.path.join(self.root, "Image", "SSM", "s1.jpg")
        self.assertTrue(os.path.isfile(image))
        script = os.path.join(self._tmp.name, "standalone.py")
        with open(script, "w") as f:
            f.write(_STANDALONE_SCRIPT)
        args = [OIM_CONFIG, os.path.join(out, "config.yaml"), weights, image, self.root]
        args += [os.path.join(self._tmp.name, "eval"), *SMALL]
        proc = subprocess.run(
            [sys.executable, script, *args], env=_env(self.empty), capture_output=True, text=True
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT ") :])
        self.assertFalse(result["train_set_readable"])  # $DETECTRON2_DATASETS is empty
        ckpt = torch.load(weights, map_location="cpu", weights_only=False)["model"]
        for name in ("repo_config", "saved_config"):
            with self.subTest(config=name):
                r = result[name]
                self.assertEqual(r["num_pids"], num_pids)
                # the checkpoint's memories were loaded, not left at their initial zeros
                centers = ckpt["roi_heads.center_loss.centers"].double().sum().item()
                self.assertAlmostEqual(r["centers_sum"], centers, places=6)
                self.assertNotEqual(r["lut_sum"], 0.0)
                self.assertEqual(r["embed_shape"], [r["detections"], 256])
        self.assertIn("search", result["eval_only"])
        self.assertIn("detection", result["eval_only"])

    def test_sigkill_then_resume(self):
        out = os.path.join(self._tmp.name, "killed")
        opts = ["SOLVER.MAX_ITER", "400", "SOLVER.CHECKPOINT_PERIOD", "2"]
        proc = subprocess.Popen(
            _train_net_cmd(out, *opts),
            env=_env(self.datasets),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tag = os.path.join(out, "last_checkpoint")
        deadline = time.time() + 240
        try:
            while not os.path.exists(tag):
                self.assertIsNone(proc.poll(), "train_net.py ended before its first checkpoint")
                self.assertLess(time.time(), deadline, "no checkpoint within 240 s")
                time.sleep(0.05)
            time.sleep(0.3)  # let it run on: the kill may land mid-iteration or mid-save
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.assertEqual(proc.returncode, -signal.SIGKILL)

        with open(tag) as f:
            name = f.read().strip()
        ckpt = torch.load(os.path.join(out, name), map_location="cpu", weights_only=False)
        iteration = int(ckpt["iteration"])
        self.assertEqual(name, f"model_{iteration:07d}.pth")
        self.assertLess(iteration, 399)

        train_net = load_script("train_net.py", "train_net_resume")
        argv = _train_net_cmd(out, *opts, resume=True)[2:]
        argv += ["DATASETS.TRAIN", f"('{self._register()}',)"]
        cfg = train_net.setup(train_net.default_argument_parser().parse_args(argv))
        trainer = train_net.Trainer(cfg)
        trainer.resume_or_load(resume=True)
        self.assertEqual(trainer.start_iter, iteration + 1)
        # optimizer (momentum buffers), LR scheduler, iteration: the checkpoint's trainer state
        _assert_same(self, ckpt["trainer"], trainer.state_dict(), "trainer")
        self.assertIn("optimizer", ckpt["trainer"]["_trainer"])
        self.assertTrue(any("LRScheduler" in k for k in ckpt["trainer"]["hooks"]))
        state = trainer.model.state_dict()
        for key in (
            "roi_heads.center_loss.centers",
            "roi_heads.reid_loss.lut",
            "roi_heads.reid_loss.queue",
            "roi_heads.reid_loss.queue_ptr",
        ):
            with self.subTest(key=key):
                self.assertTrue(torch.equal(state[key], ckpt["model"][key]), key)
                self.assertGreater(float(state[key].double().abs().sum()), 0.0, key)
        _assert_same(self, ckpt["model"], dict(state), "model")

        # and a real restarted process trains on from there to the end
        proc = subprocess.run(
            _train_net_cmd(out, "SOLVER.MAX_ITER", str(iteration + 3), resume=True),
            env=_env(self.datasets),
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn(
            f"Starting training from iteration {iteration + 1}", proc.stdout + proc.stderr
        )
        final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
        self.assertEqual(int(final["iteration"]), iteration + 2)

    def _register(self):
        from detectron2.data import DatasetCatalog

        from ian_d2.data import register_person_search_dataset

        name = "_resume_synth"
        if f"{name}_train" not in DatasetCatalog.list():
            register_person_search_dataset("cuhk_sysu", name, self.root)
        return f"{name}_train"


if __name__ == "__main__":
    unittest.main()
