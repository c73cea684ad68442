"""Parquet shards of a search index: one file per committed batch of gallery items.

A shard (``INDEX/shards/r<rank>-<seq>.parquet``) is written to a temporary file and renamed:
it is complete or absent. Its columns are :data:`META_COLUMNS` plus ``embedding``
(fixed_size_list<float32>[D]); its key-value metadata ``ian_d2.items`` lists every item it
covers (see :mod:`ian_d2.search.store` for the column types).

Shape shorthand: n detections of one item, N rows of several shards, D embedding dimension.
"""

import glob
import json
import os
import re
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..utils.io import pid_of_temporary_file, process_alive, write_new_file
from .manifest import FORMAT_VERSION, SHARDS
from .sources import GalleryItem

__all__ = [
    "META_COLUMNS",
    "ShardWriter",
    "committed_keys",
    "list_shards",
    "read_embeddings",
    "read_shard_item_records",
    "read_shard_items",
    "read_table",
    "remove_partial_shards",
    "shard_number",
]

_SHARD_RE = re.compile(r"^r(\d{3})-(\d{6})\.parquet$")
_ITEMS_KEY = b"ian_d2.items"
META_COLUMNS = (
    "source",
    "frame",
    "time_s",
    "image_width",
    "image_height",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
)


def shard_number(name: str) -> Tuple[int, int]:
    """(rank, seq) of a shard file name or path (``r<rank>-<seq>.parquet``)."""
    m = _SHARD_RE.match(os.path.basename(name))
    if not m:
        raise ValueError(f"'{name}' is not a shard name (r<rank>-<seq>.parquet)")
    return int(m.group(1)), int(m.group(2))


def list_shards(index_dir: str) -> List[str]:
    """Committed shard files, sorted by (rank, sequence); temporary files are ignored."""
    names = [n for n in os.listdir(os.path.join(index_dir, SHARDS)) if _SHARD_RE.match(n)]
    return [os.path.join(index_dir, SHARDS, n) for n in sorted(names)]


def remove_partial_shards(index_dir: str) -> int:
    """Delete the temporary files that an interrupted run left (those of processes that no
    longer run: another writer's file in progress is kept); returns how many."""
    tmp = glob.glob(os.path.join(index_dir, SHARDS, "*.parquet.tmp.*"))
    removed = 0
    for t in tmp:
        if process_alive(pid_of_temporary_file(t)):
            continue
        try:
            os.remove(t)
            removed += 1
        except FileNotFoundError:  # its writer finished it meanwhile
            pass
    return removed


def _shard_error(path: str, e: Exception) -> ValueError:
    """The error of an unreadable shard: what to do about it (delete it, resume)."""
    return ValueError(
        f"index shard '{path}' is corrupt or not an ian_d2 shard ({type(e).__name__}: {e}). "
        "Delete it and run `python -m ian_d2.search index ... --resume`: its items are indexed "
        "again."
    )


def read_shard_item_records(path: str) -> List[Tuple[GalleryItem, int, int]]:
    """``(item, width, height)`` of every item a shard covers, in the order of its rows (from
    its Parquet metadata, without reading the rows)."""
    try:
        meta = pq.read_metadata(path).metadata or {}
        items = json.loads(meta[_ITEMS_KEY])
        return [
            (GalleryItem(str(s), int(fr), float(t)), int(w), int(h)) for s, fr, t, w, h in items
        ]
    except Exception as e:
        raise _shard_error(path, e) from e


def read_shard_items(path: str) -> List[GalleryItem]:
    """The items a shard covers (from its Parquet metadata, without reading the rows)."""
    return [item for item, _, _ in read_shard_item_records(path)]


def committed_keys(index_dir: str) -> Set[Tuple[str, int]]:
    """``(source, frame)`` of every item of every committed shard."""
    keys = set()
    for path in list_shards(index_dir):
        keys.update(item.key for item in read_shard_items(path))
    return keys


class ShardWriter:
    """
    Writes the shards of one process (``rank``): ``r<rank>-<seq>.parquet``, the sequence number
    continuing after the process's existing shards (resume, append). A name is claimed when the
    shard is committed (:func:`ian_d2.utils.io.write_new_file`): when another writer of the same
    rank (a server's job beside ``index --append``) took it meanwhile, the next free number is
    used, so that no shard overwrites another.
    """

    def __init__(self, index_dir: str, rank: int, embed_dim: int):
        self.dir = os.path.join(index_dir, SHARDS)
        self.rank = rank
        self.embed_dim = embed_dim
        seqs = [
            int(m.group(2))
            for m in (_SHARD_RE.match(n) for n in os.listdir(self.dir))
            if m and int(m.group(1)) == rank
        ]
        self.next_seq = max(seqs, default=0) + 1
        self.written: List[str] = []

    def write(
        self,
        items: Sequence[GalleryItem],
        sizes: Sequence[Tuple[int, int]],
        detections: Sequence[Dict[str, np.ndarray]],
    ) -> str:
        """
        Commit one shard.

        Args:
            items: the items of the batch (every one, with or without detection).
            sizes: (width, height) of each item's image.
            detections: per item, ``boxes`` [n, 4], ``scores`` [n], ``embeds`` [n, D].

        Returns:
            str: the path of the committed shard.
        """
        d = self.embed_dim
        cols: Dict[str, list] = {k: [] for k in META_COLUMNS}
        embeds = []
        for item, (w, h), det in zip(items, sizes, detections):
            n = len(det["scores"])
            cols["source"] += [item.source] * n
            cols["frame"] += [item.frame] * n
            cols["time_s"] += [item.time] * n
            cols["image_width"] += [w] * n
            cols["image_height"] += [h] * n
            b = np.asarray(det["boxes"], np.float32).reshape(n, 4)
            for k, name in enumerate(("x1", "y1", "x2", "y2")):
                cols[name] += b[:, k].tolist()
            cols["score"] += np.asarray(det["scores"], np.float32).reshape(n).tolist()
            embeds.append(np.asarray(det["embeds"], np.float32).reshape(n, d))
        emb = np.concatenate(embeds + [np.zeros((0, d), np.float32)])
        types = {
            "source": pa.string(),
            "frame": pa.int32(),
            "time_s": pa.float64(),
            "image_width": pa.int32(),
            "image_height": pa.int32(),
            "score": pa.float32(),
        }
        arrays = [pa.array(cols[k], type=types.get(k, pa.float32())) for k in META_COLUMNS]
        flat = pa.array(emb.reshape(-1), type=pa.float32())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, d))
        item_list = [[it.source, it.frame, it.time, w, h] for it, (w, h) in zip(items, sizes)]
        metadata = {
            _ITEMS_KEY: json.dumps(item_list).encode(),
            b"ian_d2.format_version": str(FORMAT_VERSION).encode(),
        }
        table = pa.Table.from_arrays(arrays, names=list(META_COLUMNS) + ["embedding"])
        table = table.replace_schema_metadata(metadata)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        while True:
            path = os.path.join(self.dir, f"r{self.rank:03d}-{self.next_seq:06d}.parquet")
            self.next_seq += 1
            try:
                write_new_file(path, lambda f: f.write(data))
                break
            except FileExistsError:  # another writer committed this number first
                continue
        self.written.append(path)
        return path


def read_table(shards: Sequence[str], columns: Sequence[str] = META_COLUMNS) -> pa.Table:
    """The rows of ``shards`` (in that order) for ``columns``, one table."""
    tables = []
    for path in shards:
        try:
            tables.append(pq.read_table(path, columns=list(columns)))
        except Exception as e:
            raise _shard_error(path, e) from e
    if not tables:
        return pa.table({c: pa.array([], type=pa.float32()) for c in columns})
    return pa.concat_tables(tables)


def read_embeddings(shards: Sequence[str], embed_dim: int) -> np.ndarray:
    """[N, D] float32 embeddings of ``shards`` in order."""
    parts = []
    for path in shards:
        try:
            col = pq.read_table(path, columns=["embedding"]).column("embedding")
        except Exception as e:
            raise _shard_error(path, e) from e
        for chunk in col.chunks:
            values = chunk.values.to_numpy(zero_copy_only=False)
            if chunk.type.list_size != embed_dim:
                raise _shard_error(
                    path,
                    ValueError(f"embeddings of size {chunk.type.list_size}, expected {embed_dim}"),
                )
            parts.append(values.reshape(-1, embed_dim))
    return np.concatenate(parts + [np.zeros((0, embed_dim), np.float32)]).astype(np.float32)
