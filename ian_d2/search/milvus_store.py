"""The Milvus backend of the vector store (pymilvus ``MilvusClient``): Milvus Lite (a local
file) or a Milvus server / cluster.

An index's store is two collections:

* ``<name>`` (the detections): ``pk`` INT64 (:func:`ian_d2.search.vector_store.row_key`),
  ``vec`` FLOAT_VECTOR[D] (inner product), ``source`` VARCHAR, ``time_s`` DOUBLE (-1 for a still
  image), ``score`` FLOAT, ``track`` INT64 (the grouping key), ``shard`` INT64 (the shard's
  number, to delete a shard's rows);
* ``<name>_state``: one ``__meta__`` row (embedding size, model fingerprint) and one row per
  shard whose upload finished (its row count and a hash of its track keys).

A shard is uploaded by upserts (idempotent per key) and then marked done in ``_state``: an
interrupted upload leaves its shard unmarked, and the next sync uploads it again without
duplicating a row.

Shape shorthand: n rows, Q queries, D embedding dimension, K hits per query.
"""

import json
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .vector_index import VectorIndexParams
from .vector_store import SearchFilter, StoreSpec, VectorStore

__all__ = ["MilvusStore", "milvus_index_params"]

logger = logging.getLogger(__name__)

META = "__meta__"
MAX_SOURCE = 4096
_MAX_LIMIT = 16384  # Milvus's largest topk / query window


def milvus_index_params(params: VectorIndexParams) -> Tuple[str, Dict, Dict]:
    """(index type, build params, search params) of Milvus for :class:`VectorIndexParams`."""
    if params.kind == "flat":
        return "FLAT", {}, {}
    if params.kind == "hnsw":
        return (
            "HNSW",
            {"M": params.hnsw_m, "efConstruction": params.ef_construction},
            {"ef": params.ef_search},
        )
    nlist = params.nlist or 1024
    return "IVF_FLAT", {"nlist": nlist}, {"nprobe": min(params.nprobe, nlist)}


def _connect(spec: StoreSpec, token: str, timeout: float):
    """A connected ``MilvusClient``; a ValueError naming the URI and the reason otherwise."""
    try:
        from pymilvus import MilvusClient

    except ImportError as e:
        raise ValueError(
            f"vector store '{spec.uri}' needs pymilvus (and milvus-lite for milvus-lite://): "
            f"pip install -r requirements.txt ({e})"
        ) from e
    t0 = time.perf_counter()
    try:
        if spec.kind == "milvus-lite":
            client = MilvusClient(spec.path, timeout=timeout)
        else:
            kw = {"uri": spec.address, "timeout": timeout}
            if token:
                kw["token"] = token
            if spec.db_name:
                kw["db_name"] = spec.db_name
            client = MilvusClient(**kw)
        client.list_collections(timeout=timeout)
    except Exception as e:
        reason = getattr(e, "message", None) or str(e) or type(e).__name__
        raise ValueError(
            f"vector store '{spec.uri}' is unreachable after {time.perf_counter() - t0:.1f} s "
            f"(timeout {timeout:g} s): {reason}"
        ) from None
    return client


class MilvusStore(VectorStore):
    """
    Args:
        spec: a milvus-lite or milvus :class:`StoreSpec`.
        collection: the detections' collection name.
        embed_dim: D.
        model: the index's model fingerprint (its ``weights_sha256`` and ``config_sha256``
            must match the collection's).
        params: the index kind and parameters (:func:`milvus_index_params`).
        token: the server's token ("" for none).
        timeout: seconds to wait for the server on connecting and on each call.
    """

    def __init__(
        self,
        spec: StoreSpec,
        collection: str,
        embed_dim: int,
        model: Dict[str, object],
        params: VectorIndexParams = VectorIndexParams(),
        token: str = "",
        timeout: float = 10.0,
    ):
        self.spec = spec
        self.kind = spec.kind
        self.name = collection
        self.state_name = collection + "_state"
        self.dim = int(embed_dim)
        self.model = {k: model.get(k) for k in ("weights_sha256", "config_sha256")}
        self.params = params
        self.timeout = float(timeout)
        self.client = _connect(spec, token, self.timeout)
        self._loaded = False

    @property
    def where(self) -> str:
        return f"collection '{self.name}' of '{self.spec.uri}'"

    # -- the collections ------------------------------------------------------------------

    def exists(self) -> bool:
        return bool(self.client.has_collection(self.name)) and bool(
            self.client.has_collection(self.state_name)
        )

    def _meta(self) -> Dict[str, object]:
        return {"embed_dim": self.dim, "model": self.model, "format": 1}

    def create(self) -> None:
        """Create the collections (checking existing ones: :meth:`check_compatible`)."""
        from pymilvus import DataType, MilvusClient

        if self.exists():
            self.check_compatible()
            return
        c = self.client
        if c.has_collection(self.name):  # without its state: a half-created store
            c.drop_collection(self.name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE)
        schema.add_field("time_s", DataType.DOUBLE)
        schema.add_field("score", DataType.FLOAT)
        schema.add_field("track", DataType.INT64)
        schema.add_field("shard", DataType.INT64)
        kind, build, _ = milvus_index_params(self.params)
        ip = c.prepare_index_params()
        ip.add_index(field_name="vec", index_type=kind, metric_type="IP", params=build)
        c.create_collection(self.name, schema=schema)
        # sync=False: no wait for the index state (Milvus Lite builds it at once, and has no
        # AllocTimestamp for the waiting to call)
        c.create_index(self.name, ip, sync=False)
        state = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        state.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
        state.add_field("info", DataType.VARCHAR, max_length=65535)
        state.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
        sp = c.prepare_index_params()
        sp.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
        c.create_collection(self.state_name, schema=state)
        c.create_index(self.state_name, sp, sync=False)
        self._put_state(META, self._meta())
        logger.info("Created the Milvus %s (%s, D=%d)", self.where, kind, self.dim)

    def _load(self) -> None:
        if not self._loaded:
            self.client.load_collection(self.name)
            self.client.load_collection(self.state_name)
            self._loaded = True

    def check_compatible(self) -> None:
        """
        Raises:
            ValueError: the collection holds another embedding size or another model's
                vectors, or is not an ian_d2 store.
        """
        desc = self.client.describe_collection(self.name)
        dims = [f["params"].get("dim") for f in desc["fields"] if f["name"] == "vec"]
        if not dims:
            raise ValueError(f"the Milvus {self.where} is not an ian_d2 store (no 'vec' field)")
        if int(dims[0]) != self.dim:
            raise ValueError(
                f"the Milvus {self.where} holds {dims[0]}-d embeddings; this index's model "
                f"makes {self.dim}-d ones: use another collection or drop it "
                "(reindex-vectors --drop)"
            )
        self._load()
        meta = self.state().get(META)
        if meta is None:
            raise ValueError(f"the Milvus {self.where} has no ian_d2 state: not an ian_d2 store")
        if meta.get("model") != self.model:
            mine, theirs = self.model, meta.get("model") or {}
            raise ValueError(
                f"the Milvus {self.where} holds the vectors of another model (weights sha256 "
                f"{str(theirs.get('weights_sha256'))[:12]}, config sha256 "
                f"{str(theirs.get('config_sha256'))[:12]}; this index's: "
                f"{str(mine.get('weights_sha256'))[:12]}, {str(mine.get('config_sha256'))[:12]})"
                ": use another collection or drop it (reindex-vectors --drop)"
            )

    def drop(self) -> None:
        for name in (self.name, self.state_name):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
        self._loaded = False

    # -- state ------------------------------------------------------------------------------

    def _put_state(self, key: str, info: Dict[str, object]) -> None:
        row = {"key": key, "info": json.dumps(info), "vec": [0.0, 0.0]}
        self.client.upsert(self.state_name, [row], timeout=self.timeout)

    def state(self) -> Dict[str, Dict[str, object]]:
        """{key: info} of the state collection (``__meta__`` and one key per finished shard)."""
        self._load()
        out = {}
        batches = [self._query_state('key != ""')]
        if len(batches[0]) >= _MAX_LIMIT:  # beyond one query window: one query per rank
            batches = [self._query_state(f'key like "r{r:03d}-%"') for r in range(1 << 10)]
            batches.append(self._query_state(f'key == "{META}"'))
        for batch in batches:
            for r in batch:
                out[r["key"]] = json.loads(r["info"])
        return out

    def _query_state(self, expr: str) -> list:
        return self.client.query(
            self.state_name, filter=expr, output_fields=["key", "info"], limit=_MAX_LIMIT
        )

    def mark_shard(self, shard: str, info: Dict[str, object]) -> None:
        self._put_state(shard, info)

    def unmark_shard(self, shard: str) -> None:
        self.client.delete(self.state_name, ids=[shard], timeout=self.timeout)

    # -- rows -------------------------------------------------------------------------------

    def count(self) -> int:
        self._load()
        res = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def upsert(
        self,
        keys: np.ndarray,
        vectors: np.ndarray,
        sources: Sequence[str],
        time_s: np.ndarray,
        score: np.ndarray,
        track: np.ndarray,
        shard: int,
        batch: int = 2000,
    ) -> None:
        """Write rows (``keys`` [n], ``vectors`` [n, D] and their fields), replacing rows of the
        same keys."""
        self._load()
        t = np.where(np.isnan(time_s), -1.0, time_s)
        for a in range(0, len(keys), batch):
            rows = [
                {
                    "pk": int(keys[i]),
                    "vec": vectors[i].tolist(),
                    "source": sources[i],
                    "time_s": float(t[i]),
                    "score": float(score[i]),
                    "track": int(track[i]),
                    "shard": int(shard),
                }
                for i in range(a, min(a + batch, len(keys)))
            ]
            self.client.upsert(self.name, rows, timeout=self.timeout)

    def add(self, keys, vectors, sources, time_s, score, track) -> None:
        """:meth:`upsert` of rows outside any shard (shard -1)."""
        self.upsert(np.asarray(keys, np.int64), np.asarray(vectors, np.float32), list(sources),
                    np.asarray(time_s, np.float64), np.asarray(score, np.float32),
                    np.asarray(track, np.int64), -1)  # fmt: skip

    def delete_shard(self, shard: int) -> None:
        self._load()
        self.client.delete(self.name, filter=f"shard == {int(shard)}", timeout=self.timeout)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: Optional[SearchFilter] = None,
        one_per_track: bool = False,
    ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """
        As :meth:`ian_d2.search.vector_store.FaissStore.search`, returning row keys.

        Returns:
            (sims, keys): per query, [K'] float32 and [K'] int64 (row keys), best first.
        """
        self._load()
        k = int(min(k, _MAX_LIMIT))
        q = np.ascontiguousarray(queries, np.float32).reshape(len(queries), -1)
        if k <= 0 or len(q) == 0:
            return [np.zeros(0, np.float32)] * len(q), [np.zeros(0, np.int64)] * len(q)
        _, _, sp = milvus_index_params(self.params)
        kw = dict(
            data=q.tolist(),
            limit=k,
            filter=(filters or SearchFilter()).expression(),
            search_params={"metric_type": "IP", "params": sp},
            output_fields=["pk"],
            timeout=self.timeout,
        )
        if one_per_track:
            kw.update(group_by_field="track", group_size=1)
        res = self.client.search(self.name, **kw)
        sims, keys = [], []
        for hits in res:
            sims.append(np.asarray([h["distance"] for h in hits], np.float32))
            keys.append(np.asarray([h["pk"] for h in hits], np.int64))
        return sims, keys

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client whose server went away
            pass
