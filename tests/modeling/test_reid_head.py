"""Unit tests of the identity embedding head: the dropout option (MODEL.REID.DROPOUT)."""

import unittest

import torch
from torch import nn

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from ian_d2.config import add_ian_config
from ian_d2.modeling import ReIDEmbeddingHead


def _head(dropout, seed=0):
    torch.manual_seed(seed)
    return ReIDEmbeddingHead(ShapeSpec(channels=32), embed_dim=8, norm="", dropout=dropout)


class TestReIDHeadDropout(unittest.TestCase):
    def test_default_is_off(self):
        cfg = get_cfg()
        add_ian_config(cfg)
        self.assertEqual(cfg.MODEL.REID.DROPOUT, 0.0)
        head = ReIDEmbeddingHead(cfg, ShapeSpec(channels=32))
        self.assertIsNone(head.dropout)

    def test_zero_adds_no_module(self):
        head, plain = _head(0.0), ReIDEmbeddingHead(ShapeSpec(channels=32), embed_dim=8, norm="")
        self.assertFalse(any(isinstance(m, nn.Dropout) for m in head.modules()))
        self.assertEqual(list(head.state_dict()), list(plain.state_dict()))
        self.assertEqual([n for n, _ in head.named_modules()], ["", "proj"])
        # p = 0 in training mode: the output is deterministic, as without the option
        head.train()
        x = torch.randn(6, 32)
        self.assertTrue(torch.equal(head(x), head(x)))

    def test_positive_changes_training_output_only(self):
        off, on = _head(0.0), _head(0.5)
        # same initial weights: the dropout module holds no parameters or buffers
        self.assertEqual(on.state_dict().keys(), off.state_dict().keys())
        for k, v in off.state_dict().items():
            self.assertTrue(torch.equal(v, on.state_dict()[k]))
        self.assertIsInstance(on.dropout, nn.Dropout)
        self.assertEqual(on.dropout.p, 0.5)
        x = torch.randn(6, 32, 2, 2)

        off.eval()
        on.eval()
        self.assertTrue(torch.equal(on(x), off(x)))

        off.train()
        on.train()
        torch.manual_seed(1)
        y_on = on(x)
        self.assertFalse(torch.allclose(y_on, off(x)))
        torch.manual_seed(2)
        self.assertFalse(torch.allclose(y_on, on(x)))  # a new mask per call
        # still L2-normalised
        self.assertTrue(torch.allclose(y_on.norm(dim=1), torch.ones(6), atol=1e-5))

    def test_old_checkpoint_loads(self):
        old = _head(0.0, seed=1).state_dict()  # a checkpoint of a head without the option
        on = _head(0.3)
        result = on.load_state_dict(old, strict=True)
        self.assertEqual((result.missing_keys, result.unexpected_keys), ([], []))
        for key, value in old.items():
            self.assertTrue(torch.equal(on.state_dict()[key], value), key)

    def test_invalid_probability(self):
        for p in (-0.1, 1.0):
            with self.assertRaises(ValueError):
                _head(p)


if __name__ == "__main__":
    unittest.main()
