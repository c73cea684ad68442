"""The model of the search service, loaded once: query embeddings and the indexing backend of jobs.

:class:`EagerEmbedder` holds the Detectron2 model that built the index (its stored config, its
checkpoint checked by hash) and embeds a query box exactly as ``GallerySearcher.embed`` does
(``extract_query_embeddings``); :class:`ExportedEmbedder` holds a model exported by
``python -m ian_d2.export`` (ONNX Runtime or TorchScript, no Detectron2), whose fingerprint must
be the index's. Both build their model on, and run every model call on, one thread of their own
(:class:`ModelThread`), shared with the indexing jobs (see :meth:`backend`): calls take turns, so
a query runs between two batches of a job.

Why one thread: PyTorch's CPU kernels run in OpenMP (libgomp) parallel regions, and every thread
that opens one gets a pool of OpenMP threads of its own. Once the process holds more of those
threads than CPU cores (the server's request threads each calling the model), libgomp stops
spinning between parallel regions and puts its threads to sleep after each one: every model call
then pays for waking them, twice the model's time on a 2-core machine
(``benchmarks/bench_serve.py``). One thread running the model keeps one pool.

Shape shorthand: n boxes, D embedding dimension.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

import numpy as np

from ..manifest import IndexManifest

__all__ = ["EagerEmbedder", "ExportedEmbedder", "LockedBackend", "ModelThread", "load_embedder"]

logger = logging.getLogger(__name__)


class ModelThread:
    """The one thread that runs a model: :meth:`run` calls a function on it and waits for the
    result (calls take turns, in the order they come)."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ian_d2-model")

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the model thread; its result, or its exception raised."""
        return self._executor.submit(fn, *args, **kwargs).result()


class LockedBackend:
    """An indexing backend (``EagerBackend`` / ``ExportedBackend``) whose model calls run on the
    embedder's :class:`ModelThread` (``run``), taking turns with the queries; everything else is
    delegated."""

    def __init__(self, backend, run: Callable):
        self._backend = backend
        self._run = run

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def __call__(self, batch: List[Dict], score_thresh: float):
        return self._run(self._backend, batch, score_thresh)


class EagerEmbedder:
    """
    The Detectron2 model of an index.

    Args:
        cfg: the index's model config (``index_config``).
        model: the built model in eval mode (None: built from ``cfg``).
    """

    name = "pytorch"

    def __init__(self, cfg, model=None):
        from ..indexer import ImageToInput, load_search_model

        self.cfg = cfg
        self.thread = ModelThread()
        self.model = model if model is not None else self.thread.run(load_search_model, cfg)
        self.to_input = ImageToInput(cfg)

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        from ..searcher import embed_boxes

        device = self.cfg.MODEL.DEVICE
        return self.thread.run(embed_boxes, self.model, self.to_input, device, image_bgr, boxes)

    def backend(self) -> LockedBackend:
        """The indexing backend of jobs: this model, its calls on :attr:`thread`."""
        from ..indexer import EagerBackend

        return LockedBackend(EagerBackend(self.cfg, model=self.model), self.thread.run)


class ExportedEmbedder:
    """
    A model exported by ``python -m ian_d2.export``.

    Args:
        model_dir: the export folder.
        backend: "onnx" or "torchscript" (None: the runtime's choice).
    """

    def __init__(self, model_dir: str, backend: Optional[str] = None):
        from ...export.runtime import PersonSearchModel
        from ..indexer import ExportedBackend

        self._indexing = ExportedBackend(model_dir, backend)
        self.thread = ModelThread()
        self.runtime = self.thread.run(PersonSearchModel, model_dir, backend)
        self._indexing.runtime = self.runtime
        self._indexing.name = self.runtime.backend
        self.name = self.runtime.backend

    def fingerprint(self) -> Dict:
        return self._indexing.fingerprint()

    def variant(self) -> Dict[str, str]:
        return self._indexing.variant()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        return self.thread.run(self.runtime.embed, image_bgr, boxes)

    def backend(self) -> LockedBackend:
        """The indexing backend of jobs: this runtime, its calls on :attr:`thread`."""
        return LockedBackend(self._indexing, self.thread.run)


def load_embedder(
    index_dir: str,
    manifest: IndexManifest,
    *,
    backend: str = "pytorch",
    exported_model: Optional[str] = None,
    weights: Optional[str] = None,
    device: Optional[str] = None,
    model=None,
    allow_variant_mismatch: bool = False,
):
    """
    The model of an index, checked against its fingerprint and its inference variant.

    Args:
        index_dir, manifest: the index.
        backend: "pytorch" (the index's Detectron2 model) or "onnx" / "torchscript" (the model
            exported to ``exported_model``).
        weights: pytorch: the index's checkpoint at another path (checked by hash).
        device: pytorch: "cpu" or "cuda" (default: cuda if available).
        model: pytorch: the already built model (tests).
        allow_variant_mismatch: accept another precision / ``EMBED_BOXES`` than the index's.

    Raises:
        ValueError: another model than the index's, missing files, inconsistent options.
    """
    if backend != "pytorch":
        if not exported_model:
            raise ValueError(f"--backend {backend} needs --exported-model DIR")
        embedder = ExportedEmbedder(exported_model, backend)
        manifest.check_model(embedder.fingerprint(), index_dir)
        manifest.check_variant(embedder.variant(), index_dir, allow_variant_mismatch)
        return embedder
    if exported_model:
        raise ValueError("--exported-model needs --backend onnx or torchscript")
    import torch

    from ...utils.fingerprint import inference_variant, model_fingerprint
    from ..searcher import index_config

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = index_config(manifest, weights, device)
    manifest.check_model(model_fingerprint(cfg), index_dir)
    manifest.check_variant(inference_variant(cfg), index_dir, allow_variant_mismatch)
    return EagerEmbedder(cfg, model)
