"""Build a gallery index: run the model ONCE over images and videos, store every detection.

:func:`index_gallery` streams the gallery's items (images, sampled video frames) through a
batched ``torch.utils.data.DataLoader`` (decoding in worker processes while the model runs),
keeps the detections with ``score >= score_thresh`` and commits them in shards
(:class:`ian_d2.search.shards.ShardWriter`). Under ``torch.distributed`` (Detectron2's
``launch``), process r takes the items r, r + N, r + 2N, ... of the gallery and writes its own
shards; rank 0 then brings the vector store up to date (the faiss index in the folder, or a
Milvus collection: :mod:`ian_d2.search.vector_store`). With several machines
(``--num-machines``), every machine sees the same index folder; a machine's processes have
the ranks ``machine_rank * num_gpus + local rank``, so an item belongs to one process of one
machine whatever ran before, and a killed machine's ``--resume`` redoes only its items that no
committed shard holds. A Milvus store is checked (reachable, same embedding size and model) by
rank 0 before anything is written, and every process stops with its error.

Resume and append: the items of committed shards are skipped (``--resume`` after a crash,
``--append`` to add footage); only an index built by the same model can be extended.

Tracks: at the end, the main process links the stored detections of every video whose frames
changed into tracks (:func:`ian_d2.search.tracks.build_tracks`, from the shards: a resumed or
multi-process index gets the tracks of a one-shot index); ``tracks=False`` (``--no-tracks``)
leaves them to ``python -m ian_d2.search tracks``.

Backends: :class:`EagerBackend` (the Detectron2 model of a config, the default) or
:class:`ExportedBackend` (a model exported by ``python -m ian_d2.export``, run by
:mod:`ian_d2.export.runtime` with ONNX Runtime or TorchScript: indexing then imports no
Detectron2). An exported model carries the fingerprint of the model it was exported from, so
its index is the eager model's index: queried, resumed or appended with either backend.
"""

import logging
import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
import tqdm
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..utils.fingerprint import exported_variant, inference_variant, model_fingerprint
from .manifest import IndexManifest
from .shards import ShardWriter, committed_keys, remove_partial_shards
from .sources import GalleryItem, GallerySource, expand_gallery, expected_items, iter_source_items
from .store import update_vector_index
from .store_sync import DEFAULT_TIMEOUT, open_vector_store, store_entry, sync_vector_store
from .vector_index import VectorIndexParams
from .vector_store import FAISS, parse_store_uri

__all__ = [
    "EagerBackend",
    "ExportedBackend",
    "ImageToInput",
    "GalleryStream",
    "load_search_model",
    "index_gallery",
]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 2.0
DEFAULT_SCORE_THRESH = 0.5


class ImageToInput:
    """A BGR image -> the model's input dict, resized as ``DefaultPredictor`` does."""

    def __init__(self, cfg):
        from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
        from detectron2.data import transforms as T

        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, image_bgr: np.ndarray) -> Dict:
        img = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        h, w = img.shape[:2]
        resized = self.aug.get_transform(img).apply_image(img)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))
        return {"image": tensor, "height": h, "width": w}


class GalleryStream(IterableDataset):
    """
    The model inputs of the items this process owns and still has to index, in gallery order.
    Each element: the input dict of :class:`ImageToInput` plus ``item`` (:class:`GalleryItem`);
    an unreadable file ends the stream with ``{"error": message}`` (raised by the consumer,
    so that the message is not wrapped by a data-loader worker's traceback).

    Ownership: the k-th item of the gallery (every sampled frame counts, committed or not)
    belongs to process ``k % world_size`` and, within it, to data-loader worker
    ``(k // world_size) % num_workers``: fixed whatever was committed before.
    """

    def __init__(
        self,
        sources: Sequence[GallerySource],
        fps: float,
        to_input: ImageToInput,
        skip: Set[Tuple[str, int]],
        rank: int = 0,
        world_size: int = 1,
    ):
        self.sources = list(sources)
        self.fps = fps
        self.to_input = to_input
        self.skip = skip
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[Dict]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        counter = [0]

        def want(item: GalleryItem) -> bool:
            k = counter[0]
            counter[0] += 1
            mine = k % self.world_size == self.rank
            mine = mine and (k // self.world_size) % num_workers == worker
            return mine and item.key not in self.skip

        try:
            for source in self.sources:
                for item, image in iter_source_items(source, self.fps, want):
                    inp = self.to_input(image)
                    inp["item"] = item
                    yield inp
        except ValueError as e:  # an unreadable file: reported as is by the main process
            yield {"error": str(e)}


def load_search_model(cfg):
    """``build_model(cfg)`` with ``MODEL.WEIGHTS`` loaded, in eval mode."""
    from .. import _d2, register_all  # noqa: F401  (Detectron2 first, see ian_d2._d2)
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    register_all()
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    return model


def _collate(batch: List[Dict]) -> List[Dict]:
    return batch


def _rank_world() -> Tuple[int, int]:
    """(rank, world size) of this process under torch.distributed ((0, 1) without it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _synchronize() -> None:
    """A barrier of all processes (as Detectron2's ``comm.synchronize``); nothing alone."""
    import torch.distributed as dist

    if _rank_world()[1] == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _on_rank0_for_all(fn: Callable[[], None]) -> None:
    """Run ``fn`` on rank 0; a ValueError it raises is raised by every process (so that no
    process waits for the others at a barrier)."""
    rank, world_size = _rank_world()
    error, failure = None, None
    if rank == 0:
        try:
            fn()
        except Exception as e:  # every process learns of it; rank 0 raises the original
            failure = e
            error = str(e) if isinstance(e, ValueError) else f"rank 0: {type(e).__name__}: {e}"
    if world_size > 1:
        import torch.distributed as dist

        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if failure is not None:
        raise failure
    if error is not None:
        raise ValueError(error)


def _detections(out: Dict, score_thresh: float) -> Dict[str, np.ndarray]:
    inst = out["instances"].to("cpu")
    keep = inst.scores >= score_thresh
    return {
        "boxes": inst.pred_boxes.tensor[keep].float().numpy(),
        "scores": inst.scores[keep].float().numpy(),
        "embeds": inst.pred_embeds[keep].float().numpy(),
    }


class EagerBackend:
    """
    The Detectron2 model of ``cfg`` (``MODEL.WEIGHTS`` a local checkpoint).

    Args:
        cfg: the model's config.
        model: an already built model of ``cfg`` (it must be the same model); None: built on
            :meth:`load`.
    """

    name = "pytorch"

    def __init__(self, cfg, model=None):
        self.cfg = cfg
        self.model = model

    def fingerprint(self) -> Dict:
        return model_fingerprint(self.cfg)

    def variant(self) -> Dict[str, str]:
        """The eager model: float32, ``MODEL.ROI_HEADS.EMBED_BOXES`` of the config."""
        return inference_variant(self.cfg)

    def image_to_input(self):
        return ImageToInput(self.cfg)

    def load(self) -> None:
        if self.model is None:
            self.model = load_search_model(self.cfg)

    def __call__(self, batch: List[Dict], score_thresh: float) -> List[Dict[str, np.ndarray]]:
        with torch.no_grad():
            return [_detections(out, score_thresh) for out in self.model(batch)]


class ExportedBackend:
    """
    A model exported by ``python -m ian_d2.export``, run with :mod:`ian_d2.export.runtime`
    (no Detectron2).

    Args:
        model_dir: the export folder.
        backend: "onnx" or "torchscript" (the runtime's choice when None).
        num_threads: intra-op threads of the runtime.
    """

    def __init__(self, model_dir: str, backend: Optional[str] = None, num_threads=None):
        from ..export.runtime import read_manifest

        self.model_dir = model_dir
        self.manifest = read_manifest(model_dir)
        self.backend = backend
        self.num_threads = num_threads
        self.runtime = None
        self.name = backend or "exported"

    def fingerprint(self) -> Dict:
        model = dict(self.manifest["model"])
        if not model.get("weights_sha256"):
            raise ValueError(
                f"the model exported to '{self.model_dir}' had no weights file (random "
                "initialisation): a search index needs a trained model"
            )
        return model

    def variant(self) -> Dict[str, str]:
        """The export's precision and ``embed_boxes`` (its manifest)."""
        return exported_variant(self.manifest)

    def image_to_input(self):
        from ..export.runtime import Preprocessor

        return Preprocessor(self.manifest)

    def load(self) -> None:
        if self.runtime is None:
            from ..export.runtime import PersonSearchModel

            self.runtime = PersonSearchModel(
                self.model_dir, self.backend, num_threads=self.num_threads
            )
            self.name = self.runtime.backend

    def __call__(self, batch: List[Dict], score_thresh: float) -> List[Dict[str, np.ndarray]]:
        out = []
        for inp in batch:
            det = self.runtime.detect_preprocessed(inp, score_thresh)
            out.append(
                {"boxes": det["boxes"], "scores": det["scores"], "embeds": det["embeddings"]}
            )
        return out


def _open_manifest(
    out_dir: str,
    fingerprint: Dict,
    variant: Dict[str, str],
    *,
    allow_variant_mismatch: bool,
    fps: Optional[float],
    score_thresh: Optional[float],
    vector_params: Optional[VectorIndexParams],
    resume: bool,
    append: bool,
    vector_store: Optional[str] = None,
    collection: Optional[str] = None,
) -> IndexManifest:
    """The manifest of the index to write: created, or the existing one checked."""
    if IndexManifest.exists(out_dir):
        if not (resume or append):
            raise ValueError(
                f"'{out_dir}' already holds a search index: pass --append to add footage to it, "
                "--resume to finish an interrupted run, or choose another --out"
            )
        manifest = IndexManifest.load(out_dir)
        manifest.check_model(fingerprint, out_dir)
        manifest.check_variant(variant, out_dir, allow_variant_mismatch)
        for name, given, stored in (
            ("--fps", fps, manifest.fps),
            ("--score-thresh", score_thresh, manifest.score_thresh),
        ):
            if given is not None and float(given) != float(stored):
                raise ValueError(
                    f"{name} {given} differs from the index's {stored} ('{out_dir}'): an index "
                    "keeps one setting; leave it out to use the index's"
                )
        if vector_params is not None and vector_params != manifest.vector_params:
            raise ValueError(
                f"--index-type and its parameters differ from the index's "
                f"{manifest.vector_index} ('{out_dir}')"
            )
        if vector_store is not None and parse_store_uri(vector_store).uri != manifest.store_uri:
            raise ValueError(
                f"--vector-store {vector_store} differs from the index's {manifest.store_uri} "
                f"('{out_dir}'): move the vectors with `python -m ian_d2.search reindex-vectors "
                f"{out_dir} --vector-store {vector_store}`"
            )
        return manifest
    if resume:
        raise ValueError(f"--resume: '{out_dir}' holds no search index to resume")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(f"--out '{out_dir}' is a folder that is not empty and holds no index")
    manifest = IndexManifest(
        model=fingerprint,
        score_thresh=DEFAULT_SCORE_THRESH if score_thresh is None else float(score_thresh),
        fps=DEFAULT_FPS if fps is None else float(fps),
        vector_index=(vector_params or VectorIndexParams()).to_dict(),
        vector_store=store_entry(parse_store_uri(vector_store), out_dir, fingerprint, collection),
        variant=dict(variant),
    )
    return manifest


def index_gallery(
    cfg,
    gallery: Sequence[str],
    out_dir: str,
    *,
    fps: Optional[float] = None,
    score_thresh: Optional[float] = None,
    vector_params: Optional[VectorIndexParams] = None,
    batch_size: int = 4,
    shard_size: int = 256,
    num_workers: int = 1,
    resume: bool = False,
    append: bool = False,
    model=None,
    progress: bool = True,
    backend=None,
    progress_callback: Optional[Callable[[int, int], None]] = None,
    tracks: bool = True,
    vector_store: Optional[str] = None,
    milvus_collection: Optional[str] = None,
    milvus_token_file: Optional[str] = None,
    store_timeout: float = DEFAULT_TIMEOUT,
    allow_variant_mismatch: bool = False,
) -> Dict[str, object]:
    """
    Index ``gallery`` into ``out_dir`` with the model of ``cfg`` (every process of a distributed
    run calls this with the same arguments).

    Args:
        cfg: the model's config; ``MODEL.WEIGHTS`` must be a local checkpoint.
        gallery: folders, list files, images and videos (see ``sources.expand_gallery``).
        out_dir: the index folder (created; see ``store``).
        fps: sampling rate of videos (default 2; an existing index's own when None).
        score_thresh: detections stored from this score (default 0.5; the index's when None).
        vector_params: the vector index kind and parameters (default exact ``flat``).
        batch_size: images per model call (per process).
        shard_size: items per committed shard (a crash loses at most one shard of work).
        num_workers: data-loader processes decoding images and video frames.
        resume, append: continue an existing index (see the module docstring).
        model: a model to use instead of building ``cfg``'s (it must be the same model).
        progress: show a progress bar (main process).
        backend: what runs the model: :class:`EagerBackend` (default: ``cfg``'s model) or
            :class:`ExportedBackend` (``cfg`` and ``model`` unused, may be None).
        progress_callback: called as ``progress_callback(items_done, items_total)`` before the
            first batch and after each batch of this process: the items of ``gallery`` done
            (committed before this call included) and the expected total (estimated from the
            videos' frame counts; at least ``items_done``).
        tracks: bring the tracks of the index's videos up to date at the end (main process;
            :func:`ian_d2.search.tracks.build_tracks`, with the index's track settings).
        vector_store: where the vectors go (a new index): "faiss" (default),
            ``milvus-lite://PATH.db`` or ``milvus://HOST:PORT[/DB]``; an existing index keeps
            its own (None, or the same).
        milvus_collection: a new index's Milvus collection (default: a new unique name).
        milvus_token_file: a file with the Milvus server's token (else
            ``$IAN_D2_MILVUS_TOKEN``).
        store_timeout: seconds to wait for the Milvus server.
        allow_variant_mismatch: resume or append with a model of another variant (precision,
            ``EMBED_BOXES``) than the index's; refused otherwise.

    Returns:
        dict: counts and times of this call (items, detections, shards, seconds).
    """
    rank, world_size = _rank_world()
    if backend is None:
        backend = EagerBackend(cfg, model)
    fingerprint = backend.fingerprint()
    manifest = _open_manifest(
        out_dir,
        fingerprint,
        backend.variant(),
        allow_variant_mismatch=allow_variant_mismatch,
        fps=fps,
        score_thresh=score_thresh,
        vector_params=vector_params,
        resume=resume,
        append=append,
        vector_store=vector_store,
        collection=milvus_collection,
    )
    sources = expand_gallery(gallery)

    def check_store():  # before anything is written: reachable, same embedding size and model
        store = open_vector_store(manifest, milvus_token_file, store_timeout, create=True)
        if store is not None:
            store.close()

    _on_rank0_for_all(check_store)
    _synchronize()
    if rank == 0:
        manifest.save(out_dir)
        removed = remove_partial_shards(out_dir)
        if removed:
            logger.info("Removed %d partial shard(s) of an interrupted run", removed)
    _synchronize()
    done = committed_keys(out_dir)
    backend.load()
    to_input = backend.image_to_input()
    stream = GalleryStream(sources, manifest.fps, to_input, done, rank, world_size)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    total = sum(expected_items(s, manifest.fps) for s in sources)
    todo = max(0, math.ceil((total - len(done)) / world_size))
    writer = ShardWriter(out_dir, rank, manifest.embed_dim)
    pending_items, pending_sizes, pending_dets = [], [], []
    stats = {"items": 0, "detections": 0, "skipped_committed": len(done)}
    if progress_callback is not None:
        paths = {s.path for s in sources}
        already = sum(1 for key in done if key[0] in paths)
        progress_callback(already, max(total, already))
    t0 = time.perf_counter()
    bar = tqdm.tqdm(
        total=todo, unit="img", desc=f"indexing (rank {rank})", disable=not progress or rank != 0
    )

    def commit():
        if pending_items:
            writer.write(pending_items, pending_sizes, pending_dets)
            pending_items.clear(), pending_sizes.clear(), pending_dets.clear()

    with torch.no_grad():
        for batch in loader:
            errors = [x["error"] for x in batch if "error" in x]
            batch = [x for x in batch if "error" not in x]
            items = [x.pop("item") for x in batch]
            outputs = backend(batch, manifest.score_thresh) if batch else []
            for item, inp, det in zip(items, batch, outputs):
                pending_items.append(item)
                pending_sizes.append((int(inp["width"]), int(inp["height"])))
                pending_dets.append(det)
                stats["detections"] += len(det["scores"])
            stats["items"] += len(items)
            bar.update(len(items))
            if progress_callback is not None:
                n = already + stats["items"]
                progress_callback(n, max(total, n))
            if errors:  # keep what was done, then stop with the file's name
                commit()
                bar.close()
                raise ValueError(errors[0])
            if len(pending_items) >= shard_size:
                commit()
    commit()
    bar.close()
    stats["shards"] = len(writer.written)
    stats["seconds"] = time.perf_counter() - t0
    logger.info(
        "Rank %d indexed %d items (%d detections >= %.2f) into %d shards in %.1f s (%s model)",
        rank,
        stats["items"],
        stats["detections"],
        manifest.score_thresh,
        stats["shards"],
        stats["seconds"],
        backend.name,
    )
    stats["backend"] = backend.name
    _synchronize()

    def finish():  # the vector store updated once, by rank 0; the tracks
        from .tracks import build_tracks

        if manifest.store_uri == FAISS:
            index, shards = update_vector_index(out_dir, manifest)
            stats["stored_detections"] = int(index.ntotal)
            stats["total_shards"] = len(shards)
            if tracks:
                stats["tracks"] = build_tracks(out_dir)
            return
        if tracks:  # first: the store holds each row's track
            stats["tracks"] = build_tracks(out_dir)
        store = open_vector_store(manifest, milvus_token_file, store_timeout, create=True)
        try:
            synced = sync_vector_store(out_dir, manifest, store)
        finally:
            store.close()
        stats["stored_detections"] = synced["rows"]
        stats["vector_store"] = synced

    _on_rank0_for_all(finish)
    _synchronize()
    return stats
