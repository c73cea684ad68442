"""The embeddings as the service holds them: the settings (:class:`ServeVectors`), the matrix of a
snapshot (:class:`ServedEmbeddings`) and what builds it shard by shard (:class:`ServedStore`).

``serve --served-vectors``:

* ``int8`` (default) / ``fp16``: the process holds compact codes (1 / 2 bytes per dimension:
  256 / 512 bytes per 256-d detection instead of 1024) that faiss scans; the float32 rows stay
  on disk (an anonymous file, memory-mapped) for the exact re-ranking of the scan's best
  candidates (``--rerank``), and the ranking is exact (:mod:`.compact`, :func:`.query.rank`).
* ``fp32``: the float32 matrix in memory, as before; concurrent searches arriving within
  ``--batch-window-ms`` are ranked in one matrix product (:mod:`.batcher`).

A :class:`ServedEmbeddings` behaves as the [N, D] float32 matrix for the code that reads rows
(``emb[row]``, ``emb[rows]``, ``emb[a:b]``, ``len``, ``shape``, ``emb @ q``, ``np.asarray``):
the exact float32 rows, from memory or from the memory map. :class:`ServedStore` stands where
:class:`.state.RowBuffer` stands in a snapshot (``IndexSnapshot._emb_buffer``): appending the
rows of new shards returns the next snapshot's matrix, and published matrices never change.

Shape shorthand: N rows, D embedding dimension, M rows passing a filter, k candidates.
"""

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .batcher import RankBatcher
from .compact import COMPACT_PRECISIONS, CompactCodes, CompactView, Float32File
from .state import RowBuffer

__all__ = [
    "SERVED_PRECISIONS",
    "ServeVectors",
    "ServedEmbeddings",
    "ServedStore",
    "served_store_factory",
]

logger = logging.getLogger(__name__)

SERVED_PRECISIONS = ("int8", "fp16", "fp32")
BATCH_SHARE = 0.25  # a filtered query joins a batch when its filter keeps >= this share of rows
COMPACT_BELOW_SHARE = 16  # compact: filters keeping < 1/16 of the rows are ranked in float32


@dataclass(frozen=True)
class ServeVectors:
    """
    The ``serve`` settings of the served embeddings.

    Attributes:
        precision: "int8", "fp16" (compact codes in memory, float32 on disk, exact re-ranking)
            or "fp32" (the float32 matrix in memory).
        rerank: compact: the scan's best candidates ranked again in float32 at first (more when
            the error bound cannot rule out a better row; at least the page).
        batch_window_ms: fp32: searches arriving within this many milliseconds are ranked in one
            matrix product (0: each alone).
        batch_max: fp32: at most this many queries per product.
    """

    precision: str = "int8"
    rerank: int = 200
    batch_window_ms: float = 1.0
    batch_max: int = 16

    def __post_init__(self):
        if self.precision not in SERVED_PRECISIONS:
            raise ValueError(
                f"served vectors must be one of {SERVED_PRECISIONS}, not {self.precision!r}"
            )
        if self.rerank < 1 or self.batch_window_ms < 0 or self.batch_max < 1:
            raise ValueError(
                "--rerank and --batch-max must be >= 1 and --batch-window-ms >= 0 "
                f"(got {self.rerank}, {self.batch_max}, {self.batch_window_ms})"
            )


class ServedEmbeddings:
    """
    The [N, D] embeddings of one snapshot (immutable).

    Args:
        exact: [N, D] float32 rows (an array, or a read-only memory map in compact mode).
        codes: compact mode: the codes of the same rows (None: fp32).
        batcher: fp32: the batcher of concurrent queries (None: each alone).
        rerank: compact: the candidates re-ranked in float32 at first.
    """

    def __init__(
        self,
        exact: np.ndarray,
        codes: Optional[CompactView] = None,
        batcher: Optional[RankBatcher] = None,
        rerank: int = 200,
    ):
        self.exact = exact
        self.codes = codes
        self.batcher = batcher if batcher is not None and batcher.enabled else None
        self.rerank = int(rerank)

    # the float32 matrix, for the code that reads rows ---------------------------------------
    @property
    def shape(self) -> Tuple[int, int]:
        return self.exact.shape

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.exact)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.exact[key])

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.exact, dtype=dtype)
        return out.copy() if copy else out

    def __matmul__(self, q) -> np.ndarray:
        """[N] exact similarities of every row to ``q`` [D]."""
        return self.similarities(q)[1]

    def copy(self) -> np.ndarray:
        return np.array(self.exact)

    @property
    def compact(self) -> bool:
        return self.codes is not None

    @property
    def resident_bytes(self) -> int:
        """Bytes this matrix keeps in the process's memory: the codes (compact; the float32 rows
        are in the OS's file cache) or the float32 rows."""
        return self.codes.nbytes if self.codes is not None else int(self.exact.nbytes)

    # ranking ----------------------------------------------------------------------------------
    def similarities(
        self, q: np.ndarray, mask: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """
        Exact similarities (float32 dot products) of the rows of ``mask`` to ``q``.

        Args:
            q: [D] float32 query; mask: [N] bool (None: every row).

        Returns:
            (rows [M] int64 ascending, similarities [M] float32). Through the batcher when it is
            on and the filter keeps at least ``BATCH_SHARE`` of the rows.
        """
        q = np.asarray(q, np.float32).reshape(-1)
        n = len(self.exact)
        if mask is None:
            rows = np.arange(n, dtype=np.int64)
        else:
            rows = np.flatnonzero(mask).astype(np.int64)
        if self.batcher is not None and n and len(rows) >= BATCH_SHARE * n:
            sims = self.batcher.similarities(self.exact, q)
            return rows, sims if mask is None else sims[rows]
        if mask is None:
            return rows, self.exact @ q
        return rows, np.asarray(self.exact[rows]) @ q

    def similarities_of(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """[k] exact similarities of ``rows`` [k] (any order) to ``q`` [D]."""
        return np.asarray(self.exact[rows], np.float32) @ np.asarray(q, np.float32).reshape(-1)

    def ranks_compact(self, n_candidates: int, need: int) -> bool:
        """Whether a query with this many candidate rows and hits needed scans the codes (or,
        for a small filtered set, simply ranks its float32 rows)."""
        if self.codes is None:
            return False
        small = max(2 * max(self.rerank, need), len(self.exact) // COMPACT_BELOW_SHARE)
        return n_candidates > small

    def candidates(
        self, q: np.ndarray, k: int, mask: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows by the compact similarity: (rows [k'], compact sims [k'])."""
        return self.codes.search(q, k, mask)

    def error_bound(self, q: np.ndarray) -> float:
        """The most a compact similarity to ``q`` can differ from the exact one."""
        return self.codes.error_bound(q)


class ServedStore:
    """
    Builds the :class:`ServedEmbeddings` of successive snapshots (``IndexSnapshot._emb_buffer``;
    one writer: the state's refresh).

    Args:
        dim: D.
        settings: the served vectors' settings.
        directory: compact: where the float32 file lives (the index folder).
        batcher: fp32: the batcher shared by every snapshot of the service.
    """

    def __init__(
        self,
        dim: int,
        settings: ServeVectors,
        directory: Optional[str] = None,
        batcher: Optional[RankBatcher] = None,
    ):
        self.dim = dim
        self.settings = settings
        self.directory = directory
        self.batcher = batcher
        self.filled = 0
        self._rows: Optional[RowBuffer] = None
        self._file: Optional[Float32File] = None
        self._codes: Optional[CompactCodes] = None
        if settings.precision in COMPACT_PRECISIONS:
            self._file = Float32File(dim, directory)
            self._codes = CompactCodes(settings.precision, dim)

    def __bool__(self) -> bool:  # a store, even empty, is never replaced by a RowBuffer
        return True

    def append(self, visible: int, rows: np.ndarray) -> Tuple["ServedStore", ServedEmbeddings]:
        """
        Rows [k, D] after the first ``visible`` ones.

        Returns:
            (store, matrix): the store now holding them (this one, or a new one when ``visible``
            is not its last row: an older snapshot extended again) and the [visible + k, D]
            matrix of the next snapshot.
        """
        rows = np.asarray(rows, np.float32).reshape(-1, self.dim)
        if visible != self.filled:
            return self._branch(visible).append(visible, rows)
        end = visible + len(rows)
        if self._file is None:
            if self._rows is None:
                self._rows = RowBuffer(np.zeros((0, self.dim), np.float32), reserve=len(rows))
            self._rows, view = self._rows.append(visible, rows)
            self.filled = end
            return self, ServedEmbeddings(view, None, self.batcher, self.settings.rerank)
        self._file.append(rows)
        view = self._file.view(end)
        self._codes.append(view, len(rows))
        self.filled = end
        codes = self._codes.view()
        return self, ServedEmbeddings(view, codes, None, self.settings.rerank)

    def _branch(self, n: int) -> "ServedStore":
        """A new store holding the first ``n`` rows of this one."""
        branch = ServedStore(self.dim, self.settings, self.directory, self.batcher)
        if n == 0:
            return branch
        if self._file is None:
            branch._rows = RowBuffer(self._rows.data[:n])
        else:
            branch._file.copy_rows(n, self._file)
            branch._codes.append(branch._file.view(n), n)
        branch.filled = n
        return branch


def served_store_factory(
    settings: Optional[ServeVectors] = None, directory: Optional[str] = None
) -> Callable[[int], ServedStore]:
    """What makes the empty store (of D dims) of each (re)load of an index
    (``IndexState(emb_store=...)``): stores of ``settings`` (default :class:`ServeVectors`)
    sharing one batcher, their float32 files in ``directory`` (compact)."""
    settings = settings or ServeVectors()
    batcher = None
    if settings.precision == "fp32":
        batcher = RankBatcher(settings.batch_window_ms / 1000.0, settings.batch_max)
    logger.info(
        "Served vectors: %s%s",
        settings.precision,
        (
            f", exact re-ranking from {settings.rerank} candidates"
            if settings.precision != "fp32"
            else f", batch window {settings.batch_window_ms:g} ms (at most {settings.batch_max})"
        ),
    )
    return lambda dim: ServedStore(dim, settings, directory, batcher)
