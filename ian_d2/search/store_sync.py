"""Keep an index's vector store in step with its Parquet shards (the source of truth).

* :func:`open_vector_store`: the Milvus store an index's manifest names (the faiss store is
  opened by :func:`ian_d2.search.store.update_vector_index`).
* :func:`check_vector_store`: what the store and the shards disagree on (shards not uploaded or
  uploaded with another row count or other tracks, rows of shards that are gone, rows of an
  interrupted upload), named.
* :func:`sync_vector_store`: removes the rows of shards that are gone and uploads the shards
  that are missing (a shard is marked done only after all its rows are in: an interrupted
  upload resumes with that shard, and re-writing rows by their key duplicates nothing).
* :func:`row_fields`: the filter fields and stable keys of the rows of shards, with each row's
  track key (from the index's track files).

Shape shorthand: N rows of the shards, n rows of one shard, D embedding dimension.
"""

import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

from .manifest import IndexManifest
from .shards import list_shards, read_embeddings, read_table, shard_number
from .vector_store import FAISS, StoreSpec, parse_store_uri, read_token, row_key, track_key

__all__ = [
    "StoreCheck",
    "check_vector_store",
    "open_vector_store",
    "row_fields",
    "reindex_vectors",
    "store_entry",
    "sync_vector_store",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def store_entry(
    spec: StoreSpec, index_dir: str, fingerprint: Dict, collection: Optional[str] = None
) -> Dict[str, object]:
    """The manifest's ``vector_store`` for ``spec`` (a Milvus collection: ``collection``, or a
    new unique name)."""
    if spec.kind == FAISS:
        return {"uri": FAISS}
    if collection is None:
        seed = f"{os.path.abspath(index_dir)}|{time.time()}|{fingerprint.get('weights_sha256')}"
        collection = "ian_d2_" + hashlib.sha256(seed.encode()).hexdigest()[:16]
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,200}$", collection):
        raise ValueError(
            f"--milvus-collection '{collection}': letters, digits and _, starting with a letter"
        )
    return {"uri": spec.uri, "collection": collection}


def _shard_int(name: str) -> int:
    rank, seq = shard_number(name)
    return (rank << 20) | seq


def _track_map(index_dir: str, shard_names: Sequence[str], counts: Sequence[int]):
    """{shard name: [n] int64 track keys} (a row in no up-to-date track: its own row key)."""
    from .tracks.build import read_track_files, source_key

    keys = {
        name: row_key(*shard_number(name), np.arange(n, dtype=np.int64))
        for name, n in zip(shard_names, counts)
    }
    assigned = {name: np.zeros(n, bool) for name, n in zip(shard_names, counts)}
    stems = {os.path.splitext(name)[0]: name for name in shard_names}
    loaded = set(shard_names)
    for _, header, table in read_track_files(index_dir):
        if not set(header.get("shards", {})) <= loaded:
            continue  # made from shards that are gone or not seen: left out (as track_lookup)
        t = table.select(["source", "track", "detections"]).to_pydict()
        for k in range(len(t["track"])):
            rows = []
            for did in t["detections"][k]:
                stem, _, r = did.rpartition(".")
                name = stems.get(stem)
                if name is None or not r.isdigit() or int(r) >= len(keys[name]):
                    rows = None
                    break
                rows.append((name, int(r)))
            if rows is None or any(assigned[n][r] for n, r in rows):
                continue
            tk = track_key(f"{source_key(t['source'][k])}.t{int(t['track'][k])}")
            for n, r in rows:
                keys[n][r] = tk
                assigned[n][r] = True
    return keys


@dataclass
class ShardRows:
    """The rows of one shard as a store holds them (n rows)."""

    name: str
    keys: np.ndarray  # [n] int64 row keys
    sources: List[str]
    time_s: np.ndarray  # [n] float64, NaN: still image
    score: np.ndarray  # [n] float32
    track: np.ndarray  # [n] int64 track keys

    @property
    def track_hash(self) -> str:
        return hashlib.sha256(self.track.tobytes()).hexdigest()[:16]


def row_fields(index_dir: str, shards: Sequence[str]) -> List[ShardRows]:
    """The :class:`ShardRows` of ``shards`` (paths), in order (embeddings not read)."""
    names = [os.path.basename(p) for p in shards]
    counts = [pq.read_metadata(p).num_rows for p in shards]
    tracks = _track_map(index_dir, names, counts)
    out = []
    for path, name, n in zip(shards, names, counts):
        t = read_table([path], ("source", "time_s", "score"))
        out.append(
            ShardRows(
                name=name,
                keys=row_key(*shard_number(name), np.arange(n, dtype=np.int64)),
                sources=t.column("source").to_pylist(),
                time_s=t.column("time_s").to_numpy().astype(np.float64),
                score=t.column("score").to_numpy().astype(np.float32),
                track=tracks[name],
            )
        )
    return out


def open_vector_store(
    manifest: IndexManifest,
    token_file: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    create: bool = False,
):
    """
    The Milvus store of an index (:class:`ian_d2.search.milvus_store.MilvusStore`), connected
    and checked (embedding size, model); None for the faiss store.

    Args:
        manifest: the index's manifest (its ``vector_store``).
        token_file: a file holding the server's token (else ``$IAN_D2_MILVUS_TOKEN``).
        timeout: seconds to wait for the server.
        create: create the collections when absent (else a missing store is an error).

    Raises:
        ValueError: unreachable, another embedding size or model, no such store.
    """
    spec = parse_store_uri(manifest.vector_store.get("uri"))
    if spec.kind == FAISS:
        return None
    from .milvus_store import MilvusStore

    store = MilvusStore(
        spec,
        manifest.vector_store["collection"],
        manifest.embed_dim,
        manifest.model,
        manifest.vector_params,
        token=read_token(token_file) if spec.kind == "milvus" else "",
        timeout=timeout,
    )
    try:
        if create:
            store.create()
        elif not store.exists():
            raise ValueError(
                f"the Milvus {store.where} does not exist: build it from the shards with "
                "`python -m ian_d2.search reindex-vectors INDEX`"
            )
        else:
            store.check_compatible()
    except Exception:
        store.close()
        raise
    return store


@dataclass
class StoreCheck:
    """
    What a store and the shards disagree on.

    Attributes:
        missing: shards not (fully) in the store, or with other rows or tracks there.
        extra: shards in the store that the index no longer has.
        stored, expected: rows in the store, rows its finished shards account for.
    """

    missing: List[str] = field(default_factory=list)
    extra: List[str] = field(default_factory=list)
    stored: int = 0
    expected: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and self.stored == self.expected

    def describe(self, where: str) -> str:
        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing)} shard(s) of the index are missing or differ there "
                f"({', '.join(self.missing[:3])}{', ...' if len(self.missing) > 3 else ''})"
            )
        if self.extra:
            parts.append(
                f"it holds the rows of {len(self.extra)} shard(s) the index does not have "
                f"({', '.join(self.extra[:3])}{', ...' if len(self.extra) > 3 else ''})"
            )
        if self.stored != self.expected:
            parts.append(
                f"it holds {self.stored} rows where its finished shards account for "
                f"{self.expected} (an interrupted upload or rows written by something else)"
            )
        return f"the vector store ({where}) disagrees with the shards: " + "; ".join(parts)


def check_vector_store(store, rows: Sequence[ShardRows]) -> StoreCheck:
    """Compare a Milvus store's state with the shards' :class:`ShardRows`."""
    state = store.state()
    state.pop("__meta__", None)
    have = {r.name: r for r in rows}
    check = StoreCheck()
    for r in rows:
        info = state.get(r.name)
        if info is None or info.get("rows") != len(r.keys) or info.get("tracks") != r.track_hash:
            check.missing.append(r.name)
    check.extra = sorted(n for n in state if n not in have)
    check.stored = store.count()
    check.expected = int(sum(int(info.get("rows", 0)) for info in state.values()))
    return check


def sync_vector_store(index_dir: str, manifest: IndexManifest, store) -> Dict[str, int]:
    """
    Bring a Milvus store up to date with the index's shards: delete the rows of shards that
    are gone, upload the shards that are missing or differ, then check that the counts agree.

    Returns:
        dict: shards uploaded and removed, rows in the store.

    Raises:
        ValueError: the store still disagrees after the sync (naming how).
    """
    shards = list_shards(index_dir)
    rows = row_fields(index_dir, shards)
    check = check_vector_store(store, rows)
    for name in check.extra:
        store.delete_shard(_shard_int(name))
        store.unmark_shard(name)
    paths = {os.path.basename(p): p for p in shards}
    by_name = {r.name: r for r in rows}
    for i, name in enumerate(check.missing):
        r = by_name[name]
        store.unmark_shard(name)
        store.delete_shard(_shard_int(name))  # rows of an older upload of this shard
        emb = read_embeddings([paths[name]], manifest.embed_dim)
        store.upsert(r.keys, emb, r.sources, r.time_s, r.score, r.track, _shard_int(name))
        store.mark_shard(name, {"rows": len(r.keys), "tracks": r.track_hash})
        logger.info("Vector store: shard %s uploaded (%d/%d)", name, i + 1, len(check.missing))
    after = check_vector_store(store, rows)
    if after.stored != after.expected:  # rows of an interrupted upload of a removed shard
        store.client.delete(store.name, filter=_outside(rows))
        after = check_vector_store(store, rows)
    if not after.ok:
        raise ValueError(after.describe(store.where))
    logger.info(
        "Vector store %s: %d rows of %d shards (%d uploaded, %d removed)",
        store.where,
        after.stored,
        len(rows),
        len(check.missing),
        len(check.extra),
    )
    return {"uploaded": len(check.missing), "removed": len(check.extra), "rows": after.stored}


def _outside(rows: Sequence[ShardRows]) -> str:
    """A Milvus expression for the rows of no shard of ``rows``."""
    ids = ", ".join(str(_shard_int(r.name)) for r in rows)
    return f"shard not in [{ids}]" if rows else "shard >= 0"


def reindex_vectors(
    index_dir: str,
    vector_store: Optional[str] = None,
    collection: Optional[str] = None,
    token_file: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    drop: bool = False,
) -> Dict[str, object]:
    """
    Rebuild an index's vector store from its shards (``reindex-vectors``): the manifest's
    store, or ``vector_store`` (then recorded in the manifest once it holds every row).

    Args:
        index_dir: the index.
        vector_store: "faiss", ``milvus-lite://PATH.db`` or ``milvus://HOST:PORT[/DB]``; None:
            the index's.
        collection: the Milvus collection (default: the index's when the URI is the same, else
            a new unique name).
        token_file, timeout: as :func:`open_vector_store`.
        drop: drop the Milvus collection first and upload everything (else: only what is
            missing or differs, which also finishes an interrupted upload).

    Returns:
        dict: the store's URI, collection and rows, and what was uploaded / removed.
    """
    from .store import update_vector_index, vector_paths

    manifest = IndexManifest.load(index_dir)
    spec = parse_store_uri(vector_store or manifest.store_uri)
    if spec.uri == manifest.store_uri and collection in (
        None,
        manifest.vector_store.get("collection"),
    ):
        entry = dict(manifest.vector_store)
    else:
        entry = store_entry(spec, index_dir, manifest.model, collection)
    target = IndexManifest(**{**manifest.__dict__, "vector_store": entry})
    if spec.kind == FAISS:
        for path in vector_paths(index_dir, manifest.vector_params.kind):
            if os.path.exists(path):
                os.remove(path)
        index, shards = update_vector_index(index_dir, target)
        out = {"uri": FAISS, "rows": int(index.ntotal), "shards": len(shards)}
    else:
        store = open_vector_store(target, token_file, timeout, create=not drop)
        try:
            if drop:
                store.drop()
                store.create()
            out = {"uri": spec.uri, "collection": entry["collection"]}
            out.update(sync_vector_store(index_dir, target, store))
        finally:
            store.close()
    if entry != manifest.vector_store:
        target.save(index_dir)
        logger.info("%s/manifest.json: vector store %s", index_dir, spec.uri)
    return out
