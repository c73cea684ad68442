"""The index as the search service holds it: every stored detection in memory, kept up to date.

:class:`IndexState` loads an index's shards once (metadata columns, embeddings, the items each
shard covers) and, at each request, lists ``INDEX/shards/`` (one ``listdir``): the shards
committed since (by ``index --append`` in another process, or by a job of the service) are read
and appended; nothing already loaded is read again. A shard that disappeared makes it reload
everything. Readers get an :class:`IndexSnapshot`, an immutable view, so a request sees one
consistent index even while a refresh runs.

Approximate vector indexes (``ivf``, ``hnsw``) are kept in memory as faiss indexes whose ids are
the snapshot's rows (new shards are added to them); the exact ``flat`` kind needs no faiss index
(the service ranks with numpy over the rows that pass the filters, see :mod:`.query`).

Ids (never paths):

* source id: the first 16 hex digits of the SHA-256 of the source's stored path;
* detection id: ``<shard stem>.<row in the shard>``, e.g. ``r000-000001.17``;
* frame id: ``<source id>.<frame>``, frame 0 for a still image.

Shape shorthand: N stored detections, D embedding dimension, S shards.
"""

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..manifest import SHARDS, IndexManifest
from ..shards import META_COLUMNS, list_shards, read_embeddings, read_shard_item_records, read_table

__all__ = ["IndexSnapshot", "IndexState", "SourceEntry", "decimal_id", "source_id_of"]

logger = logging.getLogger(__name__)


def decimal_id(text: str) -> Optional[int]:
    """The number of a row or frame in an id: ASCII decimal digits, at most 18 significant ones;
    None for anything else (``"²"``, ``"-1"``, ``""``, 5000 digits: an unknown id, never an
    error)."""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 18:
        return None
    return int(text)


def source_id_of(path: str) -> str:
    """The id of a source: first 16 hex digits of the SHA-256 of its stored path."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


@dataclass
class SourceEntry:
    """
    One image or video of the index.

    Attributes:
        index: its position in :attr:`IndexSnapshot.sources`.
        id: its source id.
        path: its stored (absolute) path.
        kind: "image" or "video".
        frames: [F] int32 indexed frame numbers, sorted (-1 for a still image).
        times: [F] float64 their times in seconds (NaN for a still image).
        sizes: [F, 2] int32 (width, height) of each indexed frame.
    """

    index: int
    id: str
    path: str
    kind: str
    frames: np.ndarray
    times: np.ndarray
    sizes: np.ndarray

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def position(self, frame: int) -> Optional[int]:
        """Where ``frame`` is in :attr:`frames` (None: not indexed)."""
        i = int(np.searchsorted(self.frames, frame))
        return i if i < len(self.frames) and int(self.frames[i]) == frame else None


class RowBuffer:
    """
    Append-only storage of [capacity, D] float32 rows shared by successive snapshots, so that a
    committed shard costs a copy of its own rows, not of all rows so far. A snapshot holds the
    view of the first n rows. Appending after the last filled row writes past the end of every
    view handed out (a reader never sees a row change); the capacity grows by doubling (one copy
    of the filled rows into a new array; older views keep the old one). Appending after a row
    count that is no longer the last (an older snapshot extended again) copies into a new buffer.
    """

    def __init__(self, rows: np.ndarray, reserve: int = 0):
        """A buffer holding ``rows`` [n, D] with room for ``reserve`` more."""
        n, d = rows.shape
        self.data = np.empty((max(n + reserve, 1), d), np.float32)
        self.data[:n] = rows
        self.filled = n

    def append(self, visible: int, rows: np.ndarray) -> Tuple["RowBuffer", np.ndarray]:
        """
        Rows [k, D] after the first ``visible`` ones.

        Returns:
            (buffer, view): the buffer now holding them (this one, or a new one when
            ``visible`` is not its last row) and the [visible + k, D] view of its first rows.
        """
        if visible != self.filled:
            buffer = RowBuffer(self.data[:visible], reserve=max(len(rows), visible))
            return buffer.append(visible, rows)
        end = visible + len(rows)
        if end > len(self.data):
            grown = np.empty((max(end, 2 * len(self.data)), self.data.shape[1]), np.float32)
            grown[:visible] = self.data[:visible]
            self.data = grown
        self.data[visible:end] = rows
        self.filled = end
        return self, self.data[:end]


@dataclass
class IndexSnapshot:
    """
    Every stored detection and indexed item at one time; never modified once published.

    Attributes:
        shard_names: [S] file names of the loaded shards, in row order.
        shard_offsets: [S + 1] int64: the rows of shard s are ``shard_offsets[s]:[s + 1]``.
        sources: the sources, in the order they first appear.
        src: [N] int32 source index of each row.
        frame: [N] int32 frame number (-1: still image).
        time_s: [N] float64 time in seconds (NaN: still image).
        boxes: [N, 4] float32 XYXY boxes, pixels.
        score: [N] float32 detection scores.
        emb: [N, D] float32 L2-normalised embeddings (the first N rows of a :class:`RowBuffer`
            that later snapshots append to, past row N).
        item_rows: {(source index, frame): (first row, number of rows)} of every indexed item.
    """

    embed_dim: int
    shard_names: List[str] = field(default_factory=list)
    shard_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    sources: List[SourceEntry] = field(default_factory=list)
    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    time_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    emb: Optional[np.ndarray] = None
    item_rows: Dict[Tuple[int, int], Tuple[int, int]] = field(default_factory=dict)
    _shard_of_name: Dict[str, int] = field(default_factory=dict)
    _source_of_id: Dict[str, int] = field(default_factory=dict)
    _source_of_path: Dict[str, int] = field(default_factory=dict)
    _per_source: Optional[np.ndarray] = None
    _emb_buffer: Optional[RowBuffer] = None

    def __post_init__(self):
        if self.emb is None:
            self.emb = np.zeros((0, self.embed_dim), np.float32)

    @property
    def num_rows(self) -> int:
        return len(self.score)

    def detections_per_source(self) -> np.ndarray:
        """[number of sources] int64 stored detections of each source (computed once)."""
        if self._per_source is None or len(self._per_source) != len(self.sources):
            self._per_source = np.bincount(self.src, minlength=len(self.sources))
        return self._per_source

    def has_shards(self, names: Sequence[str]) -> bool:
        """Whether the loaded shards are exactly ``names`` (file names, any order)."""
        return len(names) == len(self.shard_names) and all(n in self._shard_of_name for n in names)

    # ids -----------------------------------------------------------------------------------
    def detection_id(self, row: int) -> str:
        s = int(np.searchsorted(self.shard_offsets, row, side="right")) - 1
        stem = os.path.splitext(self.shard_names[s])[0]
        return f"{stem}.{row - int(self.shard_offsets[s])}"

    def row_of(self, detection_id: str) -> Optional[int]:
        """The row of a detection id (None: unknown)."""
        stem, _, row = str(detection_id).rpartition(".")
        s = self._shard_of_name.get(stem + ".parquet")
        r = decimal_id(row)
        if s is None or r is None:
            return None
        start, end = int(self.shard_offsets[s]), int(self.shard_offsets[s + 1])
        return start + r if r < end - start else None

    def source(self, source_id: str) -> Optional[SourceEntry]:
        i = self._source_of_id.get(str(source_id))
        return None if i is None else self.sources[i]

    @staticmethod
    def frame_id(source: SourceEntry, frame: int) -> str:
        return f"{source.id}.{max(int(frame), 0)}"

    def parse_frame_id(self, frame_id: str) -> Optional[Tuple[SourceEntry, int]]:
        """(source, stored frame number: -1 for a still image) of a frame id; None: unknown."""
        sid, _, text = str(frame_id).rpartition(".")
        source = self.source(sid)
        num = decimal_id(text)
        if source is None or num is None:
            return None
        frame = -1 if source.kind == "image" else num
        if source.kind == "image" and num != 0:
            return None
        return (source, frame) if source.position(frame) is not None else None

    def rows_of_item(self, source: SourceEntry, frame: int) -> np.ndarray:
        """[n] int64 rows of the detections of one indexed item."""
        start, count = self.item_rows.get((source.index, int(frame)), (0, 0))
        return np.arange(start, start + count, dtype=np.int64)

    # building --------------------------------------------------------------------------------
    def extended(self, shard_paths: Sequence[str]) -> "IndexSnapshot":
        """A new snapshot: this one plus the rows and items of ``shard_paths`` (in order)."""
        if not shard_paths:
            return self
        sources = list(self.sources)
        by_path = dict(self._source_of_path)
        new_items: Dict[int, List[Tuple[int, float, int, int]]] = {}
        item_rows = dict(self.item_rows)
        names = list(self.shard_names)
        offsets = [int(v) for v in self.shard_offsets]
        parts = {k: [] for k in ("src", "frame", "time_s", "boxes", "score")}
        n = self.num_rows
        for path in shard_paths:
            table = read_table([path], META_COLUMNS)
            cols = {c: table.column(c).to_numpy() for c in META_COLUMNS if c != "source"}
            row_sources = table.column("source").to_pylist()
            records = read_shard_item_records(path)
            for item, w, h in records:
                if item.source not in by_path:
                    by_path[item.source] = len(sources)
                    kind = "image" if item.frame < 0 else "video"
                    sources.append(
                        SourceEntry(
                            len(sources),
                            source_id_of(item.source),
                            item.source,
                            kind,
                            np.zeros(0, np.int32),
                            np.zeros(0),
                            np.zeros((0, 2), np.int32),
                        )
                    )
                new_items.setdefault(by_path[item.source], []).append((item.frame, item.time, w, h))
            src = np.asarray([by_path[s] for s in row_sources], np.int32)
            frame = np.asarray(cols["frame"], np.int32)
            # rows are written item by item: one run of equal (source, frame) per item
            key = src.astype(np.int64) * (1 << 32) + (frame.astype(np.int64) + 1)
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else []
            ends = list(starts[1:]) + [len(key)]
            for a, b in zip(starts, ends):
                item_rows[(int(src[a]), int(frame[a]))] = (n + int(a), int(b - a))
            for item, _, _ in records:  # items without a detection
                item_rows.setdefault((by_path[item.source], item.frame), (0, 0))
            parts["src"].append(src)
            parts["frame"].append(frame)
            parts["time_s"].append(np.asarray(cols["time_s"], np.float64))
            boxes = np.stack([cols[k] for k in ("x1", "y1", "x2", "y2")], axis=1)
            parts["boxes"].append(boxes.astype(np.float32).reshape(-1, 4))
            parts["score"].append(np.asarray(cols["score"], np.float32))
            n += len(src)
            names.append(os.path.basename(path))
            offsets.append(n)
        emb = read_embeddings(shard_paths, self.embed_dim)
        if len(emb) != n - self.num_rows:
            raise ValueError(f"shards {list(shard_paths)}: embeddings and rows differ in number")
        for i, added in new_items.items():
            sources[i] = _with_items(sources[i], added)
        buffer = self._emb_buffer or RowBuffer(self.emb, reserve=len(emb))
        buffer, all_emb = buffer.append(self.num_rows, emb)
        return IndexSnapshot(
            embed_dim=self.embed_dim,
            shard_names=names,
            shard_offsets=np.asarray(offsets, np.int64),
            sources=sources,
            src=np.concatenate([self.src] + parts["src"]),
            frame=np.concatenate([self.frame] + parts["frame"]),
            time_s=np.concatenate([self.time_s] + parts["time_s"]),
            boxes=np.concatenate([self.boxes] + parts["boxes"]),
            score=np.concatenate([self.score] + parts["score"]),
            emb=all_emb,
            item_rows=item_rows,
            _shard_of_name={name: s for s, name in enumerate(names)},
            _source_of_id={s.id: s.index for s in sources},
            _source_of_path=by_path,
            _emb_buffer=buffer,
        )


def _with_items(source: SourceEntry, added: List[Tuple[int, float, int, int]]) -> SourceEntry:
    """``source`` with more indexed items (kept sorted by frame, one entry per frame)."""
    frames = np.concatenate([source.frames, np.asarray([a[0] for a in added], np.int32)])
    times = np.concatenate([source.times, np.asarray([a[1] for a in added], np.float64)])
    sizes = np.concatenate([source.sizes, np.asarray([a[2:] for a in added], np.int32)])
    frames, first = np.unique(frames, return_index=True)
    return SourceEntry(
        source.index, source.id, source.path, source.kind, frames, times[first], sizes[first]
    )


class IndexState:
    """
    An index held in memory by the service; :meth:`current` is the up-to-date snapshot.

    Args:
        index_dir: an index built by ``python -m ian_d2.search index``.
        emb_store: makes the empty embedding store (of D dims) of each (re)load (the service's
            :func:`.matrix.served_store_factory`); None: float32 rows in a :class:`RowBuffer`.

    Attributes:
        manifest: the index's :class:`IndexManifest`.
        kind: the vector index kind ("flat", "ivf", "hnsw").
        vectors: approximate kinds: the faiss index whose ids are the snapshot's rows (None for
            "flat"); search it under :attr:`vectors_lock`.
    """

    def __init__(self, index_dir: str, emb_store=None):
        self.index_dir = index_dir
        self._emb_store = emb_store
        self.manifest = IndexManifest.load(index_dir)
        self.kind = self.manifest.vector_params.kind
        self.vectors = None
        self.vectors_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._snapshot = IndexSnapshot(self.manifest.embed_dim)
        self._load_all()

    def _listing(self) -> List[str]:
        return [os.path.basename(p) for p in list_shards(self.index_dir)]

    def _load_all(self) -> None:
        """(Re)load every shard (and, approximate kinds, the vector index)."""
        store = self._emb_store(self.manifest.embed_dim) if self._emb_store else None
        empty = IndexSnapshot(self.manifest.embed_dim, _emb_buffer=store)
        if self.kind == "flat":
            paths = list_shards(self.index_dir)
            vectors = None
        else:
            from ..store import update_vector_index

            vectors, paths = update_vector_index(self.index_dir, self.manifest)
        snapshot = empty.extended(paths)
        if vectors is not None and vectors.ntotal != snapshot.num_rows:
            raise ValueError(
                f"index '{self.index_dir}': {vectors.ntotal} vectors but {snapshot.num_rows} "
                f"detection rows; delete '{self.index_dir}/vectors' to rebuild the vector index"
            )
        with self.vectors_lock:
            self.vectors = vectors
            self._snapshot = snapshot
        logger.info(
            "Index %s: %d detections of %d sources in %d shards (%s search)",
            self.index_dir,
            snapshot.num_rows,
            len(snapshot.sources),
            len(snapshot.shard_names),
            "exact numpy" if vectors is None else f"faiss {self.kind}",
        )

    def current(self) -> IndexSnapshot:
        """The snapshot, after loading the shards committed since the last call (if any)."""
        snapshot = self._snapshot
        if snapshot.has_shards(self._listing()):  # the usual case: nothing new, no lock
            return snapshot
        with self._refresh_lock:
            snapshot = self._snapshot
            names = self._listing()
            if snapshot.has_shards(names):
                return snapshot
            if not set(snapshot.shard_names) <= set(names):
                logger.warning("A loaded shard of %s is gone: reloading the index", self.index_dir)
                self._load_all()
                return self._snapshot
            new = [n for n in names if n not in set(snapshot.shard_names)]
            paths = [os.path.join(self.index_dir, SHARDS, n) for n in new]
            extended = snapshot.extended(paths)
            with self.vectors_lock:
                if self.vectors is not None:
                    from ..vector_index import add_vectors

                    add_vectors(self.vectors, extended.emb[snapshot.num_rows :])
                self._snapshot = extended
            logger.info("Loaded %d new shard(s): %d detections in all", len(new), extended.num_rows)
            return extended
