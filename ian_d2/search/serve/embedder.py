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

Concurrent query boxes share model calls (:class:`BoxBatcher`): what queued while the model
thread was busy is embedded together, boxes of one image in one call (one backbone pass), and
with the Detectron2 model, images of one size in one call of several images.

Shape shorthand: n boxes, D embedding dimension.
"""

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..manifest import IndexManifest

__all__ = [
    "BoxBatcher",
    "EagerEmbedder",
    "ExportedEmbedder",
    "LockedBackend",
    "ModelThread",
    "load_embedder",
]

logger = logging.getLogger(__name__)


class ModelThread:
    """The one thread that runs a model: :meth:`run` calls a function on it and waits for the
    result (calls take turns, in the order they come)."""

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ian_d2-model")

    def run(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the model thread; its result, or its exception raised."""
        return self._executor.submit(fn, *args, **kwargs).result()

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        """``fn(*args, **kwargs)`` queued on the model thread (its future)."""
        return self._executor.submit(fn, *args, **kwargs)


class _Boxes:
    """One request's image and boxes, and once embedded its rows (or its error)."""

    __slots__ = ("image", "boxes", "emb", "error")

    def __init__(self, image: np.ndarray, boxes: np.ndarray):
        self.image = image
        self.boxes = boxes
        self.emb: Optional[np.ndarray] = None
        self.error: Optional[BaseException] = None


class BoxBatcher:
    """
    Query boxes of concurrent requests embedded in shared model calls, on the model thread.

    A request queues its (image, boxes) and has the model thread drain the queue: the drain
    takes everything queued by then (requests that arrived while the model was busy with another
    query or a job's batch), so a lone request is embedded at once, as before. Requests with the
    SAME image array (the frame cache hands one array to every request of a frame) become one
    image with all their boxes: one backbone pass. With ``max_images`` > 1, images of one shape
    go into one call of several images (at most ``max_images``); other shapes are separate
    calls (Detectron2 pads a batch to its largest image, which would change the features near
    the border). A call that fails is retried request by request: a bad request fails alone.
    Equal to one by one up to float rounding (the same computation in batched kernels).

    Args:
        thread: the model thread.
        embed_many: ``[(image [H, W, 3] uint8 BGR, boxes [n_i, 4] XYXY)] -> [sum n_i, D]``
            float32, in order (called with several images only when ``max_images`` > 1).
        max_images: images per model call.

    Attributes:
        stats: ``requests`` embedded and model ``calls`` made.
    """

    def __init__(
        self,
        thread: ModelThread,
        embed_many: Callable[[Sequence[Tuple[np.ndarray, np.ndarray]]], np.ndarray],
        max_images: int = 4,
    ):
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, not {max_images}")
        self.thread = thread
        self.embed_many = embed_many
        self.max_images = int(max_images)
        self._lock = threading.Lock()
        self._pending: List[_Boxes] = []
        self.stats = {"requests": 0, "calls": 0}

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] of ``image_bgr``."""
        item = _Boxes(image_bgr, np.asarray(boxes, np.float32).reshape(-1, 4))
        with self._lock:
            self._pending.append(item)
        # drains run in order on the one model thread: once this one is over, the item is done
        self.thread.submit(self._drain).result()
        if item.error is not None:
            raise item.error
        return item.emb

    def _drain(self) -> None:
        """Embed every queued request (on the model thread)."""
        with self._lock:
            batch, self._pending = self._pending, []
        by_image: Dict[int, List[_Boxes]] = {}
        for it in batch:
            by_image.setdefault(id(it.image), []).append(it)
        calls: Dict[object, List[List[List[_Boxes]]]] = {}
        for same in by_image.values():
            image = same[0].image
            key = (image.shape, image.dtype.str) if self.max_images > 1 else id(image)
            groups = calls.setdefault(key, [[]])
            if len(groups[-1]) >= self.max_images:
                groups.append([])
            groups[-1].append(same)
        for groups in calls.values():
            for call in groups:
                self._run(call)

    def _run(self, call: List[List[_Boxes]]) -> None:
        """One model call: images (each with its requests); split the rows back."""
        items = [it for same in call for it in same]
        try:
            inputs = [(same[0].image, np.concatenate([it.boxes for it in same])) for same in call]
            emb = np.asarray(self.embed_many(inputs), np.float32)
            self.stats["calls"] += 1
            self.stats["requests"] += len(items)
            start = 0
            for it in items:
                it.emb = emb[start : start + len(it.boxes)]
                start += len(it.boxes)
        except Exception as e:
            if len(items) == 1:
                items[0].error = e
                return
            for it in items:  # one by one: only the bad request fails
                self._run([[it]])


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
        max_images: concurrent queries' images of one size per model call (:class:`BoxBatcher`).
    """

    name = "pytorch"

    def __init__(self, cfg, model=None, max_images: int = 4):
        from ..indexer import ImageToInput, load_search_model

        self.cfg = cfg
        self.thread = ModelThread()
        self.model = model if model is not None else self.thread.run(load_search_model, cfg)
        self.to_input = ImageToInput(cfg)
        self.batcher = BoxBatcher(self.thread, self._embed_many, max_images)

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        return self.batcher.embed(image_bgr, boxes)

    def _embed_many(self, inputs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """[sum n_i, D] embeddings of the boxes [n_i, 4] of images of one size (one call)."""
        from ..searcher import embed_boxes

        device = self.cfg.MODEL.DEVICE
        if len(inputs) == 1:
            return embed_boxes(self.model, self.to_input, device, *inputs[0])
        import torch

        from ...modeling.query import extract_query_embeddings

        batched = []
        for image, _ in inputs:
            inp = self.to_input(image)
            inp["image"] = inp["image"].to(device)
            batched.append(inp)
        with torch.no_grad():
            emb = extract_query_embeddings(self.model, batched, [b for _, b in inputs])
        return emb.float().cpu().numpy()

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
        # boxes of one image together; the runtime takes one image per call
        self.batcher = BoxBatcher(self.thread, lambda inputs: self.runtime.embed(*inputs[0]), 1)

    def fingerprint(self) -> Dict:
        return self._indexing.fingerprint()

    def variant(self) -> Dict[str, str]:
        return self._indexing.variant()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] float32 L2-normalised embeddings of ``boxes`` [n, 4] (XYXY pixels) of
        ``image_bgr`` [H, W, 3] uint8."""
        return self.batcher.embed(image_bgr, boxes)

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
    max_images: Optional[int] = None,
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
        max_images: pytorch: concurrent queries' images of one size per model call (None: 4 on
            a GPU; 1 on the CPU, where a batch of images costs what its images cost one by one
            and only delays the first: boxes of one image still share a call).

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
    if max_images is None:
        max_images = 4 if str(device).startswith("cuda") else 1
    return EagerEmbedder(cfg, model, max_images)
