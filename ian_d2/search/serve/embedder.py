"""The model of the search service, loaded once: query embeddings and the indexing backend of jobs.

:class:`EagerEmbedder` holds the Detectron2 model that built the index (its stored config, its
checkpoint checked by hash) and embeds a query box exactly as ``GallerySearcher.embed`` does
(``extract_query_embeddings``); :class:`ExportedEmbedder` holds a model exported by
``python -m ian_d2.export`` (ONNX Runtime or TorchScript, no Detectron2), whose fingerprint must
be the index's. Both serialise model calls with one lock, shared with the indexing jobs (see
:meth:`backend`), so that a query can run between two batches of a job.

Shape shorthand: n boxes, D embedding dimension.
"""

import logging
import threading
from typing import Dict, List, Optional

import numpy as np

from ..manifest import IndexManifest

__all__ = ["EagerEmbedder", "ExportedEmbedder", "LockedBackend", "load_embedder"]

logger = logging.getLogger(__name__)


class LockedBackend:
    """An indexing backend (``EagerBackend`` / ``ExportedBackend``) whose model calls hold
    ``lock``; everything else is delegated."""

    def __init__(self, backend, lock: threading.Lock):
        self._backend = backend
        self._lock = lock

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def __call__(self, batch: List[Dict], score_thresh: float):
        with self._lock:
            return self._backend(batch, score_thresh)


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
        self.model = model if model is not None else load_search_model(cfg)
        self.to_input = ImageToInput(cfg)
        self.lock = threading.Lock()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        from ..searcher import embed_boxes

        with self.lock:
            return embed_boxes(self.model, self.to_input, self.cfg.MODEL.DEVICE, image_bgr, boxes)

    def backend(self) -> LockedBackend:
        """The indexing backend of jobs: this model, its calls under :attr:`lock`."""
        from ..indexer import EagerBackend

        return LockedBackend(EagerBackend(self.cfg, model=self.model), self.lock)


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
        self.runtime = PersonSearchModel(model_dir, backend)
        self._indexing.runtime = self.runtime
        self._indexing.name = self.runtime.backend
        self.name = self.runtime.backend
        self.lock = threading.Lock()

    def fingerprint(self) -> Dict:
        return self._indexing.fingerprint()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        with self.lock:
            return self.runtime.embed(image_bgr, boxes)

    def backend(self) -> LockedBackend:
        """The indexing backend of jobs: this runtime, its calls under :attr:`lock`."""
        return LockedBackend(self._indexing, self.lock)


def load_embedder(
    index_dir: str,
    manifest: IndexManifest,
    *,
    backend: str = "pytorch",
    exported_model: Optional[str] = None,
    weights: Optional[str] = None,
    device: Optional[str] = None,
    model=None,
):
    """
    The model of an index, checked against its fingerprint.

    Args:
        index_dir, manifest: the index.
        backend: "pytorch" (the index's Detectron2 model) or "onnx" / "torchscript" (the model
            exported to ``exported_model``).
        weights: pytorch: the index's checkpoint at another path (checked by hash).
        device: pytorch: "cpu" or "cuda" (default: cuda if available).
        model: pytorch: the already built model (tests).

    Raises:
        ValueError: another model than the index's, missing files, inconsistent options.
    """
    if backend != "pytorch":
        if not exported_model:
            raise ValueError(f"--backend {backend} needs --exported-model DIR")
        embedder = ExportedEmbedder(exported_model, backend)
        manifest.check_model(embedder.fingerprint(), index_dir)
        return embedder
    if exported_model:
        raise ValueError("--exported-model needs --backend onnx or torchscript")
    import torch

    from ..fingerprint import model_fingerprint
    from ..searcher import index_config

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = index_config(manifest, weights, device)
    manifest.check_model(model_fingerprint(cfg), index_dir)
    return EagerEmbedder(cfg, model)
