"""The unlabeled footage an adaptation learns from: an index's detections, embeddings and tracks.

:func:`read_footage` reads what ``python -m ian_d2.search index`` (and ``tracks``) stored: every
detection (its id ``<shard stem>.<row>``, source, frame, box, score, embedding), the track it
belongs to and the frame it is in, and the items (frames and still images) the index covers.
Nothing is detected or embedded again here.

Shape shorthand: N detections, D embedding dimension, I items.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa

from ..search.manifest import SHARDS, IndexManifest
from ..search.shards import list_shards, read_embeddings, read_shard_item_records, read_table
from ..search.tracks import read_track_files

__all__ = ["Footage", "FootageError", "read_footage"]

logger = logging.getLogger(__name__)


class FootageError(ValueError):
    """Footage that cannot be adapted on (no index, no tracks, moved files, too little): says
    what is wrong and what to do."""


@dataclass
class Footage:
    """
    The detections of an index, in shard then row order.

    Attributes:
        index_dir: the index folder.
        manifest: its :class:`~ian_d2.search.manifest.IndexManifest`.
        ids: [N] detection ids ``<shard stem>.<row>``.
        sources: [N] absolute paths of the image or video of each detection.
        frames: [N] int64 frame numbers (-1: still image).
        boxes: [N, 4] float32 XYXY boxes in the item's pixels.
        scores: [N] float32 detection scores.
        embeddings: [N, D] float32 L2-normalised embeddings of the index's model.
        track_ids: [N] int64 global track number (-1: no track), unique across videos.
        frame_keys: [N] int64 number of the item (source, frame) the detection is in.
        items: [I] ``(source, frame, width, height)`` of every item, detections or not; the
            ``frame_keys`` index this list.
        tracks: [T] ``(source, track number in its video)`` of each global track id.
    """

    index_dir: str
    manifest: IndexManifest
    ids: List[str]
    sources: np.ndarray
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    track_ids: np.ndarray
    frame_keys: np.ndarray
    items: List[Tuple[str, int, int, int]] = field(default_factory=list)
    tracks: List[Tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def summary(self) -> Dict[str, int]:
        """Counts for logs and manifests."""
        tracked = self.track_ids >= 0
        return {
            "detections": len(self),
            "items": len(self.items),
            "videos": len({s for s, f, _, _ in self.items if f >= 0}),
            "tracks": len(self.tracks),
            "tracked_detections": int(tracked.sum()),
        }


def _items(shard_paths: List[str]) -> List[Tuple[str, int, int, int]]:
    """Every item the shards cover (each once), in shard order."""
    seen, out = set(), []
    for path in shard_paths:
        for item, width, height in read_shard_item_records(path):
            key = (item.source, int(item.frame))
            if key not in seen:
                seen.add(key)
                out.append((item.source, int(item.frame), int(width), int(height)))
    return out


def _check_sources(index_dir: str, sources: List[str]) -> None:
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        raise FootageError(
            f"{len(missing)} of the {len(sources)} files indexed in '{index_dir}' no longer "
            f"exist, e.g. '{missing[0]}': the footage was moved or deleted. Put it back where it "
            "was indexed (the index stores absolute paths), or index it again where it is now"
        )


def _tracks(index_dir: str, ids: List[str]) -> Tuple[np.ndarray, List[Tuple[str, int]]]:
    """[N] global track id of each detection (-1: none) and the (source, number) of each."""
    files = read_track_files(index_dir)
    if not files:
        raise FootageError(
            f"index '{index_dir}' has no tracks: adaptation learns from them (a track is one "
            "person over many frames). Build them with `python -m ian_d2.search tracks "
            f"{index_dir}` (videos only: still images have no tracks)"
        )
    row_of = {d: i for i, d in enumerate(ids)}
    track_ids = np.full(len(ids), -1, dtype=np.int64)
    tracks: List[Tuple[str, int]] = []
    for path, header, table in files:
        source = table.column("source").to_pylist()
        number = table.column("track").to_pylist()
        members = table.column("detections").to_pylist()
        for s, t, dets in zip(source, number, members):
            rows = [row_of[d] for d in dets if d in row_of]
            if len(rows) != len(dets):
                raise FootageError(
                    f"track file '{path}' names detections the index's shards do not hold: it is "
                    f"stale; run `python -m ian_d2.search tracks {index_dir}` again"
                )
            track_ids[rows] = len(tracks)
            tracks.append((s, int(t)))
    return track_ids, tracks


def read_footage(index_dir: str, check_files: bool = True) -> Footage:
    """
    Read an index's detections, embeddings and tracks (see :class:`Footage`).

    Args:
        index_dir: a search index with tracks.
        check_files: refuse an index whose images or videos are no longer where it says.

    Raises:
        FootageError / ValueError: not an index, no detection, no tracks, stale track files,
            moved footage; each names the index or file and says what to do.
    """
    manifest = IndexManifest.load(index_dir)
    shards = list_shards(index_dir)
    if not shards:
        raise FootageError(
            f"index '{index_dir}' holds no committed shard in {SHARDS}/: index footage into it "
            "first (`python -m ian_d2.search index`)"
        )
    tables = [read_table([p], ("source", "frame", "x1", "y1", "x2", "y2", "score")) for p in shards]
    table = pa.concat_tables(tables)
    emb = read_embeddings(shards, manifest.embed_dim)
    ids = [
        f"{os.path.splitext(os.path.basename(path))[0]}.{r}"
        for path, t in zip(shards, tables)
        for r in range(t.num_rows)
    ]
    items = _items(shards)
    if check_files:
        _check_sources(index_dir, sorted({s for s, _, _, _ in items}))
    sources = np.asarray(table.column("source").to_pylist(), dtype=object)
    frames = table.column("frame").to_numpy().astype(np.int64)
    key_of = {(s, f): i for i, (s, f, _, _) in enumerate(items)}
    frame_keys = np.asarray([key_of[(s, int(f))] for s, f in zip(sources, frames)], np.int64)
    boxes = np.stack([table.column(k).to_numpy() for k in ("x1", "y1", "x2", "y2")], 1)
    track_ids, tracks = _tracks(index_dir, ids)
    footage = Footage(
        index_dir=os.path.abspath(index_dir),
        manifest=manifest,
        ids=ids,
        sources=sources,
        frames=frames,
        boxes=boxes.astype(np.float32).reshape(-1, 4),
        scores=table.column("score").to_numpy().astype(np.float32),
        embeddings=emb,
        track_ids=track_ids,
        frame_keys=frame_keys,
        items=items,
        tracks=tracks,
    )
    logger.info("Footage of '%s': %s", index_dir, footage.summary())
    return footage
