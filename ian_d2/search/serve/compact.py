"""The compact copy of the served embeddings: int8 or float16 codes scanned by faiss, with a
measured bound on their error, and the float32 rows kept on disk for the exact re-ranking.

* ``int8``: scalar quantisation per dimension (faiss ``QT_8bit``, like faiss SQ8 and Milvus
  SQ8): each dimension's range [min, max] over the rows is cut into 255 steps; 1 byte per
  dimension. ``fp16``: faiss ``QT_fp16``; 2 bytes per dimension. float32 takes 4.
* **The error bound.** Encoding a chunk of rows also decodes it and records, per dimension, the
  largest error ``err_d = max |decoded - x|`` over its rows (values outside the trained range are
  clipped: their error counts too). For a query q, every compact similarity is then within
  ``sum_d err_d |q_d|`` (+ the float32 rounding of two dot products) of the float32 one
  (:meth:`CompactView.error_bound`), which lets the ranking prove that no row left out of its
  re-ranking could be better than the hits it returns (:func:`..query.rank`).
* **Chunks.** Rows arrive shard by shard (the service loads the shards committed since the last
  request). Each append becomes a new immutable faiss ``IndexScalarQuantizer`` (a chunk); the
  last two chunks are merged while the older is at most twice the newer, so there are
  O(log N) chunks. A snapshot holds a tuple of chunks and searches them without a lock, while
  later snapshots add their own. The int8 ranges are trained on the rows at hand (widened by
  ``TRAIN_MARGIN``), again (every row encoded again) each time the rows double up to
  ``RETRAIN_UNTIL`` rows, and when an append errs ``CLIP_LIMIT`` times the trained error
  (values far outside the ranges, clipped) once the rows grew by ``CLIP_GROWTH`` since (the
  measured bound covers the clipped values meanwhile).
* :class:`Float32File`: the float32 rows, appended to an anonymous file (``O_TMPFILE``, no name
  in the folder; gone with the process) and read back memory-mapped: the OS's file cache holds
  them, not the process's heap.

Shape shorthand: N rows, D embedding dimension, k candidates, C code bytes per row.
"""

import logging
import tempfile
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

__all__ = [
    "COMPACT_PRECISIONS",
    "Chunk",
    "CompactCodes",
    "CompactView",
    "Float32File",
    "RETRAIN_UNTIL",
    "TRAIN_MARGIN",
]

logger = logging.getLogger(__name__)

COMPACT_PRECISIONS = ("int8", "fp16")
RETRAIN_UNTIL = 1 << 18  # int8: retrain on doubling while fewer rows were trained on
TRAIN_MARGIN = 0.05  # int8: each dimension's range widened by this share of it on both sides
CLIP_LIMIT = 8.0  # int8: an append erring this many times the trained error is clipped
CLIP_GROWTH = 1.25  # int8: clipped appends retrain once the rows grew this much since training
_BLOCK = 4096  # rows encoded / decoded at a time (small temporaries, reused by the allocator)
_U = 2.0**-24  # float32 unit roundoff
_local = threading.local()


def _one_omp_thread() -> None:
    """faiss's scan in this thread on one OpenMP thread: a request is one query, and request
    threads each opening a team of their own would oversubscribe the cores."""
    if not getattr(_local, "faiss_single", False):
        import faiss

        faiss.omp_set_num_threads(1)
        _local.faiss_single = True


def _new_index(precision: str, dim: int):
    import faiss

    qtype = {"int8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}
    if precision not in qtype:
        raise ValueError(
            f"compact precision must be one of {COMPACT_PRECISIONS}, not {precision!r}"
        )
    return faiss.IndexScalarQuantizer(dim, qtype[precision], faiss.METRIC_INNER_PRODUCT)


@dataclass(frozen=True)
class Chunk:
    """
    Rows ``start .. start + n - 1`` as a faiss index of their codes (never modified).

    Attributes:
        index: faiss ``IndexScalarQuantizer`` holding the n codes.
        err: [D] float32 largest |decoded - float32| of each dimension over the rows.
        max_norm: largest L2 norm of a row (the rounding term of the bound).
    """

    start: int
    n: int
    index: object
    err: np.ndarray
    max_norm: float


@dataclass(frozen=True)
class CompactView:
    """The codes of a snapshot's rows: its chunks, in row order (immutable)."""

    chunks: Tuple[Chunk, ...]
    dim: int

    @property
    def num_rows(self) -> int:
        return self.chunks[-1].start + self.chunks[-1].n if self.chunks else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the codes (and the quantiser's ranges)."""
        return sum(c.n * c.index.code_size for c in self.chunks) + 8 * self.dim

    def error_bound(self, q: np.ndarray) -> float:
        """
        The most by which a compact similarity to ``q`` [D] can differ from the float32 one:
        ``sum_d err_d |q_d|`` over the worst chunk, plus the rounding of two float32 dot products
        (``2 D u |q| max|x|``, doubled for safety).
        """
        if not self.chunks:
            return 0.0
        err = np.max(np.stack([c.err for c in self.chunks]), axis=0).astype(np.float64)
        q64 = np.abs(np.asarray(q, np.float64))
        norm = max(c.max_norm for c in self.chunks) + float(err.max())
        rounding = 4.0 * self.dim * _U * float(np.linalg.norm(q64)) * norm
        return float(err @ q64) + rounding + 1e-7

    def search(
        self, q: np.ndarray, k: int, mask: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """
        The ``k`` rows most similar to ``q`` [D] by the compact similarity (among ``mask``).

        Args:
            q: [D] float32 query; k: how many; mask: [N] bool rows that may be hits (None: all).

        Returns:
            (rows [k'] int64, compact similarities [k'] float32), k' = min(k, rows of mask),
            in no particular order.
        """
        import faiss

        _one_omp_thread()
        q2 = np.ascontiguousarray(np.asarray(q, np.float32).reshape(1, -1))
        found_rows, found_sims = [], []
        for c in self.chunks:
            params, bits, kc = None, None, min(k, c.n)
            if mask is not None:
                local = mask[c.start : c.start + c.n]
                kc = min(k, int(np.count_nonzero(local)))
                if kc == 0:
                    continue
                bits = np.packbits(local.astype(np.uint8), bitorder="little")
                params = faiss.SearchParameters(
                    sel=faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
                )
            sims, ids = c.index.search(q2, kc, params=params)
            del bits  # the bitmap lives until the search is over
            valid = ids[0] >= 0
            found_rows.append(ids[0][valid] + c.start)
            found_sims.append(sims[0][valid])
        if not found_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        rows = np.concatenate(found_rows).astype(np.int64)
        sims = np.concatenate(found_sims).astype(np.float32)
        if len(rows) > k:  # the k best of the chunks' k best
            top = np.argpartition(-sims, k - 1)[:k]
            rows, sims = rows[top], sims[top]
        return rows, sims


class CompactCodes:
    """
    The growing codes of one :class:`Float32File`'s rows (one writer: the service's refresh).

    Args:
        precision: "int8" or "fp16".
        dim: D.
    """

    def __init__(self, precision: str, dim: int):
        self.precision = precision
        self.dim = dim
        self._codec = _new_index(precision, dim)  # trained, holds no codes
        self.trained_rows = 0
        self._clip_limit: Optional[np.ndarray] = None  # [D] an append erring more: train again
        self.chunks: List[Chunk] = []

    @property
    def num_rows(self) -> int:
        return self.chunks[-1].start + self.chunks[-1].n if self.chunks else 0

    def view(self) -> CompactView:
        return CompactView(tuple(self.chunks), self.dim)

    def _train(self, rows: np.ndarray) -> np.ndarray:
        """int8: the ranges of each dimension: [min, max] over ``rows`` [N, D] widened by
        ``TRAIN_MARGIN`` of their span on both sides; returns the [D] spans."""
        lo = np.full(self.dim, np.inf, np.float32)
        hi = np.full(self.dim, -np.inf, np.float32)
        for a in range(0, len(rows), _BLOCK):
            block = np.asarray(rows[a : a + _BLOCK], np.float32)
            lo = np.minimum(lo, block.min(axis=0))
            hi = np.maximum(hi, block.max(axis=0))
        margin = np.maximum(hi - lo, np.float32(1e-6)) * np.float32(TRAIN_MARGIN)
        lo, span = lo - margin, hi - lo + 2 * margin  # room for later rows' extremes
        import faiss

        faiss.copy_array_to_vector(
            np.concatenate([lo, span]).astype(np.float32), self._codec.sq.trained
        )
        self._codec.is_trained = True
        self.trained_rows = len(rows)
        return span

    def _encode(self, start: int, rows: np.ndarray) -> Chunk:
        """A chunk of ``rows`` [n, D] (rows ``start ..``), with its measured error."""
        index, codes = self._sized_index(len(rows))
        err = np.zeros(self.dim, np.float32)
        max_norm = 0.0
        for a in range(0, len(rows), _BLOCK):
            block = np.ascontiguousarray(rows[a : a + _BLOCK], np.float32)
            codes[a : a + len(block)] = self._codec.sa_encode(block)
            decoded = self._codec.sa_decode(codes[a : a + len(block)])
            err = np.maximum(err, np.abs(decoded - block).max(axis=0))
            max_norm = max(max_norm, float(np.linalg.norm(block, axis=1).max()))
        return Chunk(start, len(rows), index, err, max_norm)

    def _sized_index(self, n: int):
        """An index of the codec holding ``n`` codes (uninitialised: to be written), and the
        [n, C] uint8 view of its code array (written in place: no copy, no spare capacity)."""
        import faiss

        index = faiss.clone_index(self._codec)
        size = n * index.code_size
        index.codes.resize(size)
        index.ntotal = n
        view = faiss.rev_swig_ptr(index.codes.data(), size) if size else np.zeros(0, np.uint8)
        return index, view.reshape(n, index.code_size)

    def _merge(self, a: Chunk, b: Chunk) -> Chunk:
        import faiss

        index, codes = self._sized_index(a.n + b.n)
        for c, at in ((a, 0), (b, a.n)):
            size = c.n * index.code_size
            codes[at : at + c.n] = faiss.rev_swig_ptr(c.index.codes.data(), size).reshape(c.n, -1)
        return Chunk(
            a.start, a.n + b.n, index, np.maximum(a.err, b.err), max(a.max_norm, b.max_norm)
        )

    def append(self, all_rows: np.ndarray, n_new: int) -> None:
        """
        Encode the last ``n_new`` rows of ``all_rows`` [N, D] float32 (the rows so far, e.g. a
        memory map); int8 may train again and encode every row (see the module docstring).
        """
        n = len(all_rows)
        if n_new <= 0:
            return
        if self.precision == "int8":
            retrain = self.trained_rows == 0 or (
                n >= 2 * self.trained_rows and self.trained_rows < RETRAIN_UNTIL
            )
            if not retrain:
                chunk = self._encode(n - n_new, all_rows[n - n_new :])
                clipped = bool(np.any(chunk.err > self._clip_limit))  # far outside the ranges
                retrain = clipped and n >= CLIP_GROWTH * self.trained_rows
            if retrain:
                span = self._train(all_rows)
                self.chunks = [self._encode(0, all_rows)]
                self._clip_limit = CLIP_LIMIT * np.maximum(self.chunks[0].err, span / 510.0)
                logger.info("int8 served vectors: ranges trained on %d rows", n)
                return
        else:
            chunk = self._encode(n - n_new, all_rows[n - n_new :])
        self.chunks.append(chunk)
        while len(self.chunks) >= 2 and self.chunks[-2].n <= 2 * self.chunks[-1].n:
            b = self.chunks.pop()
            self.chunks[-1] = self._merge(self.chunks[-1], b)


class Float32File:
    """
    Append-only float32 rows [N, D] in an anonymous file (in ``directory``; the system's temporary
    folder when that cannot hold one), read as read-only memory maps.

    Args:
        dim: D.
        directory: where the file lives (an index folder).
    """

    def __init__(self, dim: int, directory: Optional[str] = None):
        self.dim = dim
        try:
            self._file = tempfile.TemporaryFile(dir=directory)
        except OSError as e:
            logger.warning(
                "No float32 spill file in %s (%s): using the temporary folder", directory, e
            )
            self._file = tempfile.TemporaryFile()
        self.rows = 0

    def append(self, rows: np.ndarray) -> None:
        """Write ``rows`` [n, D] after the last row."""
        rows = np.ascontiguousarray(rows, np.float32).reshape(-1, self.dim)
        self._file.seek(self.rows * self.dim * 4)
        self._file.write(memoryview(rows).cast("B"))
        self._file.flush()
        self.rows += len(rows)

    def view(self, n: int) -> np.ndarray:
        """[n, D] float32 read-only memory map of the first ``n`` rows (n <= :attr:`rows`)."""
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.memmap(self._file, np.float32, mode="r", shape=(n, self.dim))

    def copy_rows(self, n: int, other: "Float32File") -> None:
        """Append the first ``n`` rows of ``other``."""
        src = other.view(n)
        for a in range(0, n, _BLOCK):
            self.append(src[a : a + _BLOCK])
