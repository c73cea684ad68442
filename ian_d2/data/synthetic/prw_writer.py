"""Synthetic PRW: video-like frames of 6 cameras plus the original annotation files.

Layout written under ``out_dir`` (see docs/PROTOCOLS.md, "PRW on disk")::

    frames/c{cam}s{seq}_{frame:06d}.jpg
    annotations/<frame>.jpg.mat       one N×5 double [id, x, y, w, h]; variable 'box_new'
                                      (most), 'anno_file' (some) or 'anno_previous' (a few)
    frame_train.mat / frame_test.mat  img_index_train / img_index_test: K×1 cells of frame names
                                      without '.jpg'
    ID_train.mat / ID_test.mat        ID_train / ID_test2: 1×n double (train ids with gaps and one
                                      much larger id, like the real 1-478, 480-483, 932)
    query_info.txt                    "pid x y w h frame" per query, CRLF line endings
    query_box/{pid}_{frame}.jpg       query crops

Each (camera, sequence) block has a fixed background; a labeled identity walks through 1-3
consecutive frames of a block (a tracklet) in one or more cameras (test identities: at least
two cameras, so every query has a positive in another camera).
"""

import logging
import os
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

from .identities import sample_appearance, sample_identities
from .mat_io import cell_column, save_mat
from .presets import GeneratorConfig, make_config, resolve_workers
from .scene import CameraStyle, PersonSpec, SceneSpec, render_many

__all__ = ["generate_prw", "prw_identity_numbers"]

logger = logging.getLogger(__name__)

NUM_CAMERAS = 6
UNLABELED_ID = -2
_CLOSE_CAMERA = 3  # a camera with a close, low view: people may be cut at the top (y < 0)


def prw_identity_numbers(
    rng: np.random.Generator, n_train: int, n_test: int
) -> Tuple[List[int], List[int]]:
    """Number the identities like PRW: train ids with gaps and one much larger id.

    The ids are 1..n_train+n_test. Train gets a run starting at 1 with a few numbers skipped
    (those go to test) plus the largest id; test gets the skipped numbers and the rest.

    Args:
        rng: Random generator.
        n_train: Number of train identities (>= 1).
        n_test: Number of test identities (>= 1).

    Returns:
        (sorted train ids, sorted test ids), disjoint.
    """
    M = n_train + n_test
    if n_train == 1:
        return [M], list(range(1, M))
    g = int(min(3, n_test, max(1, n_train // 5))) if n_train >= 3 else 0
    run = list(range(1, n_train + g))  # n_train - 1 + g numbers
    gaps = set(int(v) for v in rng.choice(run[1:-1], size=g, replace=False)) if g else set()
    train = [v for v in run if v not in gaps] + [M]
    test = sorted(set(range(1, M + 1)) - set(train))
    return train, test


def _fmt(v: float) -> str:
    return np.format_float_positional(float(v), trim="-")


def _float_box(rng: np.random.Generator, box: Tuple[int, int, int, int]) -> List[float]:
    """Non-integer [x, y, w, h] around an integer tight box (like the real annotations)."""
    if rng.random() < 0.2:
        d = np.round(rng.uniform(-0.5, 0.5, 4), 2)
    else:
        d = rng.choice([-0.5, 0.0, 0.5], size=4)
    return [float(box[i] + d[i]) for i in range(4)]


def generate_prw(
    out_dir: str, size: str = "small", seed: int = 0, **overrides: Any
) -> Dict[str, Any]:
    """Generate a synthetic PRW dataset in the original on-disk format.

    Args:
        out_dir: Output folder (created).
        size: "tiny", "small" or "default" preset.
        seed: Random seed; the same seed gives byte-identical files.
        **overrides: Fields of :class:`~.presets.GeneratorConfig` (e.g. ``num_images`` =
            frames, ``num_identities``, ``image_size``, ``sequences``, ``workers``).

    Returns:
        Summary counts: ``frames``, ``train_frames``, ``test_frames``, ``boxes``,
        ``labeled_boxes``, ``unlabeled_boxes``, ``train_identities``, ``test_identities``,
        ``train_ids``, ``test_ids``, ``queries``, ``var_names`` (count per annotation variable
        name), ``negative_xy_boxes`` (boxes with x < 0 or y < 0), ``out_dir``.
    """
    cfg: GeneratorConfig = make_config("prw", size, **overrides)
    W, H = cfg.image_size
    rng = np.random.default_rng([seed, 202])
    n_test_ids = cfg.num_test_identities
    n_train_ids = cfg.num_identities - n_test_ids
    train_ids, test_ids = prw_identity_numbers(rng, n_train_ids, n_test_ids)
    apps = dict(zip(train_ids + test_ids, sample_identities(rng, cfg.num_identities)))
    taken = {a.signature for a in apps.values()}

    # Blocks (camera, sequence) and their frames.
    S = max(1, cfg.sequences)
    blocks = {"train": [], "test": []}
    for cam in range(1, NUM_CAMERAS + 1):
        for seq in range(1, S + 1):
            # Alternate splits so that every camera has train and test frames (when S > 1).
            split = "train" if (cam + (seq if S > 1 else 0)) % 2 == 0 else "test"
            blocks[split].append((cam, seq))
    n_test_frames = int(round(cfg.num_images * cfg.test_image_fraction))
    n_frames = {"test": n_test_frames, "train": cfg.num_images - n_test_frames}
    cams = {c: CameraStyle.sample(rng, strength=1.3) for c in range(1, NUM_CAMERAS + 1)}
    frames: List[Dict[str, Any]] = []  # name, split, cam, block key, persons
    block_frames: Dict[Tuple[int, int], List[int]] = {}
    block_args: Dict[Tuple[int, int], Tuple] = {}
    for split in ("train", "test"):
        bl = blocks[split]
        per = [
            n_frames[split] // len(bl) + (1 if j < n_frames[split] % len(bl) else 0)
            for j in range(len(bl))
        ]
        for (cam, seq), n in zip(bl, per):
            if cam == _CLOSE_CAMERA:
                args = (float(rng.uniform(0.12, 0.2)), float(rng.uniform(0.95, 1.1)), False)
            else:
                args = (float(rng.uniform(0.3, 0.45)), float(rng.uniform(0.55, 0.8)), False)
            block_args[(cam, seq)] = args
            num = int(rng.integers(1, 400))
            idx = []
            for _ in range(n):
                idx.append(len(frames))
                frames.append(
                    {
                        "name": f"c{cam}s{seq}_{num:06d}",
                        "split": split,
                        "cam": cam,
                        "seq": seq,
                        "persons": [],
                    }
                )
                num += int(rng.integers(15, 60))
            block_frames[(cam, seq)] = idx

    # Tracklets of the labeled identities.
    def fy_range(block):
        hf, bpf, _ = block_args[block]
        return hf + cfg.min_person_frac * (1.0 - hf) / bpf, 0.985

    for split, ids in (("train", train_ids), ("test", test_ids)):
        bl = [b for b in blocks[split] if block_frames[b]]
        cams_split = sorted({b[0] for b in bl})
        for pid in ids:
            lo_c = 2 if split == "test" else 1
            n_c = min(len(cams_split), int(rng.integers(lo_c, 4)))
            chosen = [int(c) for c in rng.choice(cams_split, size=n_c, replace=False)]
            total = 0
            plan = []
            for c in chosen:
                cand = [b for b in bl if b[0] == c]
                b = cand[int(rng.integers(len(cand)))]
                fr = block_frames[b]
                L = min(len(fr), int(rng.integers(cfg.appearances[0], cfg.appearances[1] + 1)))
                plan.append((b, L))
                total += L
            if total < 2:  # one camera, one frame: lengthen or add a camera
                b, L = plan[0]
                if len(block_frames[b]) >= 2:
                    plan[0] = (b, 2)
                else:
                    other = [x for x in bl if x[0] != b[0]]
                    plan.append((other[int(rng.integers(len(other)))], 1))
            for b, L in plan:
                fr = block_frames[b]
                starts = list(range(len(fr) - L + 1))
                load = [
                    max(sum(1 for p in frames[fr[s + t]]["persons"] if p[0] > 0) for t in range(L))
                    for s in starts
                ]
                ok = [s for s, ld in zip(starts, load) if ld < cfg.max_labeled] or starts
                s0 = ok[int(rng.integers(len(ok)))]
                lo, hi = fy_range(b)
                fy = float(rng.uniform(lo, hi))
                d = 1.0 if rng.random() < 0.5 else -1.0
                if rng.random() < 0.15:
                    fx = 0.0 if d > 0 else 1.0  # entering at the image border: cut box
                else:
                    fx = float(rng.uniform(0.08, 0.92))
                dx = d * float(rng.uniform(0.03, 0.08))
                facing = "right" if d > 0 else "left"
                if rng.random() < 0.25:
                    facing = "front" if rng.random() < 0.5 else "back"
                    dx *= 0.3
                for t in range(L):
                    x = float(np.clip(fx + t * dx, 0.0, 1.0))  # foot inside the image
                    y = float(np.clip(fy + rng.uniform(-0.01, 0.01), lo, hi))
                    frames[fr[s0 + t]]["persons"].append((pid, (x, y), facing))

    # Scenes.
    specs = []
    for f in frames:
        persons = [
            PersonSpec(apps[pid], tag=pid, anchor=a, facing=fc) for pid, a, fc in f["persons"]
        ]
        n_u = int(rng.integers(cfg.unlabeled[0], cfg.unlabeled[1] + 1))
        if n_u + len(persons) == 0:
            n_u = 1
        for _ in range(n_u):
            app = sample_appearance(rng)
            while app.signature in taken:
                app = sample_appearance(rng)
            persons.append(PersonSpec(app, tag=UNLABELED_ID))
        order = rng.permutation(len(persons))
        persons = [
            PersonSpec(
                persons[j].appearance,
                persons[j].tag,
                anchor=persons[j].anchor,
                facing=persons[j].facing,
                occluder=bool(rng.random() < cfg.occluder_prob),
            )
            for j in order
        ]
        b = (f["cam"], f["seq"])
        specs.append(
            SceneSpec(
                seed=(int(seed), 2, len(specs)),
                width=W,
                height=H,
                persons=tuple(persons),
                camera=cams[f["cam"]],
                backdrop_seed=(int(seed), 7, f["cam"], f["seq"]),
                backdrop_args=block_args[b],
                static_clutter=3,
                clutter=int(rng.integers(0, max(1, cfg.clutter[1] - 1))),
                allow_cut=True,
                min_person_frac=cfg.min_person_frac,
            )
        )
    paths = [os.path.join(out_dir, "frames", f["name"] + ".jpg") for f in frames]
    results = render_many(specs, paths, cfg.jpeg_quality, resolve_workers(cfg))

    # Annotations.
    var_names = ["box_new"] * len(frames)
    for j in range(len(frames)):
        u = rng.random()
        var_names[j] = "anno_previous" if u < 0.04 else "anno_file" if u < 0.16 else "box_new"
    if len(frames) >= 3:
        a, b = (int(v) for v in rng.choice(len(frames), size=2, replace=False))
        var_names[a], var_names[b] = "anno_file", "anno_previous"
        if "box_new" not in var_names:
            var_names[next(j for j in range(len(frames)) if j not in (a, b))] = "box_new"
    occurrences: Dict[int, List[Tuple[int, List[float], float, bool]]] = {}
    n_boxes = n_labeled = n_neg = 0
    for j, (f, res) in enumerate(zip(frames, results)):
        rows = []
        for r in res:
            fb = _float_box(rng, r.box)
            rows.append([float(r.tag)] + fb)
            n_neg += int(fb[0] < 0 or fb[1] < 0)
            if r.tag > 0:
                inside = r.box[0] >= 0 and r.box[1] >= 0 and r.box[0] + r.box[2] <= W
                inside = inside and r.box[1] + r.box[3] <= H
                occurrences.setdefault(r.tag, []).append((j, fb, r.visible, inside))
                n_labeled += 1
        n_boxes += len(rows)
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        save_mat(os.path.join(out_dir, "annotations", f["name"] + ".jpg.mat"), {var_names[j]: arr})

    for split, var in (("train", "img_index_train"), ("test", "img_index_test")):
        names = sorted(f["name"] for f in frames if f["split"] == split)
        save_mat(os.path.join(out_dir, f"frame_{split}.mat"), {var: cell_column(names)})
    save_mat(
        os.path.join(out_dir, "ID_train.mat"),
        {"ID_train": np.asarray([train_ids], dtype=np.float64)},
    )
    save_mat(
        os.path.join(out_dir, "ID_test.mat"), {"ID_test2": np.asarray([test_ids], dtype=np.float64)}
    )

    # Queries: one per test identity, on a frame where it is fully inside and mostly visible.
    lines = []
    qdir = os.path.join(out_dir, "query_box")
    os.makedirs(qdir, exist_ok=True)
    for pid in test_ids:
        occ = occurrences.get(pid, [])
        if len(occ) < 2:
            logger.warning("Test identity %d appears in %d frames: no query", pid, len(occ))
            continue
        good = [o for o in occ if o[3] and o[2] >= 0.6] or [o for o in occ if o[3]] or occ
        j, fb, _, _ = good[int(rng.integers(len(good)))]
        name = frames[j]["name"]
        lines.append(" ".join([str(pid)] + [_fmt(v) for v in fb] + [name]))
        img = cv2.imread(paths[j])
        x0, y0 = max(0, int(np.floor(fb[0]))), max(0, int(np.floor(fb[1])))
        x1, y1 = min(W, int(np.ceil(fb[0] + fb[2]))), min(H, int(np.ceil(fb[1] + fb[3])))
        crop = img[y0:y1, x0:x1]
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        with open(os.path.join(qdir, f"{pid}_{name}.jpg"), "wb") as fh:
            fh.write(buf.tobytes())
    with open(os.path.join(out_dir, "query_info.txt"), "wb") as fh:
        fh.write("".join(line + "\r\n" for line in lines).encode("ascii"))

    return {
        "out_dir": out_dir,
        "frames": len(frames),
        "train_frames": sum(f["split"] == "train" for f in frames),
        "test_frames": sum(f["split"] == "test" for f in frames),
        "boxes": n_boxes,
        "labeled_boxes": n_labeled,
        "unlabeled_boxes": n_boxes - n_labeled,
        "train_identities": len(train_ids),
        "test_identities": len(test_ids),
        "train_ids": list(train_ids),
        "test_ids": list(test_ids),
        "queries": len(lines),
        "var_names": {v: var_names.count(v) for v in ("box_new", "anno_file", "anno_previous")},
        "negative_xy_boxes": n_neg,
    }
