"""Benchmark of the person-search scoring core at CUHK-SYSU scale; prints JSON.

Synthetic scenario: 2,900 queries, a 6,978-image pool with 5-10 detections per image, E = 256;
galleries of 50 ... 4000 images per query (positives first, as in TestG{N}) and the full pool.
Also times a random scenario on the real ``TestG100.mat`` when ``../shared/fixtures`` exists.

Usage: ``python benchmarks/bench_scoring.py [--queries 2900] [--dim 256] [--seed 0]``
"""

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ian_d2.evaluation import (
    GalleryTable,
    SearchGalleries,
    add_pool_negatives,
    evaluate_search,
)

__all__ = ["synthetic_scenario", "main"]

logger = logging.getLogger(__name__)

GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
_G100 = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "cuhk_sysu"
    / "TestG100.mat"
)


def synthetic_scenario(
    rng: np.random.Generator, n_queries: int, n_images: int, dim: int
) -> Tuple[GalleryTable, np.ndarray, np.ndarray, Dict[int, np.ndarray]]:
    """Random detections and embeddings with identity signal.

    Returns:
        (table, query embeddings [Q, E], positive images [Q, 5] (-1 padded), person boxes
        {query: [5, 4]} of the query person in each positive image).
    """
    n_det = rng.integers(5, 11, n_images)
    offsets = np.r_[0, np.cumsum(n_det)]
    d = int(offsets[-1])
    xy = rng.uniform(0, 600, (d, 2))
    boxes = np.c_[xy, xy + rng.uniform(20, 200, (d, 2))]
    scores = rng.uniform(0.2, 1.0, d).astype(np.float32)
    emb = rng.standard_normal((d, dim)).astype(np.float32)
    ident = rng.standard_normal((n_queries, dim))
    n_pos = rng.integers(1, 6, n_queries)
    pos_images = np.full((n_queries, 5), -1, np.int64)
    gt = np.full((n_queries, 5, 4), np.nan)
    free = np.ones(d, bool)  # each detection hosts at most one query person
    for q in range(n_queries):
        ims = rng.choice(n_images, n_pos[q], replace=False)
        pos_images[q, : ims.size] = ims
        for j, im in enumerate(ims):
            slots = np.flatnonzero(free[offsets[im] : offsets[im + 1]])
            if slots.size == 0:
                continue
            det = offsets[im] + slots[0]
            free[det] = False
            w, h = boxes[det, 2:] - boxes[det, :2]
            gt[q, j] = boxes[det] + rng.normal(0, 0.08, 4) * [w, h, w, h]
            gt[q, j, 2:] = np.maximum(gt[q, j, 2:], gt[q, j, :2] + 1)
            if rng.random() < 0.1:  # missed by the detector
                scores[det] = 0.1
            else:
                scores[det] = rng.uniform(0.6, 1.0)
            emb[det] = ident[q] + 1.2 * rng.standard_normal(dim)
    table = GalleryTable(boxes, scores, emb, offsets)
    queries = ident + 1.2 * rng.standard_normal((n_queries, dim))
    return table, queries, pos_images, gt


def synthetic_galleries(
    rng: np.random.Generator, pos_images: np.ndarray, gt: np.ndarray, n_images: int, size: int
) -> SearchGalleries:
    """TestG{size}-like galleries: the positive images first, then random negatives."""
    nq = pos_images.shape[0]
    idx = np.empty((nq, size), np.int64)
    boxes = np.full((nq, size, 4), np.nan)
    for q in range(nq):
        pos = pos_images[q][pos_images[q] >= 0]
        k = pos.size
        perm = rng.permutation(n_images)
        neg = perm[~np.isin(perm, pos)][: size - k]
        idx[q, :k] = pos
        idx[q, k:] = neg
        boxes[q, :k] = gt[q, :k]
    keep = ~np.isnan(boxes).any(axis=2) | np.isnan(boxes).all(axis=2)
    boxes[~keep] = np.nan
    return SearchGalleries.from_dense(idx, boxes)


def _timed(queries, table, galleries, **kw):
    t0 = time.perf_counter()
    res = evaluate_search(queries, table, galleries, **kw)
    return time.perf_counter() - t0, res


def _load_g100(path: Path):
    """(gallery names [Q, N], boxes [Q, N, 4]) via the dataset loader, else a minimal parser."""
    try:
        from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

        p = load_cuhk_sysu_protocol(str(path))
        return np.asarray(p.gallery_imnames, object), np.asarray(p.gallery_boxes, np.float64)
    except ImportError:
        import scipy.io as sio

        protoc = np.atleast_1d(sio.loadmat(str(path))["TestG100"].squeeze())
        names = [[str(g["imname"][0]) for g in it["Gallery"][0]] for it in protoc]
        boxes = []
        for it in protoc:
            row = []
            for g in it["Gallery"][0]:
                loc = np.asarray(g["idlocate"]).reshape(-1).astype(np.float64)
                row.append(np.r_[loc[:2], loc[:2] + loc[2:]] if loc.size else [np.nan] * 4)
            boxes.append(row)
        return np.array(names, object), np.array(boxes)


def real_g100(rng: np.random.Generator, dim: int) -> Dict[str, object]:
    """Time scoring on the real TestG100 galleries with random detections around the GT."""
    names, gboxes = _load_g100(_G100)
    uniq = sorted(set(names.reshape(-1).tolist()))
    index = {n: i for i, n in enumerate(uniq)}
    persons = [dict() for _ in uniq]
    for q, c in zip(*np.nonzero(~np.isnan(gboxes[..., 0]))):
        persons[index[names[q, c]]].setdefault(tuple(gboxes[q, c]), q)
    ident = rng.standard_normal((names.shape[0], dim))
    b_all, s_all, e_all = [], [], []
    for people in persons:
        bx = [np.array(b) + rng.normal(0, 3, 4) for b in people]
        ids = list(people.values())
        for _ in range(int(rng.integers(3, 8))):
            xy = rng.uniform(0, 600, 2)
            bx.append(np.r_[xy, xy + rng.uniform(20, 200, 2)])
            ids.append(-1)
        bx = np.array(bx)
        bx = np.c_[np.minimum(bx[:, :2], bx[:, 2:]), np.maximum(bx[:, :2], bx[:, 2:])]
        e = rng.standard_normal((len(ids), dim))
        for j, pid in enumerate(ids):
            if pid >= 0:
                e[j] += ident[pid]
        b_all.append(bx)
        s_all.append(rng.uniform(0.3, 1.0, len(ids)).astype(np.float32))
        e_all.append(e.astype(np.float32))
    table = GalleryTable.from_per_image(b_all, s_all, e_all, uniq)
    queries = ident + rng.standard_normal(ident.shape)
    gal = SearchGalleries.from_names(names, gboxes, table)
    seconds, res = _timed(queries, table, gal)
    return {
        "n_queries": int(names.shape[0]),
        "gallery_entries": int(names.shape[1]),
        "n_images": table.num_images,
        "n_detections": table.num_detections,
        "seconds": round(seconds, 3),
        "summary": res.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2900)
    parser.add_argument("--images", type=int, default=6978)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    table, queries, pos_images, gt = synthetic_scenario(rng, args.queries, args.images, args.dim)
    kept = int((table.scores >= np.float32(0.5)).sum())
    out: Dict[str, object] = {
        "cpus": os.cpu_count(),
        "synthetic": {
            "n_queries": args.queries,
            "n_images": args.images,
            "n_detections": table.num_detections,
            "n_detections_kept": kept,
            "dim": args.dim,
            "det_thresh": 0.5,
        },
    }
    sizes: Dict[str, object] = {}
    total = 0.0
    g100 = None
    for size in GALLERY_SIZES:
        gal = synthetic_galleries(rng, pos_images, gt, args.images, size)
        seconds, res = _timed(queries, table, gal)
        total += seconds
        m = res.metrics()
        sizes[str(size)] = {"seconds": round(seconds, 3), "mAP": round(m["mAP"], 2)}
        if size == 100:
            g100 = gal
    out["synthetic"]["gallery_sizes"] = sizes
    out["synthetic"]["total_seconds_50_to_4000"] = round(total, 3)
    full = add_pool_negatives(g100, np.arange(args.images), args.images)
    seconds, res = _timed(queries, table, full)
    out["synthetic"]["full_pool"] = {
        "seconds": round(seconds, 3),
        "entries_per_query": int((full.image_index[0] >= 0).sum()),
        "mAP": round(res.metrics()["mAP"], 2),
    }
    if _G100.exists():
        out["real_g100"] = real_g100(np.random.default_rng(args.seed + 1), args.dim)
    else:
        out["real_g100"] = f"skipped: {_G100} absent"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
