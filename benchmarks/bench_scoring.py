"""Benchmark of person-search scoring at CUHK-SYSU scale; prints JSON.

1. ``cli``: the re-scoring command as a user runs it, wall time of the whole process
   (``python -m ian_d2.evaluation.rescore``: start-up, imports, annotation files, scoring). The
   scenario is a CUHK-SYSU annotation tree written at full scale (no image is needed): the real
   ``TestG100.mat`` when ``../shared/fixtures`` has it (2,900 queries), else a random one of the
   same size; a 6,978-image pool; TestG50 ... TestG4000 and the two query subsets built from its
   queries; and a predictions file with ~35k detections. Timed with the parsed-annotation cache
   cold (emptied) and warm, for the G100 protocol alone and for every protocol.
   ``--repo PATH`` runs the command from another checkout of ian_d2 (e.g. an older commit in a
   ``git worktree``) on the same files, for a before/after comparison in one run.
2. ``kernel``: :func:`evaluate_search` alone on a synthetic table (2,900 queries, 6,978 images with
   5-10 detections each, E = 256), galleries of 50 ... 4000 images and the full pool, and a
   random scenario on the real ``TestG100.mat``.

Usage: ``python -m benchmarks.bench_scoring [--queries 2900] [--dim 256] [--seed 0]
[--repo PATH] [--skip-kernel] [--skip-cli]``
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

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


# ---------------------------------------------------------------------------------------------
# The rescore command at full scale
# ---------------------------------------------------------------------------------------------
POOL_SIZE = 6978  # images of the CUHK-SYSU test pool


def _xywh(box) -> List[int]:
    """XYXY -> integer [x, y, w, h] (the annotation files' format)."""
    x1, y1, x2, y2 = [float(v) for v in box]
    return [int(round(x1)), int(round(y1)), int(round(x2 - x1)), int(round(y2 - y1))]


def _scenario_queries(rng: np.random.Generator, n_queries: int):
    """(query names, query XYWH boxes, pid names, G100 positives {q: [(name, XYWH)]}, pool names):
    the real TestG100.mat when present, else random ones of the same shape."""
    if _G100.exists():
        from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

        p = load_cuhk_sysu_protocol(str(_G100))
        q_names, q_pids = list(p.query_imnames), list(p.query_pids)
        q_boxes = [_xywh(b) for b in p.query_boxes]
        pos: Dict[int, list] = {q: [] for q in range(p.num_queries)}
        for q, c, b in zip(p.pos_query.tolist(), p.pos_col.tolist(), p.pos_boxes):
            pos[q].append((p.image_names[p.gallery_codes[q, c]], _xywh(b)))
        names = sorted(set(p.image_names) | set(q_names))
        source = str(_G100)
    else:
        names = [f"s{i}.jpg" for i in range(POOL_SIZE)]
        q_names, q_boxes, q_pids, pos = [], [], [], {}
        for q in range(n_queries):
            ims = rng.choice(POOL_SIZE, int(rng.integers(2, 6)), replace=False)
            boxes = [[int(v) for v in rng.integers(0, 500, 2)] + [60, 150] for _ in ims]
            q_names.append(names[ims[0]])
            q_boxes.append(boxes[0])
            q_pids.append(f"p{q}")
            pos[q] = [(names[i], b) for i, b in zip(ims[1:], boxes[1:])]
        source = "random"
    extra = [f"x{i}.jpg" for i in range(max(0, POOL_SIZE - len(names)))]
    return q_names, q_boxes, q_pids, pos, names + extra, source


def write_cuhk_sysu_scenario(
    root: str,
    rng: np.random.Generator,
    n_queries: int = 2900,
    dim: int = 256,
    sizes: Sequence[int] = GALLERY_SIZES,
) -> Dict[str, object]:
    """Write a full-scale CUHK-SYSU annotation tree (no image) and a predictions file.

    ``sizes``: the TestG{N}.mat files to write (a file already there is kept: writing
    TestG4000 through scipy takes tens of minutes).

    Returns:
        {"root", "predictions", "protocol_source", "n_queries", "n_images", "n_detections"}
    """
    from ian_d2.data.synthetic.mat_io import (
        box_u16,
        cell_column,
        empty_field,
        flag_u8,
        save_mat,
        struct_array,
    )
    from ian_d2.evaluation import PersonSearchPredictions, save_predictions

    q_names, q_boxes, q_pids, pos, pool, source = _scenario_queries(rng, n_queries)
    nq = len(q_names)
    persons: Dict[str, Dict[tuple, int]] = {n: {} for n in pool}  # name -> {XYWH: query}
    for q in range(nq):
        persons[q_names[q]].setdefault(tuple(q_boxes[q]), q)
        for name, box in pos[q]:
            persons[name].setdefault(tuple(box), q)
    ident = rng.standard_normal((nq, dim))
    img_recs, gallery, hw = [], [], {}
    for name in pool:
        boxes = [list(b) for b in persons[name]]
        ids = list(persons[name].values())
        for _ in range(int(rng.integers(1, 4))):  # unlabeled persons
            boxes.append([int(v) for v in rng.integers(0, 600, 2)] + [50, 120])
            ids.append(-1)
        arr = np.asarray(boxes, np.float64).reshape(-1, 4)
        h = int(max(600, (arr[:, 1] + arr[:, 3]).max(initial=0) + 1))
        w = int(max(800, (arr[:, 0] + arr[:, 2]).max(initial=0) + 1))
        hw[name] = (h, w)
        img_recs.append(
            {
                "imname": name,
                "nAppear": np.asarray([[len(boxes)]], np.float64),
                "box": struct_array([{"idlocate": box_u16(b)} for b in boxes], ("idlocate",)),
            }
        )
        # detections: every person (jittered; 10% missed), plus clutter
        det_b, det_e = [], []
        for b, pid in zip(arr, ids):
            if rng.random() < 0.1:
                continue
            xyxy = np.r_[b[:2], b[:2] + b[2:]] + rng.normal(0, 2, 4)
            det_b.append(np.clip(xyxy, 0, [w, h, w, h]))
            e = 2.5 * rng.standard_normal(dim)  # identity signal below the noise: a real ranking
            det_e.append(e + ident[pid] if pid >= 0 else e)
        for _ in range(int(rng.integers(0, 3))):
            xy = rng.uniform(0, 500, 2)
            det_b.append(np.clip(np.r_[xy, xy + rng.uniform(30, 150, 2)], 0, [w, h, w, h]))
            det_e.append(rng.standard_normal(dim))
        n = len(det_b)
        gallery.append(
            {
                "image_id": name,
                "height": h,
                "width": w,
                "boxes": np.asarray(det_b, np.float32).reshape(-1, 4),
                "scores": rng.uniform(0.3, 1.0, n).astype(np.float32),
                "embeds": np.asarray(det_e, np.float32).reshape(-1, dim),
            }
        )
    ann = os.path.join(root, "annotation")
    tt = os.path.join(ann, "test", "train_test")
    save_mat(
        os.path.join(ann, "Images.mat"),
        {"Img": struct_array(img_recs, ("imname", "nAppear", "box"))},
    )
    save_mat(os.path.join(ann, "pool.mat"), {"pool": cell_column(pool)})

    def query_struct(q):
        rec = {
            "imname": q_names[q],
            "idlocate": box_u16(q_boxes[q]),
            "ishard": flag_u8(0),
            "idname": q_pids[q],
        }
        return struct_array([rec], ("imname", "idlocate", "ishard", "idname"))

    def protocol(sel, size):
        recs = []
        for q in sel:
            entries = [
                {"imname": n, "idlocate": box_u16(b), "ishard": flag_u8(0)} for n, b in pos[q]
            ]
            taken = {n for n, _ in pos[q]} | {q_names[q]}
            for k in rng.permutation(len(pool)):
                if len(entries) == size:
                    break
                if pool[k] not in taken:
                    entries.append(
                        {"imname": pool[k], "idlocate": empty_field(), "ishard": empty_field()}
                    )
            gal = struct_array(entries, ("imname", "idlocate", "ishard"))
            recs.append({"Query": query_struct(q), "Gallery": gal})
        return struct_array(recs, ("Query", "Gallery"))

    os.makedirs(tt, exist_ok=True)
    for size in sizes:
        path = os.path.join(tt, f"TestG{size}.mat")
        if os.path.isfile(path):
            continue
        if size == 100 and _G100.exists():
            shutil.copyfile(_G100, path)
        else:
            save_mat(path, {f"TestG{size}": protocol(range(nq), size)})
    sub = os.path.join(ann, "test", "subset")
    for name, k in (("Occlusion", 187), ("Resolution", 290)):
        sel = sorted(rng.choice(nq, k, replace=False).tolist())
        if _G100.exists():  # the subset galleries are TestG100's
            from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

            p = load_cuhk_sysu_protocol(str(_G100))
            ent = lambda q: [  # noqa: E731
                {
                    "imname": n,
                    "idlocate": box_u16(_xywh(b)) if not np.isnan(b[0]) else empty_field(),
                    "ishard": flag_u8(0) if not np.isnan(b[0]) else empty_field(),
                }
                for n, b in zip(p.gallery_imnames[q], p.gallery_boxes[q])
            ]
            arr = struct_array(
                [
                    {
                        "Query": query_struct(q),
                        "Gallery": struct_array(ent(q), ("imname", "idlocate", "ishard")),
                    }
                    for q in sel
                ],
                ("Query", "Gallery"),
            )
        else:
            arr = protocol(sel, 100)
        save_mat(os.path.join(sub, f"{name}.mat"), {name: arr})
    queries = [
        {
            "query_index": q,
            "image_id": q_names[q],
            "height": hw[q_names[q]][0],
            "width": hw[q_names[q]][1],
            "box": np.asarray(
                [
                    q_boxes[q][0],
                    q_boxes[q][1],
                    q_boxes[q][0] + q_boxes[q][2],
                    q_boxes[q][1] + q_boxes[q][3],
                ],
                np.float32,
            ),
            "embed": (ident[q] + 2.5 * rng.standard_normal(dim)).astype(np.float32),
        }
        for q in range(nq)
    ]
    preds = PersonSearchPredictions.from_entries(gallery, queries, "cuhk_sysu", "bench", dim)
    pred_path = save_predictions(preds, os.path.join(root, "predictions.npz"))
    return {
        "root": root,
        "predictions": pred_path,
        "protocol_source": source,
        "n_queries": nq,
        "n_images": len(pool),
        "n_detections": int(preds.gallery_scores.size),
        "gallery_sizes": [int(x) for x in sizes],
    }


def _run_cli(args: List[str], cache: str, repo: Optional[str]) -> Tuple[float, dict]:
    """Wall time of ``python -m ian_d2.evaluation.rescore ARGS`` and its JSON report."""
    env = dict(os.environ, IAN_D2_CACHE=cache)
    if repo:
        env["PYTHONPATH"] = os.path.abspath(repo) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "ian_d2.evaluation.rescore", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo or None,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"rescore failed ({' '.join(args)}):\n{out.stderr[-2000:]}")
    return wall, json.loads(out.stdout)


def cli_benchmark(
    workdir: str, rng, n_queries: int, dim: int, repos: Sequence[str], sizes: Sequence[int]
) -> dict:
    """Wall times of the rescore command on the full-scale scenario, per checkout in ``repos``
    ("" = this one): cache cold then warm, G100 only and every protocol."""
    t0 = time.perf_counter()
    done = os.path.join(workdir, "cuhk_sysu", "scenario.json")
    if os.path.isfile(done):  # written by an earlier run with --workdir
        with open(done) as f:
            scen = json.load(f)
    else:
        scen = write_cuhk_sysu_scenario(
            os.path.join(workdir, "cuhk_sysu"), rng, n_queries, dim, sizes
        )
        scen["seconds_to_write"] = round(time.perf_counter() - t0, 1)
        with open(done, "w") as f:
            json.dump(scen, f)
    out: Dict[str, object] = {"scenario": scen}
    base = [scen["predictions"], "--dataset-root", scen["root"], "--dataset", "cuhk_sysu"]
    for repo in repos:
        label = repo or "this checkout"
        runs: Dict[str, object] = {}
        cache = os.path.join(workdir, f"cache{len(out)}")
        for name, extra in (("g100", ["--gallery-size", "100"]), ("all_protocols", [])):
            shutil.rmtree(cache, ignore_errors=True)
            cold, report = _run_cli(base + extra, cache, repo or None)
            warm = [_run_cli(base + extra, cache, repo or None)[0] for _ in range(2)]
            runs[name] = {
                "cold_cache_s": round(cold, 2),
                "warm_cache_s": [round(w, 2) for w in warm],
                "results": {
                    k: {m: round(v, 2) for m, v in r.items()} for k, r in report["results"].items()
                },
            }
        out[label] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scoring", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--queries", type=int, default=2900)
    parser.add_argument("--images", type=int, default=6978)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        help="also time the rescore command of this ian_d2 checkout (repeatable)",
    )
    parser.add_argument(
        "--workdir", help="keep the written scenario here and reuse it (default: a temp folder)"
    )
    parser.add_argument(
        "--cli-sizes",
        type=int,
        nargs="+",
        default=list(GALLERY_SIZES),
        help="TestG{N} files of the command-line scenario (default: 50 ... 4000)",
    )
    parser.add_argument("--skip-kernel", action="store_true")
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report: Dict[str, object] = {"cpus": os.cpu_count()}
    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = args.workdir or tmp
            os.makedirs(os.path.join(workdir, "cuhk_sysu"), exist_ok=True)
            report["cli"] = cli_benchmark(
                workdir,
                np.random.default_rng(args.seed),
                args.queries,
                args.dim,
                [""] + args.repo,
                args.cli_sizes,
            )
    if not args.skip_kernel:
        report["kernel"] = kernel_benchmark(args)
    print(json.dumps(report, indent=2))


def kernel_benchmark(args) -> Dict[str, object]:
    """:func:`evaluate_search` alone at CUHK-SYSU scale (module docstring, item 2)."""
    rng = np.random.default_rng(args.seed)
    table, queries, pos_images, gt = synthetic_scenario(rng, args.queries, args.images, args.dim)
    kept = int((table.scores >= np.float32(0.5)).sum())
    out: Dict[str, object] = {
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
    return out


if __name__ == "__main__":
    main()
