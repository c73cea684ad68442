"""Where an index's vectors live: one small interface, two backends.

* ``faiss`` (the embedded default): a faiss index in the index folder, in the searching process
  (:mod:`.vector_index`, kept up to date by :func:`ian_d2.search.store.update_vector_index`).
* Milvus (:mod:`.milvus_store`, through pymilvus): ``milvus-lite://PATH.db`` (a local file, one
  process at a time) or ``milvus://HOST:PORT[/DB]`` (a server or cluster; its token from a file
  or an environment variable, never from the command line).

The Parquet shards stay the source of truth: a store holds each stored detection's embedding
under a stable key (:func:`row_key`: its shard and row) with the fields a search filters on
(source, time, detection score, track), and is rebuilt from the shards by
``python -m ian_d2.search reindex-vectors`` (:mod:`.store_sync`).

Both backends apply :class:`SearchFilter` before the top-k (faiss with an id selector, Milvus
with a boolean expression) and, asked for one hit per track, group in the store (Milvus
``group_by_field``; faiss by widening the search until ``k`` distinct tracks are found).

Shape shorthand:
    N: stored vectors; Q: queries; D: embedding dimension; K: hits per query.
"""

import abc
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import faiss
import numpy as np

__all__ = [
    "FAISS",
    "TOKEN_ENV",
    "FaissStore",
    "SearchFilter",
    "StoreSpec",
    "VectorStore",
    "parse_store_uri",
    "read_token",
    "row_key",
    "split_row_key",
    "track_key",
]

logger = logging.getLogger(__name__)

FAISS = "faiss"
TOKEN_ENV = "IAN_D2_MILVUS_TOKEN"

# row keys: rank (10 bits) | shard sequence (20 bits) | row in the shard (24 bits)
_ROW_BITS, _SEQ_BITS = 24, 20
_TRACKED = 1 << 62  # track keys of tracked rows have this bit; an untracked row's is its key


def row_key(rank: int, seq: int, row) -> np.ndarray:
    """The stable int64 key of rows ``row`` (int or [n]) of shard ``r<rank>-<seq>``."""
    if not (0 <= rank < 1 << 10 and 0 <= seq < 1 << _SEQ_BITS):
        raise ValueError(f"shard r{rank:03d}-{seq:06d} is outside the key range")
    row = np.asarray(row, np.int64)
    if row.size and int(row.max()) >= 1 << _ROW_BITS:
        raise ValueError(f"shard r{rank:03d}-{seq:06d} has more than {1 << _ROW_BITS} rows")
    return (np.int64(rank) << (_ROW_BITS + _SEQ_BITS)) | (np.int64(seq) << _ROW_BITS) | row


def split_row_key(key) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, seq, row) of row keys (the inverse of :func:`row_key`)."""
    key = np.asarray(key, np.int64)
    return (
        key >> (_ROW_BITS + _SEQ_BITS),
        (key >> _ROW_BITS) & ((1 << _SEQ_BITS) - 1),
        key & ((1 << _ROW_BITS) - 1),
    )


def track_key(track_id: str) -> int:
    """The int64 grouping key of a tracked row (``track_id`` ``<source id>.t<number>``)."""
    import hashlib

    h = int.from_bytes(hashlib.sha256(track_id.encode()).digest()[:7], "little")
    return _TRACKED | h


@dataclass(frozen=True)
class SearchFilter:
    """
    Which stored detections a search may return (all given conditions hold).

    Attributes:
        sources: the detection's source (image or video path: a camera) is one of these.
        time_min, time_max: video time in seconds within [time_min, time_max] (a still image
            has no time: excluded when either is given).
        min_score: detection score >= this.
    """

    sources: Optional[Tuple[str, ...]] = None
    time_min: Optional[float] = None
    time_max: Optional[float] = None
    min_score: Optional[float] = None

    def __post_init__(self):
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        if self.time_min is not None and self.time_max is not None:
            if self.time_min > self.time_max:
                raise ValueError(f"time range {self.time_min}..{self.time_max} is empty")

    @property
    def empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def mask(self, sources: Sequence[str], source_index, time_s, score) -> Optional[np.ndarray]:
        """[N] bool rows that pass (None: no condition), from the rows' fields (``source_index``
        into ``sources``; ``time_s`` NaN for still images)."""
        if self.empty:
            return None
        keep = np.ones(len(score), bool)
        if self.sources is not None:
            wanted = np.isin(np.asarray(sources, dtype=object), list(self.sources))
            keep &= wanted[np.asarray(source_index)] if len(wanted) else False
        t = np.asarray(time_s, np.float64)
        if self.time_min is not None or self.time_max is not None:
            with np.errstate(invalid="ignore"):  # video times are >= 0; NaN: a still image
                keep &= t >= max(self.time_min or 0.0, 0.0)
                if self.time_max is not None:
                    keep &= t <= self.time_max
        if self.min_score is not None:
            keep &= np.asarray(score) >= np.float32(self.min_score)
        return keep

    def expression(self) -> str:
        """The filter as a Milvus boolean expression ("" for none; still images are stored
        with time -1)."""
        parts = []
        if self.sources is not None:
            parts.append(f"source in [{', '.join(json.dumps(s) for s in self.sources)}]")
        if self.time_min is not None or self.time_max is not None:
            parts.append(f"time_s >= {max(float(self.time_min or 0.0), 0.0)!r}")
            if self.time_max is not None:
                parts.append(f"time_s <= {float(self.time_max)!r}")
        if self.min_score is not None:
            # the stored float32 score, compared as Milvus compares it (float32 vs a literal)
            parts.append(f"score >= {float(np.float32(self.min_score))!r}")
        return " and ".join(parts)


@dataclass(frozen=True)
class StoreSpec:
    """
    A parsed ``--vector-store`` URI.

    Attributes:
        uri: the URI as recorded in the manifest (no secret in it).
        kind: "faiss", "milvus-lite" or "milvus".
        path: milvus-lite: the absolute path of the database file.
        address: milvus: ``http://HOST:PORT``.
        db_name: milvus: the database ("" = the server's default).
    """

    uri: str
    kind: str
    path: str = ""
    address: str = ""
    db_name: str = ""
    extra: Dict[str, str] = field(default_factory=dict)


_MILVUS_RE = re.compile(r"^milvus://([A-Za-z0-9.\-_\[\]:]+?):(\d{1,5})(?:/([A-Za-z0-9_]*))?/?$")


def parse_store_uri(uri: Optional[str]) -> StoreSpec:
    """
    ``faiss`` (or None), ``milvus-lite://PATH.db`` or ``milvus://HOST:PORT[/DB]``.

    Raises:
        ValueError: any other form, naming it and what is expected; a URI with a password or
            token in it (those come from a file or an environment variable).
    """
    if uri is None or uri == FAISS:
        return StoreSpec(FAISS, FAISS)
    uri = str(uri)
    if uri.startswith("milvus-lite://"):
        path = uri[len("milvus-lite://") :]
        if not path.endswith(".db"):
            raise ValueError(
                f"--vector-store '{uri}': a Milvus Lite store is a file ending in .db "
                "(milvus-lite://PATH.db)"
            )
        path = os.path.abspath(os.path.expanduser(path))
        return StoreSpec(f"milvus-lite://{path}", "milvus-lite", path=path)
    if uri.startswith("milvus://"):
        if "@" in uri:
            raise ValueError(
                f"--vector-store: a Milvus URI carries no user, password or token (given "
                f"'{uri.split('@')[-1]}' with credentials): put the token in a file "
                f"(--milvus-token-file) or in ${TOKEN_ENV}"
            )
        m = _MILVUS_RE.match(uri)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(
                f"--vector-store '{uri}' is not milvus://HOST:PORT[/DB] (e.g. "
                "milvus://localhost:19530 or milvus://milvus.internal:19530/cameras)"
            )
        host, port, db = m.group(1), int(m.group(2)), m.group(3) or ""
        canon = f"milvus://{host}:{port}" + (f"/{db}" if db else "")
        return StoreSpec(canon, "milvus", address=f"http://{host}:{port}", db_name=db)
    raise ValueError(
        f"--vector-store '{uri}' is not one of: faiss (the default, in the index folder), "
        "milvus-lite://PATH.db (a local Milvus Lite file), milvus://HOST:PORT[/DB] (a server)"
    )


def read_token(token_file: Optional[str]) -> str:
    """The Milvus token: the first line of ``token_file``, else ``$IAN_D2_MILVUS_TOKEN``, else ""
    (a server without authentication)."""
    if token_file:
        if not os.path.isfile(token_file):
            raise ValueError(f"--milvus-token-file '{token_file}' does not exist")
        with open(token_file) as f:
            token = f.readline().strip()
        if not token:
            raise ValueError(f"--milvus-token-file '{token_file}' is empty")
        return token
    return os.environ.get(TOKEN_ENV, "")


def _group_first(ids: np.ndarray, sims: np.ndarray, groups: np.ndarray, k: int):
    """The first (best) hit of each group, at most ``k``, in rank order."""
    seen = set()
    keep = []
    for j, (i, g) in enumerate(zip(ids, groups)):
        if i < 0 or g in seen:
            continue
        seen.add(g)
        keep.append(j)
        if len(keep) == k:
            break
    return sims[keep], ids[keep]


class VectorStore(abc.ABC):
    """
    What every backend does: rows (a stable int64 key, a vector, the filter fields) in, the
    best rows per query out, with the filters and the grouping applied before the top-k.
    """

    kind = ""

    @abc.abstractmethod
    def add(self, keys, vectors, sources, time_s, score, track) -> None:
        """Store rows: ``keys`` [n] int64, ``vectors`` [n, D], ``sources`` n strings,
        ``time_s`` [n] (NaN: still image), ``score`` [n], ``track`` [n] int64 grouping keys."""

    @abc.abstractmethod
    def search(self, queries, k, filters=None, one_per_track=False):
        """Per query (``queries`` [Q, D]) the ``k`` best rows passing ``filters`` (at most one
        per track with ``one_per_track``): (sims, keys), lists of [K'] arrays, best first."""

    @abc.abstractmethod
    def count(self) -> int:
        """Rows stored."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Remove every row (and the store's own structures)."""

    def close(self) -> None:
        """Release the connection (nothing to do in-process)."""


class FaissStore(VectorStore):
    """
    The faiss backend's search: a faiss index whose id i is row i of the index's shards (in
    the order the index covers them), with the rows' filter fields.

    Args:
        index: a faiss index (``flat``, ``ivf`` or ``hnsw`` of :mod:`.vector_index`).
        sources: the distinct sources; ``source_index`` [N] int: each row's.
        time_s: [N] float64 video time (NaN: still image).
        score: [N] float32 detection score.
        track: [N] int64 grouping key of each row (:func:`track_key` or the row's own key);
            None: given later by :meth:`set_tracks` (needed for grouping only).
    """

    kind = FAISS

    def __init__(self, index, sources, source_index, time_s, score, track=None):
        self.index = index
        self.sources = list(sources)
        self.source_index = np.asarray(source_index)
        self.time_s = np.asarray(time_s, np.float64)
        self.score = np.asarray(score, np.float32)
        self.track = None if track is None else np.asarray(track, np.int64)

    def set_tracks(self, track: np.ndarray) -> None:
        self.track = np.asarray(track, np.int64)

    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, keys, vectors, sources, time_s, score, track) -> None:
        """Append rows; faiss numbers its vectors, so ``keys`` must be the next row numbers
        (``count()`` onwards)."""
        keys = np.asarray(keys, np.int64)
        n0 = self.count()
        if not np.array_equal(keys, np.arange(n0, n0 + len(keys))):
            raise ValueError(f"faiss store: keys must be the next rows {n0}..{n0 + len(keys) - 1}")
        index_of = {s: i for i, s in enumerate(self.sources)}
        for s in sources:
            if s not in index_of:
                index_of[s] = len(self.sources)
                self.sources.append(s)
        self.index.add(np.ascontiguousarray(vectors, np.float32).reshape(len(keys), -1))
        self.source_index = np.r_[self.source_index, [index_of[s] for s in sources]].astype(
            np.int64
        )
        self.time_s = np.r_[self.time_s, np.asarray(time_s, np.float64)]
        self.score = np.r_[self.score, np.asarray(score, np.float32)]
        if self.track is not None or n0 == 0:
            base = self.track if self.track is not None else np.zeros(0, np.int64)
            self.track = np.r_[base, np.asarray(track, np.int64)]

    def drop(self) -> None:
        self.index.reset()
        self.sources, self.source_index = [], np.zeros(0, np.int64)
        self.time_s, self.score = np.zeros(0), np.zeros(0, np.float32)
        self.track = None

    def _params(self, selector):
        if isinstance(self.index, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
        ivf = None if isinstance(self.index, faiss.IndexFlat) else faiss.try_extract_index_ivf(
            self.index
        )  # fmt: skip
        if ivf is not None:
            return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        return faiss.SearchParameters(sel=selector)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filters: Optional[SearchFilter] = None,
        one_per_track: bool = False,
    ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """
        The ``k`` best rows per query among those passing ``filters``.

        Args:
            queries: [Q, D] L2-normalised embeddings.
            k: hits per query (tracks with ``one_per_track``).
            filters: conditions applied before the top-k.
            one_per_track: at most one hit (the best) per track.

        Returns:
            (sims, rows): per query, [K'] float32 similarities and [K'] int64 rows, best first.
        """
        q = np.ascontiguousarray(queries, np.float32).reshape(len(queries), -1)
        mask = (filters or SearchFilter()).mask(
            self.sources, self.source_index, self.time_s, self.score
        )
        n_ok = self.count() if mask is None else int(mask.sum())
        if one_per_track and self.track is None:
            raise ValueError("one hit per track needs the rows' tracks (set_tracks)")
        params = None
        if mask is not None:
            selected = np.flatnonzero(mask).astype(np.int64)
            self._selector = faiss.IDSelectorBatch(len(selected), faiss.swig_ptr(selected))
            params = self._params(self._selector)
        sims_out, rows_out = [], []
        for qi in range(len(q)):
            kk = int(min(k if not one_per_track else 4 * k, n_ok))
            while True:
                if kk <= 0:
                    s, i = np.zeros(0, np.float32), np.zeros(0, np.int64)
                    break
                s, i = self.index.search(q[qi : qi + 1], kk, params=params)
                s, i = s[0], i[0]
                if not one_per_track:
                    s, i = s[i >= 0], i[i >= 0]
                    break
                gs, gi = _group_first(i, s, self.track[np.maximum(i, 0)], k)
                if len(gi) >= k or kk >= n_ok:
                    s, i = gs, gi
                    break
                kk = int(min(4 * kk, n_ok))
            sims_out.append(s.astype(np.float32))
            rows_out.append(i.astype(np.int64))
        return sims_out, rows_out
