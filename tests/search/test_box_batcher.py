"""Query boxes of concurrent requests embedded in shared model calls (``BoxBatcher``): what queued
while the model thread was busy is embedded together (boxes of one image in one call, images of
one size in one call), each request gets its own rows, equal to one by one."""

import threading
import time
import unittest

import numpy as np
import torch

from ian_d2.search.serve.embedder import BoxBatcher, EagerEmbedder, ModelThread


def _concurrently(batcher: BoxBatcher, requests):
    """Runs ``batcher.embed`` for every (image, boxes) of ``requests`` while the model thread is
    held busy, then lets it go: all of them are queued for one drain. Their results (or errors)."""
    gate = threading.Event()
    batcher.thread.submit(gate.wait)  # the model is busy (a job's batch, another query)
    out = [None] * len(requests)

    def one(i):
        try:
            out[i] = batcher.embed(*requests[i])
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(batcher._pending) < len(requests):
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return out


def _image(rng, h=120, w=160) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


class TestBoxBatcherLogic(unittest.TestCase):
    """A stand-in model: each box's row is (its image's mean, x1, y1, number of boxes in the
    call)."""

    def setUp(self):
        self.calls = []

        def embed_many(inputs):
            self.calls.append([(img.shape, len(b)) for img, b in inputs])
            if any((b[:, 0] < 0).any() for _, b in inputs):
                raise ValueError("negative box")
            return np.concatenate(
                [
                    np.c_[np.full(len(b), img.mean()), b[:, :2], np.full(len(b), len(b))]
                    for img, b in inputs
                ]
            ).astype(np.float32)

        self.embed_many = embed_many

    def test_lone_request_runs_at_once(self):
        batcher = BoxBatcher(ModelThread(), self.embed_many, max_images=4)
        img = _image(np.random.default_rng(0))
        out = batcher.embed(img, np.float32([[1, 2, 30, 40]]))
        np.testing.assert_allclose(out, [[img.mean(), 1, 2, 1]], rtol=1e-6)
        self.assertEqual(batcher.stats, {"requests": 1, "calls": 1})

    def test_queued_requests_share_calls(self):
        rng = np.random.default_rng(1)
        frame, a, b, c, small = _image(rng), _image(rng), _image(rng), _image(rng), _image(rng, 90)
        requests = [
            (frame, np.float32([[1, 2, 30, 40]])),
            (frame, np.float32([[3, 4, 50, 60], [5, 6, 70, 80]])),  # same frame: same call
            (a, np.float32([[7, 8, 20, 20]])),
            (b, np.float32([[9, 10, 20, 20]])),
            (c, np.float32([[11, 12, 20, 20]])),
            (small, np.float32([[13, 14, 20, 20]])),  # another size: its own call
        ]
        batcher = BoxBatcher(ModelThread(), self.embed_many, max_images=3)
        out = _concurrently(batcher, requests)
        for (img, boxes), got in zip(requests, out):
            self.assertEqual(got.shape, (len(boxes), 4))
            np.testing.assert_allclose(got[:, 0], img.mean(), rtol=1e-6)
            np.testing.assert_array_equal(got[:, 1:3], boxes[:, :2])
        self.assertEqual(out[0][0, 3], 3)  # the frame's 3 boxes went in one image
        # frame + a + b (max 3 images), then c, then the small image
        self.assertEqual(
            sorted(self.calls),
            sorted([[((120, 160, 3), 3), ((120, 160, 3), 1), ((120, 160, 3), 1)],
                    [((120, 160, 3), 1)], [((90, 160, 3), 1)]]),
        )  # fmt: skip
        self.assertEqual(batcher.stats, {"requests": 6, "calls": 3})

    def test_a_bad_request_fails_alone(self):
        rng = np.random.default_rng(2)
        frame = _image(rng)
        requests = [
            (frame, np.float32([[1, 2, 30, 40]])),
            (frame, np.float32([[-5, 2, 30, 40]])),
            (_image(rng), np.float32([[3, 4, 30, 40]])),
        ]
        out = _concurrently(BoxBatcher(ModelThread(), self.embed_many, 4), requests)
        self.assertIsInstance(out[1], ValueError)
        np.testing.assert_array_equal(out[0][:, 1:3], [[1, 2]])
        np.testing.assert_array_equal(out[2][:, 1:3], [[3, 4]])
        with self.assertRaises(ValueError):
            BoxBatcher(ModelThread(), self.embed_many, 0)


class TestBatchedModelCalls(unittest.TestCase):
    def test_equal_to_one_by_one(self):
        """The small random model: boxes of one frame, images of one size and of another,
        embedded together, equal the gallery path's embeddings of each alone."""
        from detectron2.modeling import build_model

        from ian_d2.search.searcher import embed_boxes
        from ian_d2.utils.testing import small_cfg

        cfg = small_cfg("")
        cfg.MODEL.DEVICE = "cpu"
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        embedder = EagerEmbedder(cfg, model=model, max_images=4)
        rng = np.random.default_rng(3)
        frame = _image(rng)
        requests = [
            (frame, np.float32([[10, 12, 60, 110]])),
            (frame, np.float32([[70, 5, 120, 100], [100, 20, 150, 118]])),
            (_image(rng), np.float32([[5, 5, 50, 90]])),
            (_image(rng), np.float32([[30, 10, 90, 115]])),
            (_image(rng, 96, 128), np.float32([[20, 10, 60, 90]])),
        ]
        out = _concurrently(embedder.batcher, requests)
        self.assertEqual(embedder.batcher.stats, {"requests": 5, "calls": 2})
        for (img, boxes), got in zip(requests, out):
            alone = embed_boxes(model, embedder.to_input, "cpu", img, boxes)
            self.assertEqual(got.shape, alone.shape)
            np.testing.assert_allclose(got, alone, atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(out[1], axis=1), 1.0, atol=1e-5)


if __name__ == "__main__":
    unittest.main()
