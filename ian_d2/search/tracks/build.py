"""Tracks of an index: built from the stored boxes and embeddings, one Parquet file per video.

Layout::

    INDEX/tracks/settings.json          the index's track settings (:class:`TrackSettings`)
    INDEX/tracks/<source key>.parquet   the per-track table of one video (:mod:`.table`)

``<source key>`` is the first 16 hex digits of the SHA-256 of the video's stored path (the
search service's source id). A video's file records, in its Parquet metadata
(``ian_d2.tracks``), the settings and the fingerprint of every shard that holds its frames
(file name, size, rows and a hash of the items it covers): the tracks of a video are up to date
when the shards holding its frames are exactly those.

:func:`build_tracks` brings every video's tracks up to date: the videos without a file, or whose
frames are now in more shards (an append, a resumed run), are tracked again from ALL their
stored detections, so tracks continue across shard boundaries and a resumed or multi-process
index gets the tracks of a one-shot index. Each video's file is written atomically: an
interrupted run keeps the videos it finished (resumable), and a second run changes nothing
(idempotent). A file made from a shard that is gone or changed is refused, with the file names.
Nothing runs the detector: tracks need the stored rows only.

Shape shorthand: n detections of one video, F its indexed frames, D embedding dimension.
"""

import glob
import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...utils.io import atomic_write
from ..manifest import SHARDS, IndexManifest
from ..shards import list_shards, read_embeddings, read_shard_item_records, read_table
from .association import link_tracks
from .settings import TrackSettings
from .table import track_table
from .tracker import MotionTracker

__all__ = [
    "TRACKS",
    "TRACKS_VERSION",
    "build_tracks",
    "read_track_files",
    "shard_fingerprints",
    "source_key",
]

logger = logging.getLogger(__name__)

TRACKS = "tracks"
TRACKS_VERSION = 1
_META_KEY = b"ian_d2.tracks"


def source_key(path: str) -> str:
    """The file key of a source: first 16 hex digits of the SHA-256 of its stored path (the
    search service's source id, :func:`ian_d2.search.serve.state.source_id_of`)."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


def shard_fingerprints(index_dir: str) -> Dict[str, str]:
    """{shard file name: fingerprint} of the committed shards: size, rows and a hash of the
    items the shard covers (from its Parquet metadata, without reading the rows)."""
    out = {}
    for path in list_shards(index_dir):
        try:
            meta = pq.read_metadata(path)
            items = (meta.metadata or {}).get(b"ian_d2.items", b"")
            digest = hashlib.sha256(items).hexdigest()[:16]
            out[os.path.basename(path)] = f"{os.path.getsize(path)}-{meta.num_rows}-{digest}"
        except Exception as e:
            raise ValueError(f"index shard '{path}' is corrupt or unreadable ({e})") from e
    return out


def read_track_files(
    index_dir: str, headers_only: bool = False
) -> List[Tuple[str, Dict, Optional[pa.Table]]]:
    """``(path, header, table)`` of every per-video track file, in file name order: ``header``
    is the file's ``ian_d2.tracks`` metadata (source, shards, settings); ``table`` is None with
    ``headers_only``.

    Raises:
        ValueError: an unreadable file (naming it: delete it and run ``tracks`` again).
    """
    out = []
    for path in sorted(glob.glob(os.path.join(index_dir, TRACKS, "*.parquet"))):
        try:
            table = None if headers_only else pq.read_table(path)
            schema = pq.read_schema(path) if headers_only else table.schema
            header = json.loads((schema.metadata or {})[_META_KEY])
        except Exception as e:
            raise ValueError(
                f"track file '{path}' is corrupt or not an ian_d2 track file ({e}): delete it "
                "and run `python -m ian_d2.search tracks INDEX` again"
            ) from e
        out.append((path, header, table))
    return out


def _video_items(index_dir: str) -> Dict[str, Dict]:
    """{video path: {"shards": set of shard names, "frames": {frame: time}}} of the index."""
    videos: Dict[str, Dict] = defaultdict(lambda: {"shards": set(), "frames": {}})
    for path in list_shards(index_dir):
        for item, _, _ in read_shard_item_records(path):
            if item.frame < 0:
                continue
            v = videos[item.source]
            v["shards"].add(os.path.basename(path))
            v["frames"][int(item.frame)] = float(item.time)
    return dict(videos)


def _rows_of(index_dir: str, shard_names: List[str], sources: set, embed_dim: int):
    """{video path: rows} of ``sources`` in ``shard_names``: detection ids, frames, times,
    boxes [n, 4], scores [n], embeddings [n, D], in (frame, shard, row) order."""
    parts = defaultdict(list)
    for name in shard_names:
        path = os.path.join(index_dir, SHARDS, name)
        cols = ("source", "frame", "time_s", "x1", "y1", "x2", "y2", "score")
        t = read_table([path], cols)
        src = np.asarray(t.column("source").to_pylist(), dtype=object)
        emb = read_embeddings([path], embed_dim)
        stem = os.path.splitext(name)[0]
        for s in set(src.tolist()) & sources:
            rows = np.flatnonzero(src == s)
            parts[s].append(
                {
                    "ids": [f"{stem}.{r}" for r in rows],
                    "frame": t.column("frame").to_numpy()[rows].astype(np.int64),
                    "time": t.column("time_s").to_numpy()[rows].astype(np.float64),
                    "boxes": np.stack(
                        [t.column(k).to_numpy()[rows] for k in ("x1", "y1", "x2", "y2")], 1
                    ).astype(np.float32),
                    "score": t.column("score").to_numpy()[rows].astype(np.float32),
                    "emb": emb[rows],
                    "order": [(name, int(r)) for r in rows],
                }
            )
    out = {}
    for s, ps in parts.items():
        cat = {k: np.concatenate([p[k] for p in ps]) for k in ("frame", "time", "score")}
        cat["boxes"] = np.concatenate([p["boxes"] for p in ps]).reshape(-1, 4)
        cat["emb"] = np.concatenate([p["emb"] for p in ps]).reshape(-1, embed_dim)
        ids = [i for p in ps for i in p["ids"]]
        keys = [k for p in ps for k in p["order"]]
        order = sorted(range(len(ids)), key=lambda i: (int(cat["frame"][i]), keys[i]))
        out[s] = {k: v[order] for k, v in cat.items()}
        out[s]["ids"] = [ids[i] for i in order]
    return out


def track_video(
    frames: Dict[int, float],
    rows: Optional[Dict],
    settings: TrackSettings,
    fallback_fps: float,
    embed_dim: int,
) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """
    Track one video.

    Args:
        frames: {frame number: time} of every indexed frame of the video.
        rows: its detections (see :func:`_rows_of`); None: no detection.
        settings: the track settings.
        fallback_fps: the tracker's frame rate when the video has one indexed frame.

    Returns:
        (labels [n], motion labels [n], rows): the track and motion track of each detection.
    """
    if rows is None:
        rows = {
            "ids": [],
            "frame": np.zeros(0, np.int64),
            "time": np.zeros(0),
            "boxes": np.zeros((0, 4), np.float32),
            "score": np.zeros(0, np.float32),
            "emb": np.zeros((0, embed_dim), np.float32),
        }
    order = sorted(frames)
    times = np.asarray([frames[f] for f in order], np.float64)
    steps = np.diff(times)
    rate = 1.0 / float(np.median(steps)) if len(steps) and np.median(steps) > 0 else fallback_fps
    position = {f: i for i, f in enumerate(order)}
    det_frame = np.asarray([position[int(f)] for f in rows["frame"]], np.int64)
    motion = MotionTracker.from_settings(settings, rate).track(
        times, det_frame, rows["boxes"], rows["score"]
    )
    if settings.reid:
        labels = link_tracks(
            motion,
            rows["time"],
            rows["boxes"],
            rows["emb"],
            min_similarity=settings.link_similarity,
            max_gap_s=settings.link_max_gap_s,
            max_speed=settings.link_max_speed,
        )
    else:
        labels = motion
    return labels, motion, rows


def _resolve_settings(
    tracks_dir: str, settings: Optional[TrackSettings], rebuild: bool
) -> TrackSettings:
    stored = TrackSettings.load(tracks_dir)
    if settings is None:
        return stored or TrackSettings()
    if stored is not None and stored != settings and not rebuild:
        changed = sorted(k for k, v in settings.to_dict().items() if stored.to_dict()[k] != v)
        raise ValueError(
            f"the tracks of '{os.path.dirname(tracks_dir)}' were built with other settings "
            f"({', '.join(f'{k}={stored.to_dict()[k]!r}' for k in changed)}): pass --rebuild to "
            "build them again with the new ones, or leave the options out"
        )
    return settings


def build_tracks(
    index_dir: str,
    settings: Optional[TrackSettings] = None,
    *,
    rebuild: bool = False,
    manifest: Optional[IndexManifest] = None,
) -> Dict[str, object]:
    """
    Bring the tracks of every video of an index up to date (see the module docstring).

    Args:
        index_dir: an index built by ``python -m ian_d2.search index``.
        settings: the track settings (None: the index's, or the defaults for its first tracks);
            settings other than the index's need ``rebuild``.
        rebuild: delete every track file first and build them all with ``settings``.
        manifest: the index's manifest when it is not on disk yet (``reembed`` writes it
            last); None: read from ``index_dir``.

    Returns:
        dict: ``videos`` (of the index), ``built`` (videos tracked by this call), ``tracks``
        and ``detections`` (of the videos tracked by this call), ``seconds``.

    Raises:
        ValueError: not an index; a track file made from a shard that is gone or changed; a
            shard that changed during the call; settings other than the index's without
            ``rebuild``.
    """
    t0 = time.perf_counter()
    manifest = manifest or IndexManifest.load(index_dir)
    tracks_dir = os.path.join(index_dir, TRACKS)
    settings = _resolve_settings(tracks_dir, settings, rebuild)
    if rebuild:
        for path in glob.glob(os.path.join(tracks_dir, "*.parquet")):
            os.remove(path)
    fingerprints = shard_fingerprints(index_dir)
    videos = _video_items(index_dir)
    done = {}
    for path, header, _ in read_track_files(index_dir, headers_only=True):
        for name, fp in header.get("shards", {}).items():
            if fingerprints.get(name) != fp:
                what = "is gone" if name not in fingerprints else "changed"
                raise ValueError(
                    f"index '{index_dir}': shard {name} {what} since the tracks in '{path}' "
                    "were built from it; run `python -m ian_d2.search tracks INDEX --rebuild`"
                )
        if header.get("settings") == settings.to_dict():
            done[header.get("source")] = set(header.get("shards", {}))
    todo = sorted(s for s, v in videos.items() if done.get(s) != v["shards"])
    settings.save(tracks_dir)
    stats = {"videos": len(videos), "built": 0, "tracks": 0, "detections": 0}
    # read the shards of a few videos at a time (their rows and embeddings are held in memory)
    batch: List[str] = []
    for i, source in enumerate(todo):
        batch.append(source)
        if len(batch) < 16 and i < len(todo) - 1:
            continue
        names = sorted(set().union(*(videos[s]["shards"] for s in batch)))
        rows = _rows_of(index_dir, names, set(batch), manifest.embed_dim)
        for s in batch:
            labels, motion, r = track_video(
                videos[s]["frames"], rows.get(s), settings, manifest.fps, manifest.embed_dim
            )
            table = track_table(
                s, r["ids"], r["frame"], r["time"], r["score"], r["emb"], labels, motion
            )
            shards = {n: fingerprints[n] for n in sorted(videos[s]["shards"])}
            _commit(index_dir, s, table, shards, settings)
            stats["built"] += 1
            stats["tracks"] += table.num_rows
            stats["detections"] += len(labels)
        batch = []
    stats["seconds"] = time.perf_counter() - t0
    logger.info(
        "Tracks of %s: %d of %d videos tracked (%d detections -> %d tracks) in %.1f s",
        index_dir,
        stats["built"],
        stats["videos"],
        stats["detections"],
        stats["tracks"],
        stats["seconds"],
    )
    return stats


def _commit(index_dir: str, source: str, table: pa.Table, shards: Dict[str, str], settings):
    """Write one video's track file, after checking that its shards are still the same."""
    for name, fp in shards.items():
        path = os.path.join(index_dir, SHARDS, name)
        if not os.path.isfile(path) or not fp.startswith(f"{os.path.getsize(path)}-"):
            raise ValueError(
                f"index '{index_dir}': shard {name} changed while its tracks were built; run "
                "`python -m ian_d2.search tracks INDEX` again"
            )
    header = {
        "version": TRACKS_VERSION,
        "source": source,
        "shards": shards,
        "settings": settings.to_dict(),
    }
    table = table.replace_schema_metadata({_META_KEY: json.dumps(header).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    path = os.path.join(index_dir, TRACKS, source_key(source) + ".parquet")
    atomic_write(path, lambda f: f.write(data))
