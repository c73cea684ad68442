"""The stand-in index of ``bench_serve``: ``rows`` stored detections written directly with
``ShardWriter`` under a manifest of the indexer's own ``_open_manifest`` (random L2-normalised
embeddings of the model's size, fake video frames and stills, 0-7 detections per item, 256 items
per shard), built once and reused; every run serves a fresh copy of it.
"""

import logging
import os
import shutil
import time
from typing import Dict, List, Tuple

from ian_d2.utils.testing import save_small_model, small_cfg  # first: silences a D2 warning

import numpy as np
import pyarrow.parquet as pq

from ian_d2.utils.fingerprint import inference_variant, model_fingerprint
from ian_d2.search.indexer import _open_manifest
from ian_d2.search.manifest import IndexManifest
from ian_d2.search.shards import ShardWriter, list_shards
from ian_d2.search.sources import GalleryItem
from ian_d2.search.store import update_vector_index
from ian_d2.search.vector_index import VectorIndexParams

__all__ = ["build_stand_in_index", "copy_index", "shard_rows", "stand_in_index"]

logger = logging.getLogger("bench_serve")

FAKE_ROOT = "/stand-in/footage"  # the stand-in rows' sources (no such files)
VIDEO_FPS = 25.0
STAND_IN_SHARD_ITEMS = 256  # items per shard, as ``index`` writes them by default


def _stand_in_items(
    rows: int, videos: int, image_share: float, rng: np.random.Generator, fps: float
) -> Tuple[List[GalleryItem], np.ndarray, List[Tuple[int, int]]]:
    """Items (fake videos' sampled frames in order, then fake still images), their detection
    counts (0-7, summing to ``rows``) and their (width, height)."""
    n = int(rows / 3.5 * 1.2) + 16
    counts = rng.integers(0, 8, n)
    cum = np.cumsum(counts)
    last = int(np.searchsorted(cum, rows))  # the item that reaches ``rows``
    counts = counts[: last + 1].copy()
    counts[-1] -= int(cum[last] - rows)
    n = len(counts)
    n_images = int(round(n * image_share))
    n_video = n - n_images
    step = VIDEO_FPS / fps if 0 < fps < VIDEO_FPS else 1.0
    items, sizes = [], []
    per_video = np.full(videos, n_video // videos)
    per_video[: n_video % videos] += 1
    for v, k in enumerate(per_video):
        path = f"{FAKE_ROOT}/cam{v + 1:02d}.mp4"
        for j in range(int(k)):
            frame = int(np.ceil(j * step - 1e-9))
            items.append(GalleryItem(path, frame, frame / VIDEO_FPS))
            sizes.append((1280, 720))
    for i in range(n_images):
        items.append(GalleryItem(f"{FAKE_ROOT}/photos/img{i + 1:05d}.jpg"))
        sizes.append((800, 600))
    return items, counts, sizes


def build_stand_in_index(
    index_dir: str,
    cfg,
    rows: int,
    *,
    fps: float = 5.0,
    videos: int = 8,
    image_share: float = 0.05,
    vector_kind: str = "flat",
    seed: int = 0,
) -> Dict:
    """
    An index of ``rows`` stand-in detections of the model of ``cfg`` (see the module docstring),
    created in ``index_dir`` (an empty or missing folder) as ``index`` would: the manifest of
    ``_open_manifest``, shards of ``ShardWriter``, the vector index of ``update_vector_index``.

    Returns:
        dict: rows, items, sources, shards, seconds.
    """
    t0 = time.perf_counter()
    manifest = _open_manifest(
        index_dir,
        model_fingerprint(cfg),
        inference_variant(cfg),
        allow_variant_mismatch=False,
        fps=fps,
        score_thresh=0.0,  # the small random model's scores are low: keep every detection
        vector_params=VectorIndexParams(kind=vector_kind),
        resume=False,
        append=False,
    )
    manifest.save(index_dir)
    dim = manifest.embed_dim
    rng = np.random.default_rng(seed)
    items, counts, sizes = _stand_in_items(rows, videos, image_share, rng, fps)
    writer = ShardWriter(index_dir, 0, dim)
    for a in range(0, len(items), STAND_IN_SHARD_ITEMS):
        b = min(a + STAND_IN_SHARD_ITEMS, len(items))
        dets = []
        for item_counts, (w, h) in zip(counts[a:b], sizes[a:b]):
            k = int(item_counts)
            bw = rng.uniform(0.04, 0.2, k) * w
            bh = np.minimum(bw * rng.uniform(1.8, 3.0, k), h * 0.95)
            x1 = rng.uniform(0, 1, k) * (w - bw)
            y1 = rng.uniform(0, 1, k) * (h - bh)
            emb = rng.standard_normal((k, dim), dtype=np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            dets.append(
                {
                    "boxes": np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32),
                    "scores": rng.uniform(0.05, 1.0, k).astype(np.float32),
                    "embeds": emb,
                }
            )
        writer.write(items[a:b], sizes[a:b], dets)
    update_vector_index(index_dir, manifest)
    return {
        "rows": int(counts.sum()),
        "items": len(items),
        "sources": len({it.source for it in items}),
        "shards": len(writer.written),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def shard_rows(index_dir: str) -> List[Tuple[str, int]]:
    """(shard stem, rows) of every committed shard."""
    return [
        (os.path.basename(p)[: -len(".parquet")], pq.read_metadata(p).num_rows)
        for p in list_shards(index_dir)
    ]


def copy_index(src: str, dst: str) -> None:
    """The index of ``src`` (manifest, shards, vectors) copied to the new folder ``dst``."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("jobs", "media", "*.tmp.*"))


def stand_in_index(args, work: str) -> Tuple[str, Dict]:
    """The stand-in index of the command line's ``args`` (built in ``--index`` or under
    ``work``, or reused when that folder holds one) and its description."""
    index_dir = args.index or os.path.join(work, "stand_in")
    if IndexManifest.exists(index_dir):
        rows = sum(n for _, n in shard_rows(index_dir))
        logger.info("Reusing the stand-in index %s (%d rows)", index_dir, rows)
        return index_dir, {"rows": rows, "reused": True}
    model_path = os.path.abspath(index_dir.rstrip("/\\")) + ".model.pth"
    cfg = small_cfg(save_small_model(os.path.abspath(model_path), args.seed))
    logger.info("Building a stand-in index of %d rows in %s", args.rows, index_dir)
    desc = build_stand_in_index(
        index_dir, cfg, args.rows, fps=args.fps, videos=args.videos,
        vector_kind=args.vector_index, seed=args.seed,
    )  # fmt: skip
    desc["reused"] = False
    return index_dir, desc
