"""Re-embed an index with another model (``python -m ian_d2.search reembed``): the same
detections, every embedding computed again by the new model (e.g. adapted to the footage),
without running the detector.

:func:`reembed_index` writes a NEW index folder; the index it reads is never modified. NEW holds
the index's shards under the same names with the same rows (detection ids ``<shard stem>.<row>``,
sources, frames, times, boxes, scores, the items each shard covers), each row's embedding
computed by the new model from the stored box in its frame (:mod:`.reembed_frames`: the
given-box path of queries, so NEW holds what the model gives for those boxes; its manifest's
variant is ``embed_boxes: final``). Then the tracks are built again from the new embeddings with
the index's track settings (the motion tracks, from the same boxes, times and scores, are the
same; the embedding re-link may differ), and the vector store is built (the index's kind of
store, a new Milvus collection, or ``vector_store``). The manifest records the new model's
fingerprint and ``reembedded_from`` (the index, its model's hashes, the time).

A model whose detector differs (its config less ``MODEL.WEIGHTS``, ``MODEL.REID.*`` and
``MODEL.CENTER_LOSS.*``, or its embedding size; :mod:`.reembed_checks`) is refused unless
``redetect``: the index's sources are then indexed again from scratch into NEW
(:func:`ian_d2.search.indexer.index_gallery` with the index's fps, score threshold, vector index
and track settings).

Crash-safe and resumable: each shard of NEW is written atomically; ``NEW/reembed.json`` records
what is being re-embedded (index, models, store) while NEW is unfinished, and the manifest is
written last, so an unfinished NEW is not an index. Running the same command again skips the
shards already written and refuses a NEW of another index or model. (With ``redetect`` NEW is an
index being built, as with ``index``, and the same command resumes it.)
"""

import json
import logging
import os
import time
from typing import Dict, Optional

from ..utils.fingerprint import inference_variant, model_fingerprint
from ..utils.io import atomic_write
from .indexer import ImageToInput, index_gallery, load_search_model
from .manifest import SHARDS, VECTORS, IndexManifest
from .reembed_checks import (
    check_belongs,
    check_folders,
    check_same_detector,
    check_sources,
    index_sources,
)
from .reembed_frames import FrameReader, reembed_shard, write_reembedded_shard
from .shards import list_shards, read_shard_items, remove_partial_shards
from .store import update_vector_index
from .store_sync import DEFAULT_TIMEOUT, open_vector_store, store_entry, sync_vector_store
from .tracks.build import TRACKS, build_tracks
from .tracks.settings import TrackSettings
from .vector_store import FAISS, parse_store_uri

__all__ = ["STATE", "reembed_index"]

logger = logging.getLogger(__name__)

#: The file of an unfinished re-embedding in NEW (removed once the manifest is written).
STATE = "reembed.json"


def _model_ids(fingerprint: Dict) -> Dict[str, object]:
    return {
        "model_weights": fingerprint.get("weights"),
        "model_config_sha256": fingerprint.get("config_sha256"),
        "model_weights_sha256": fingerprint.get("weights_sha256"),
    }


def _existing(out_dir: str) -> Optional[Dict]:
    """What ``out_dir`` already holds: None (absent or empty), else ``record`` (the
    ``reembedded_from`` of the re-embedding there), ``model`` (its model's fingerprint),
    ``vector_store`` and ``manifest`` (whether its manifest is written).

    Raises:
        ValueError: ``out_dir`` holds something else than a re-embedding.
    """
    if not os.path.isdir(out_dir):
        if os.path.exists(out_dir):
            raise ValueError(f"--out '{out_dir}' is a file, not a folder")
        return None
    if IndexManifest.exists(out_dir):
        m = IndexManifest.load(out_dir)
        if not m.reembedded_from:
            raise ValueError(
                f"--out '{out_dir}' holds an index built by `index`, not a re-embedding: choose "
                "another --out"
            )
        return {"record": m.reembedded_from, "model": m.model, "vector_store": m.vector_store,
                "manifest": True}  # fmt: skip
    path = os.path.join(out_dir, STATE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                state = json.load(f)
            return {**state, "manifest": False}
        except Exception as e:
            raise ValueError(f"'{path}' is not readable ({e}): delete '{out_dir}'") from e
    if os.listdir(out_dir):
        raise ValueError(f"--out '{out_dir}' is a folder that is not empty and holds no index")
    return None


def _store(manifest: IndexManifest, out_dir: str, fingerprint: Dict, uri, collection):
    """The new index's ``vector_store`` entry: ``uri`` or the index's kind of store (a Milvus
    store gets a new collection: the index's is never written)."""
    spec = parse_store_uri(uri or manifest.store_uri)
    if spec.uri == manifest.store_uri and collection is not None:
        if collection == manifest.vector_store.get("collection"):
            raise ValueError(
                f"--milvus-collection {collection} is the collection of the index, which is "
                "never modified: choose another name, or leave it out for a new one"
            )
    return store_entry(spec, out_dir, fingerprint, collection)


def _check_store(target: IndexManifest, token_file: Optional[str], timeout: float) -> None:
    """A Milvus store reachable, of this embedding size and model (created if absent)."""
    store = open_vector_store(target, token_file, timeout, create=True)
    if store is not None:
        store.close()


def _committed(index_shards, out_dir: str) -> set:
    """The names of the shards of NEW already re-embedded (each the same items and row count
    as the index's shard of that name).

    Raises:
        ValueError: a shard of NEW that the index does not have, or that differs from it.
    """
    import pyarrow.parquet as pq

    mine = {os.path.basename(p): p for p in index_shards}
    done = set()
    for path in list_shards(out_dir):
        name = os.path.basename(path)
        if name not in mine:
            raise ValueError(
                f"'{path}' is not a shard of the index being re-embedded: delete '{out_dir}' "
                "and run the command again"
            )
        a, b = pq.read_metadata(mine[name]), pq.read_metadata(path)
        key = b"ian_d2.items"
        if a.num_rows != b.num_rows or (a.metadata or {}).get(key) != (b.metadata or {}).get(key):
            raise ValueError(
                f"'{path}' does not hold the rows of the index's shard {name}: delete it and "
                "run the command again"
            )
        done.add(name)
    return done


class _Progress:
    """Logs items done / total, the rate and the ETA, at most every ``every_s`` seconds."""

    def __init__(self, total: int, done: int, every_s: float):
        self.total, self.done, self.first, self.every_s = total, done, done, every_s
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if time.perf_counter() - self.last >= self.every_s:
            self.log()

    def log(self) -> None:
        now = self.last = time.perf_counter()
        rate = (self.done - self.first) / max(now - self.t0, 1e-9)
        left = max(self.total - self.done, 0)
        eta = f"{int(left / rate) // 60}m{int(left / rate) % 60:02d}s" if rate > 0 else "?"
        logger.info(
            "Re-embedding: %d/%d items (%.0f%%), %.1f items/s, ETA %s",
            self.done,
            self.total,
            100.0 * self.done / max(self.total, 1),
            rate,
            eta,
        )


def reembed_index(
    cfg,
    index_dir: str,
    out_dir: str,
    *,
    redetect: bool = False,
    vector_store: Optional[str] = None,
    milvus_collection: Optional[str] = None,
    milvus_token_file: Optional[str] = None,
    store_timeout: float = DEFAULT_TIMEOUT,
    batch_size: int = 4,
    num_workers: int = 1,
    tracks: bool = True,
    model=None,
    log_every_s: float = 10.0,
) -> Dict[str, object]:
    """
    Re-embed the index ``index_dir`` into ``out_dir`` with the model of ``cfg`` (see the module
    docstring).

    Args:
        cfg: the new model's config; ``MODEL.WEIGHTS`` a local checkpoint.
        index_dir: the index (never modified).
        out_dir: the new index folder (created; or the same command's unfinished one).
        redetect: a model with another detector indexes the footage again instead.
        vector_store: "faiss", ``milvus-lite://PATH.db`` or ``milvus://HOST:PORT[/DB]``;
            None: the index's kind of store (Milvus: a new collection).
        milvus_collection, milvus_token_file, store_timeout: as ``index``.
        batch_size: frames per model call.
        num_workers: ``redetect``: data-loader processes decoding the footage.
        tracks: build the new index's tracks (with the index's track settings).
        model: the model of ``cfg``, already built (tests); None: built.
        log_every_s: seconds between progress lines.

    Returns:
        dict: ``shards`` (of the index), ``reembedded_shards`` (written by this call),
        ``skipped_shards`` (written before), ``items`` and ``detections`` (re-embedded by this
        call), ``stored_detections``, ``tracks`` (statistics), ``seconds``; with ``redetect``
        the statistics of ``index_gallery``.

    Raises:
        ValueError: not an index; ``out_dir`` the index or inside it, or another index's or
            model's; a source file that no longer exists; no ``MODEL.WEIGHTS``; another
            detector or embedding size without ``redetect``; footage that changed.
    """
    t0 = time.perf_counter()
    manifest = IndexManifest.load(index_dir)
    check_folders(index_dir, out_dir)
    fingerprint = model_fingerprint(cfg)
    shards = list_shards(index_dir)
    sources, num_items = index_sources(shards)
    check_sources(index_dir, sources)
    if not redetect:
        check_same_detector(index_dir, manifest.model, cfg, int(fingerprint["embed_dim"]))
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.ROI_HEADS.EMBED_BOXES = "final"  # the given-box path: boxes as stored
    prior = _existing(out_dir)
    record = {
        "index": os.path.realpath(index_dir),
        "weights": manifest.model.get("weights"),
        "config_sha256": manifest.model["config_sha256"],
        "weights_sha256": manifest.model["weights_sha256"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "redetect": bool(redetect),
    }
    if prior is not None:
        check_belongs(
            out_dir,
            {**prior["record"], **_model_ids(prior["model"])},
            {**record, **_model_ids(fingerprint)},
        )
        record = prior["record"]
        entry = prior["vector_store"]
        given = (vector_store and parse_store_uri(vector_store).uri, milvus_collection)
        if given[0] not in (None, entry["uri"]) or given[1] not in (None, entry.get("collection")):
            raise ValueError(
                f"--vector-store / --milvus-collection differ from the vector store of "
                f"'{out_dir}' ({entry}): leave them out to finish it"
            )
    else:
        entry = _store(manifest, out_dir, fingerprint, vector_store, milvus_collection)
    target = IndexManifest(
        model=fingerprint,
        score_thresh=manifest.score_thresh,
        fps=manifest.fps,
        vector_index=dict(manifest.vector_index),
        vector_store=entry,
        variant=inference_variant(cfg),
        reembedded_from=record,
    )
    index_tracks = TrackSettings.load(os.path.join(index_dir, TRACKS))
    if redetect:
        if prior is None:  # the manifest first, as `index` does: NEW is then resumable
            _check_store(target, milvus_token_file, store_timeout)
            target.save(out_dir)
        if index_tracks is not None and TrackSettings.load(os.path.join(out_dir, TRACKS)) is None:
            index_tracks.save(os.path.join(out_dir, TRACKS))  # what index_gallery builds with
        logger.info("Indexing the %d source files of %s again into %s", len(sources),
                    index_dir, out_dir)  # fmt: skip
        return index_gallery(cfg, sources, out_dir, resume=True, batch_size=batch_size,
                             num_workers=num_workers, model=model, tracks=tracks,
                             milvus_token_file=milvus_token_file,
                             store_timeout=store_timeout)  # fmt: skip
    stats = {"shards": len(shards), "reembedded_shards": 0, "items": 0, "detections": 0}
    if prior is not None and prior["manifest"]:
        logger.info("%s is a finished re-embedding of %s: nothing to do", out_dir, index_dir)
        stats["skipped_shards"] = len(shards)
        return stats
    if prior is None:
        _check_store(target, milvus_token_file, store_timeout)
        os.makedirs(os.path.join(out_dir, SHARDS), exist_ok=True)
        os.makedirs(os.path.join(out_dir, VECTORS), exist_ok=True)
        state = json.dumps(
            {"record": record, "model": fingerprint, "vector_store": entry}, indent=1
        ).encode()
        atomic_write(os.path.join(out_dir, STATE), lambda f: f.write(state))
    elif remove_partial_shards(out_dir):
        logger.info("Removed the partial shard(s) of an interrupted run in %s", out_dir)
    done = _committed(shards, out_dir)
    stats["skipped_shards"] = len(done)
    todo = [p for p in shards if os.path.basename(p) not in done]
    if todo:
        _reembed_shards(cfg, todo, out_dir, model, batch_size, num_items, log_every_s, stats)
    _finish(out_dir, target, index_tracks if tracks else False, milvus_token_file,
            store_timeout, stats)  # fmt: skip
    target.save(out_dir)  # last: NEW is an index from now on
    os.remove(os.path.join(out_dir, STATE))
    stats["seconds"] = time.perf_counter() - t0
    logger.info(
        "Re-embedded %s into %s: %d of %d shards (%d items, %d detections) in %.1f s",
        index_dir,
        out_dir,
        stats["reembedded_shards"],
        len(shards),
        stats["items"],
        stats["detections"],
        stats["seconds"],
    )
    return stats


def _reembed_shards(cfg, todo, out_dir, model, batch_size, num_items, log_every_s, stats):
    """Re-embed the index's shards ``todo`` into ``out_dir``, one committed shard at a time."""
    left = sum(len(read_shard_items(p)) for p in todo)
    progress = _Progress(num_items, num_items - left, log_every_s)
    logger.info("Re-embedding %d shard(s) into %s: %d of %d items left", len(todo), out_dir,
                left, num_items)  # fmt: skip
    if model is None:
        model = load_search_model(cfg)
    to_input = ImageToInput(cfg)
    reader = FrameReader()
    device = str(cfg.MODEL.DEVICE)
    embed_dim = int(cfg.MODEL.REID.EMBED_DIM)
    try:
        for path in todo:
            before = progress.done
            emb = reembed_shard(
                path, model, to_input, device, embed_dim, reader, batch_size, progress.update
            )
            dst = os.path.join(out_dir, SHARDS, os.path.basename(path))
            write_reembedded_shard(path, dst, emb)
            stats["reembedded_shards"] += 1
            stats["items"] += progress.done - before
            stats["detections"] += len(emb)
        progress.log()
    finally:
        reader.close()


def _finish(out_dir, target, settings, token_file, timeout, stats) -> None:
    """The vector store and the tracks (``settings``: the index's track settings, None: the
    defaults, False: no tracks) of the re-embedded shards."""
    if target.store_uri == FAISS:
        index, _ = update_vector_index(out_dir, target)
        stats["stored_detections"] = int(index.ntotal)
        if settings is not False:
            stats["tracks"] = build_tracks(out_dir, settings, manifest=target)
        return
    if settings is not False:  # first: the store's rows carry their tracks
        stats["tracks"] = build_tracks(out_dir, settings, manifest=target)
    store = open_vector_store(target, token_file, timeout, create=True)
    try:
        synced = sync_vector_store(out_dir, target, store)
    finally:
        store.close()
    stats["stored_detections"] = synced["rows"]
    stats["vector_store"] = synced
