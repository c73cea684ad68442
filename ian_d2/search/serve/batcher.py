"""Similarities of concurrent searches in one matrix product (dynamic batching).

The service answers each request on a thread of its pool. Ranking by a query embedding first
computes the query's similarity to every stored row, a matrix-vector product that reads the whole
[N, D] float32 matrix (100 MB at 10^5 rows) for one query: memory-bound. :class:`RankBatcher`
collects the query vectors of the searches that arrive within a short window (``window_s``) and
computes them in one matrix-matrix product, which reads the matrix once for all of them (what
Triton's dynamic batcher and TorchServe's batch size + max delay do for models). Each request
then filters, groups and pages its own row of similarities on its own thread, exactly as alone.

How a batch forms (leader / followers, no thread of its own): the first query to arrive while
no batch is forming leads one; it waits until ``window_s`` has passed since it arrived, or until
``max_batch`` queries are pending, whichever comes first, then takes the pending queries (at most
``max_batch``), computes them and hands each its similarities. The oldest query left pending (more
than ``max_batch`` came) leads the next batch at once (its window has passed). A lone request is
therefore delayed by the window at most. Queries against different matrices (snapshots before
and after an append) are computed in separate products.

Equal to one by one up to float rounding: a product's rows are the dot products of the same
vectors, summed in another order by the BLAS kernel (differences of a few float32 ulps).

Shape shorthand: N rows, D embedding dimension, B queries in a batch.
"""

import logging
import threading
import time
from typing import Dict, List, Optional

import numpy as np

__all__ = ["RankBatcher"]

logger = logging.getLogger(__name__)


class _Query:
    """One pending query and, once computed, its similarities (or the error)."""

    __slots__ = ("emb", "q", "arrived", "ready", "lead", "sims", "error")

    def __init__(self, emb: np.ndarray, q: np.ndarray):
        self.emb = emb
        self.q = q
        self.arrived = time.monotonic()
        self.ready = threading.Event()
        self.lead = False
        self.sims: Optional[np.ndarray] = None
        self.error: Optional[BaseException] = None

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.sims


def _key(emb: np.ndarray):
    """Queries with equal keys share one product (the same rows of the same buffer)."""
    return (emb.__array_interface__["data"][0], emb.shape, emb.strides)


class RankBatcher:
    """
    Args:
        window_s: how long the first query of a batch waits for others (0: no batching, each
            query computed alone at once).
        max_batch: a batch is computed as soon as it holds this many queries.

    Attributes:
        stats: counters: ``batches``, ``queries``, and the flush reasons ``full`` (the batch
            reached ``max_batch``) and ``window`` (the window passed).
    """

    def __init__(self, window_s: float, max_batch: int = 16):
        if window_s < 0 or max_batch < 1:
            raise ValueError(f"window_s must be >= 0 and max_batch >= 1 ({window_s}, {max_batch})")
        self.window_s = float(window_s)
        self.max_batch = int(max_batch)
        self._cond = threading.Condition(threading.Lock())
        self._pending: List[_Query] = []
        self._forming = False  # a leader is waiting for its batch
        self.stats: Dict[str, int] = {"batches": 0, "queries": 0, "full": 0, "window": 0}

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.max_batch > 1

    def similarities(self, emb: np.ndarray, q: np.ndarray) -> np.ndarray:
        """
        [N] float32 ``emb @ q``, computed with the other queries of its batch.

        Args:
            emb: [N, D] float32 rows; q: [D] float32 query.
        """
        q = np.asarray(q, np.float32).reshape(-1)
        if not self.enabled:
            return emb @ q
        item = _Query(emb, q)
        with self._cond:
            self._pending.append(item)
            lead = not self._forming
            if lead:
                self._forming = True
            elif len(self._pending) >= self.max_batch:
                self._cond.notify_all()  # the leader's batch is full
        if not lead:
            item.ready.wait()
            if not item.lead:
                return item.result()
            item.ready.clear()  # promoted: it leads the next batch
        return self._lead(item)

    def _lead(self, item: _Query) -> np.ndarray:
        """Wait for the batch (window or full), take it, compute it; ``item``'s similarities."""
        deadline = item.arrived + self.window_s
        with self._cond:
            while len(self._pending) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            nxt = self._pending[0] if self._pending else None
            if nxt is None:
                self._forming = False
            self.stats["batches"] += 1
            self.stats["queries"] += len(batch)
            self.stats["full" if len(batch) >= self.max_batch else "window"] += 1
        if nxt is not None:  # more than max_batch came: the oldest left leads the next batch
            nxt.lead = True
            nxt.ready.set()
        self._compute(batch)
        return item.result()

    @staticmethod
    def _compute(batch: List[_Query]) -> None:
        """Set the similarities of every query of ``batch``: one product per matrix."""
        groups: Dict[object, List[_Query]] = {}
        for it in batch:
            groups.setdefault(_key(it.emb), []).append(it)
        for items in groups.values():
            try:
                emb = items[0].emb
                if len(items) == 1:
                    items[0].sims = emb @ items[0].q
                else:
                    sims = np.stack([it.q for it in items]) @ emb.T  # [B, N]
                    for i, it in enumerate(items):
                        it.sims = sims[i]
            except BaseException as e:  # every waiting request gets the error
                for it in items:
                    it.error = e
            finally:
                for it in items:
                    if not it.lead:
                        it.ready.set()
