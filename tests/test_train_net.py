"""train_net.py end to end on a tiny generated dataset: train, checkpoint, resume, evaluate."""

import json
import os
import tempfile
import unittest

import pytest

from ian_d2.data import register_person_search_dataset
from tests.repo_scripts import QUICK_CONFIG, load_script
from tests.synthetic_testing import unregister

PREFIX = "_train_net_test_synth"


@pytest.mark.synthetic_cuhk_sysu
class TestTrainNet(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.names = register_person_search_dataset("cuhk_sysu", PREFIX, cls.synthetic.root)
        cls.train_net = load_script("train_net.py", "train_net")

    @classmethod
    def tearDownClass(cls):
        unregister(cls.names)
        cls._tmp.cleanup()

    def _args(self, out, *opts, resume=False, eval_only=False):
        parser = self.train_net.default_argument_parser()
        argv = ["--config-file", QUICK_CONFIG] + (["--resume"] if resume else [])
        argv += ["--eval-only"] if eval_only else []
        argv += [
            "OUTPUT_DIR", out,
            "DATASETS.TRAIN", f"('{self.names['train']}',)",
            "DATASETS.TEST", f"('{self.names['test']}',)",
            "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
            "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
            "MODEL.RPN.POST_NMS_TOPK_TEST", "20", "DATALOADER.NUM_WORKERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.WARMUP_ITERS", "0",
        ] + list(opts)  # fmt: skip
        return parser.parse_args(argv)

    @pytest.mark.slow  # two training runs and two evaluations
    def test_train_resume_and_eval(self):
        out = os.path.join(self._tmp.name, "run")
        # a run "killed" after 4 of its iterations: it stops at MAX_ITER 4, checkpoints at 2, 4
        self.train_net.main(self._args(out, "SOLVER.MAX_ITER", "4"))
        self.assertTrue(os.path.isfile(os.path.join(out, "model_0000003.pth")))
        with open(os.path.join(out, "last_checkpoint")) as f:
            self.assertEqual(f.read().strip(), "model_final.pth")
        os.remove(os.path.join(out, "model_final.pth"))
        with open(os.path.join(out, "last_checkpoint"), "w") as f:
            f.write("model_0000003.pth")
        # --resume continues at iteration 4 from the last checkpoint, then evaluates
        with self.assertLogs("detectron2.engine.train_loop", "INFO") as logs:
            self.train_net.main(self._args(out, "SOLVER.MAX_ITER", "6", resume=True))
        self.assertIn("Starting training from iteration 4", "\n".join(logs.output))
        inference_dir = os.path.join(out, "inference", self.names["test"])
        with open(os.path.join(inference_dir, "person_search_results.json")) as f:
            res = json.load(f)["results"]
        self.assertEqual(sorted(res), ["detection", "detection_labeled", "search", "search_full",
                                       "search_g10", "search_occlusion", "search_resolution"])  # fmt: skip
        for metrics in res.values():
            for v in metrics.values():
                self.assertTrue(0.0 <= v <= 100.0)
        self.assertTrue(
            os.path.isfile(os.path.join(inference_dir, "person_search_predictions.npz"))
        )
        # --eval-only on the final weights gives the same numbers
        again = self.train_net.main(
            self._args(out, "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), eval_only=True)
        )
        self.assertEqual(again, res)

    def test_offline_weights_error_names_the_file(self):
        with self.assertRaisesRegex(RuntimeError, r"MODEL.WEIGHTS='https://127.0.0.1:9/R-50.pkl'"):
            self.train_net.check_weights_available("https://127.0.0.1:9/R-50.pkl")
        self.train_net.check_weights_available("")  # random init: nothing to fetch


if __name__ == "__main__":
    unittest.main()
