"""The work of ``reembed`` on one shard: the stored boxes embedded again in their frames.

:func:`reembed_shard` decodes each item of a shard that holds detections (a still image, or a
video frame: :class:`FrameReader` keeps one video open and decodes it forward, so every frame
is decoded once) and embeds the item's stored boxes with the model's given-box path
(:func:`ian_d2.modeling.extract_query_embeddings`, as a query box and as an ``EMBED_BOXES
final`` gallery detection are embedded), several frames per model call.
:func:`write_reembedded_shard` writes the shard's rows with the new embeddings under the same
file name, atomically.

Shape shorthand: n rows (detections) of a shard, m boxes of one item, D embedding dimension.
"""

import logging
import os
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..utils.io import atomic_write
from .shards import read_shard_item_records, read_table
from .sources import GalleryItem, read_image

__all__ = ["FrameReader", "reembed_shard", "write_reembedded_shard"]

logger = logging.getLogger(__name__)


class FrameReader:
    """
    The images of stored items, decoded once each: a still image is read whole; a video stays
    open and is decoded forward (``grab`` over the frames in between, ``retrieve`` of the one
    asked), so that the items of a video in frame order cost one pass over it. A frame before
    the current position reopens the video.
    """

    def __init__(self):
        self.path: Optional[str] = None
        self.cap = None
        self.position = 0  # the frame number the next grab decodes

    def _open(self, path: str) -> None:
        self.close()
        cap = cv2.VideoCapture(path) if os.path.isfile(path) else None
        if cap is None or not cap.isOpened():
            reason = "does not exist" if not os.path.exists(path) else "cannot be opened"
            raise ValueError(f"video '{path}' {reason}: it is a source of the index")
        self.path, self.cap, self.position = path, cap, 0

    def read(self, item: GalleryItem) -> np.ndarray:
        """[H, W, 3] uint8 BGR image of ``item``; a ValueError naming the file and frame."""
        if item.frame < 0:
            return read_image(item.source)
        if self.path != item.source or item.frame < self.position:
            self._open(item.source)
        while self.position <= item.frame:
            if not self.cap.grab():
                raise ValueError(
                    f"video '{item.source}' ends before frame {item.frame}, which the index "
                    "holds: the file changed since it was indexed"
                )
            self.position += 1
        ok, img = self.cap.retrieve()
        if not ok or img is None:
            raise ValueError(f"video '{item.source}': frame {item.frame} cannot be decoded")
        return img

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.path, self.cap, self.position = None, None, 0


def _rows_by_item(path: str) -> Tuple[Dict[Tuple[str, int], List[int]], np.ndarray]:
    """({(source, frame): its rows}, boxes [n, 4] float32) of a shard."""
    t = read_table([path], ("source", "frame", "x1", "y1", "x2", "y2"))
    rows: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    frames = t.column("frame").to_numpy()
    for r, source in enumerate(t.column("source").to_pylist()):
        rows[(source, int(frames[r]))].append(r)
    boxes = np.stack([t.column(k).to_numpy() for k in ("x1", "y1", "x2", "y2")], 1)
    return rows, boxes.astype(np.float32).reshape(-1, 4)


def reembed_shard(
    path: str,
    model,
    to_input,
    device: str,
    embed_dim: int,
    reader: FrameReader,
    batch_size: int = 4,
    on_items: Callable[[int], None] = lambda n: None,
) -> np.ndarray:
    """
    The embeddings of a shard's stored boxes by ``model``, in the order of its rows.

    Args:
        path: the shard (of the index being re-embedded).
        model: the new model (eval mode, on ``device``).
        to_input: its :class:`ian_d2.search.indexer.ImageToInput`.
        device: the model's device.
        embed_dim: D, the model's embedding size.
        reader: decodes the items' images.
        batch_size: frames per model call.
        on_items: called with the number of items done (with or without detections).

    Returns:
        np.ndarray: [n, D] float32, L2-normalised.

    Raises:
        ValueError: an image or frame that cannot be read, or whose size is not the stored
            one (the footage changed since it was indexed); rows of no item of the shard.
    """
    from ..modeling import extract_query_embeddings

    rows, boxes = _rows_by_item(path)
    out = np.zeros((len(boxes), embed_dim), np.float32)
    done = np.zeros(len(boxes), bool)
    batch: List[Tuple[List[int], Dict]] = []

    def flush() -> None:
        if not batch:
            return
        emb = extract_query_embeddings(model, [b[1] for b in batch], [boxes[b[0]] for b in batch])
        emb = emb.float().cpu().numpy()
        start = 0
        for item_rows, _ in batch:
            out[item_rows] = emb[start : start + len(item_rows)]
            done[item_rows] = True
            start += len(item_rows)
        on_items(len(batch))
        batch.clear()

    for item, width, height in read_shard_item_records(path):
        item_rows = rows.get(item.key)
        if not item_rows:  # an item without detections: nothing to decode
            on_items(1)
            continue
        image = reader.read(item)
        if image.shape[:2] != (height, width):
            what = "image" if item.frame < 0 else f"video frame {item.frame} of"
            raise ValueError(
                f"{what} '{item.source}' is {image.shape[1]}x{image.shape[0]}, the index holds "
                f"{width}x{height}: not the footage that was indexed"
            )
        inp = to_input(image)
        inp["image"] = inp["image"].to(device)
        batch.append((item_rows, inp))
        if len(batch) >= batch_size:
            flush()
    flush()
    if not done.all():
        raise ValueError(
            f"index shard '{path}': {int((~done).sum())} row(s) belong to no item its metadata "
            "lists (a corrupt shard)"
        )
    return out


def write_reembedded_shard(src: str, dst: str, embeddings: np.ndarray) -> None:
    """
    Write the rows of shard ``src`` with ``embeddings`` [n, D] instead of its own to ``dst``,
    atomically (complete or absent): every other column, the column types and the shard's
    metadata (the items it covers) are those of ``src``.
    """
    try:
        table = pq.read_table(src)
    except Exception as e:
        raise ValueError(f"index shard '{src}' is corrupt or unreadable ({e})") from e
    n, d = embeddings.shape
    if n != table.num_rows:
        raise ValueError(f"{n} embeddings for the {table.num_rows} rows of '{src}'")
    metadata = table.schema.metadata
    flat = pa.array(np.ascontiguousarray(embeddings, np.float32).reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, d)
    index = table.schema.get_field_index("embedding")
    table = table.set_column(index, "embedding", column).replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    atomic_write(dst, lambda f: f.write(data))
