"""Synthetic CUHK-SYSU: scene images plus the original annotation files, format for format.

Layout written under ``out_dir`` (see docs/PROTOCOLS.md, "CUHK-SYSU on disk")::

    Image/SSM/s1.jpg ... sN.jpg
    annotation/Images.mat                       Img: 1×N struct (imname, nAppear, box(idlocate))
    annotation/Person.mat                       Person: 1×P struct (idname, nAppear, scene)
    annotation/pool.mat                         pool: M×1 cell of test image names
    annotation/test/train_test/Train.mat        Train: T×1 cell of 1×1 structs
    annotation/test/train_test/TestG{N}.mat     TestG{N}: 1×Q struct (Query, Gallery)
    annotation/test/subset/Occlusion.mat        Occlusion: 1×S struct (Query, Gallery)
    annotation/test/subset/Resolution.mat       Resolution: 1×S struct (Query, Gallery)
"""

import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .identities import Appearance, sample_appearance, sample_identities
from .mat_io import box_u16, cell_column, empty_field, flag_u8, save_mat, struct_array
from .presets import GeneratorConfig, make_config, resolve_workers
from .scene import CameraStyle, PersonSpec, SceneSpec, render_many

__all__ = ["generate_cuhk_sysu", "assign_appearances"]

logger = logging.getLogger(__name__)

_QUERY_FIELDS = ("imname", "idlocate", "ishard", "idname")
_GALLERY_FIELDS = ("imname", "idlocate", "ishard")
_SCENE_FIELDS = ("imname", "idlocate", "ishard")
_NUM_CAMERAS = 8


def assign_appearances(
    rng: np.random.Generator,
    num_ids: int,
    images: Sequence[int],
    min_k: int,
    max_k: int,
    cap: int,
    load: Dict[int, int],
) -> List[List[int]]:
    """Choose the images each identity appears in (at most once per image).

    Args:
        rng: Random generator.
        num_ids: Number of identities.
        images: Candidate image indices.
        min_k: Fewest images per identity (at least 2 keeps a positive pair).
        max_k: Most images per identity.
        cap: Most labeled persons per image.
        load: Current number of labeled persons per image (updated in place).

    Returns:
        For each identity, its sorted image indices.

    Raises:
        ValueError: When the images cannot hold the identities.
    """
    images = np.asarray(images)
    out = []
    for _ in range(num_ids):
        k = int(rng.integers(min_k, max_k + 1))
        free = np.array([i for i in images if load.get(int(i), 0) < cap])
        if free.size < min_k:
            raise ValueError(
                f"{images.size} images cannot hold all identities ({cap} labeled persons per "
                "image at most): use more images or fewer identities"
            )
        k = min(k, free.size)
        w = 1.0 / (1.0 + np.array([load.get(int(i), 0) for i in free], np.float64)) ** 2
        chosen = sorted(int(i) for i in rng.choice(free, size=k, replace=False, p=w / w.sum()))
        for i in chosen:
            load[i] = load.get(i, 0) + 1
        out.append(chosen)
    return out


def _clip_box(box: Tuple[int, int, int, int], w: int, h: int) -> Tuple[int, int, int, int]:
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(w, box[0] + box[2]), min(h, box[1] + box[3])
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def _gallery_records(positives, negatives, size: int) -> List[Dict[str, Any]]:
    recs = [
        {"imname": name, "idlocate": box_u16(box), "ishard": flag_u8(hard)}
        for name, box, hard in positives
    ]
    for name in negatives[: size - len(recs)]:
        recs.append({"imname": name, "idlocate": empty_field(), "ishard": empty_field()})
    return recs


def generate_cuhk_sysu(
    out_dir: str, size: str = "small", seed: int = 0, **overrides: Any
) -> Dict[str, Any]:
    """Generate a synthetic CUHK-SYSU dataset in the original on-disk format.

    Args:
        out_dir: Output folder (created).
        size: "tiny", "small" or "default" preset.
        seed: Random seed; the same seed gives byte-identical files.
        **overrides: Fields of :class:`~.presets.GeneratorConfig` (e.g. ``num_images``,
            ``num_identities``, ``image_size``, ``gallery_sizes``, ``zero_size_boxes``,
            ``workers``).

    Returns:
        Summary counts: ``images``, ``train_images``, ``test_images``, ``boxes`` (valid person
        boxes in Images.mat), ``zero_size_boxes``, ``labeled_boxes``, ``unlabeled_boxes``,
        ``train_identities``, ``test_identities``, ``train_boxes`` (labeled train boxes),
        ``queries``, ``gallery_sizes`` (written), ``occlusion_queries``, ``resolution_queries``,
        ``out_dir``.
    """
    cfg: GeneratorConfig = make_config("cuhk_sysu", size, **overrides)
    W, H = cfg.image_size
    N = cfg.num_images
    rng = np.random.default_rng([seed, 101])

    # Splits and identities.
    n_pool = min(N - 2, max(2, int(round(N * cfg.test_image_fraction))))
    pool = sorted(int(i) for i in rng.choice(N, size=n_pool, replace=False))
    pool_set = set(pool)
    train_imgs = [i for i in range(N) if i not in pool_set]
    P = cfg.num_identities
    n_test = cfg.num_test_identities
    n_train = P - n_test
    taken = set()
    apps: List[Appearance] = sample_identities(rng, P, taken)
    idnum = [int(v) + 1 for v in rng.permutation(P)]  # identity index -> number in 'p<num>'
    is_test = [k >= n_train for k in range(P)]
    load: Dict[int, int] = {}
    lo, hi = max(2, cfg.appearances[0]), max(2, cfg.appearances[1])
    occ = assign_appearances(rng, n_train, train_imgs, lo, hi, cfg.max_labeled, load)
    if cfg.test_appearances is not None:
        lo, hi = max(2, cfg.test_appearances[0]), max(2, cfg.test_appearances[1])
    occ += assign_appearances(rng, n_test, pool, lo, hi, cfg.max_labeled, load)

    # Scene plans.
    per_image: List[List[PersonSpec]] = [[] for _ in range(N)]
    for k, imgs in enumerate(occ):
        for i in imgs:
            per_image[i].append(PersonSpec(apps[k], tag=k))
    cams = [CameraStyle.sample(rng) for _ in range(_NUM_CAMERAS)]
    specs = []
    for i in range(N):
        n_u = int(rng.integers(cfg.unlabeled[0], cfg.unlabeled[1] + 1))
        if n_u + len(per_image[i]) == 0:
            n_u = 1
        persons = list(per_image[i])
        for _ in range(n_u):
            app = sample_appearance(rng)
            while app.signature in taken:
                app = sample_appearance(rng)
            persons.append(PersonSpec(app, tag=-1))
        order = rng.permutation(len(persons))
        persons = [
            PersonSpec(
                persons[j].appearance,
                persons[j].tag,
                occluder=bool(rng.random() < cfg.occluder_prob),
            )
            for j in order
        ]
        specs.append(
            SceneSpec(
                seed=(int(seed), 1, i),
                width=W,
                height=H,
                persons=tuple(persons),
                camera=cams[int(rng.integers(_NUM_CAMERAS))],
                clutter=int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1)),
                min_person_frac=cfg.min_person_frac,
            )
        )

    names = [f"s{i + 1}.jpg" for i in range(N)]
    paths = [os.path.join(out_dir, "Image", "SSM", n) for n in names]
    results = render_many(specs, paths, cfg.jpeg_quality, resolve_workers(cfg))

    # Boxes per image and appearances per identity.
    img_boxes: List[List[Tuple[int, int, int, int]]] = []
    found: Dict[int, List[Tuple[int, Tuple[int, int, int, int], int, float]]] = {
        k: [] for k in range(P)
    }
    for i, res in enumerate(results):
        boxes = []
        for r in res:
            b = _clip_box(r.box, W, H)
            boxes.append(b)
            if r.tag >= 0:
                hard = int(r.visible < 0.6 or b[3] < 50)
                found[r.tag].append((i, b, hard, r.visible))
        img_boxes.append(boxes)
    n_valid = sum(len(b) for b in img_boxes)

    # Zero-size boxes (dropped by the loaders), in train images.
    n_zero = min(cfg.zero_size_boxes, len(train_imgs))
    zero_imgs = sorted(int(i) for i in rng.choice(train_imgs, size=n_zero, replace=False))
    for j, i in enumerate(zero_imgs):
        x, y = int(rng.integers(0, W // 2)), int(rng.integers(0, H // 2))
        zb = (
            (x, y, 0, int(rng.integers(20, 60)))
            if j % 2 == 0
            else (x, y, int(rng.integers(10, 30)), 0)
        )
        img_boxes[i].insert(int(rng.integers(len(img_boxes[i]) + 1)), zb)

    ann = os.path.join(out_dir, "annotation")
    img_recs = [
        {
            "imname": names[i],
            "nAppear": float(len(img_boxes[i])),
            "box": struct_array([{"idlocate": box_u16(b)} for b in img_boxes[i]], ("idlocate",)),
        }
        for i in range(N)
    ]
    save_mat(
        os.path.join(ann, "Images.mat"),
        {"Img": struct_array(img_recs, ("imname", "nAppear", "box"))},
    )

    def id_record(k):
        scene = [
            {"imname": names[i], "idlocate": box_u16(b), "ishard": flag_u8(hd)}
            for i, b, hd, _ in found[k]
        ]
        return {
            "idname": f"p{idnum[k]}",
            "nAppear": float(len(scene)),
            "scene": struct_array(scene, _SCENE_FIELDS),
        }

    by_num = sorted(range(P), key=lambda k: idnum[k])
    person = struct_array([id_record(k) for k in by_num], ("idname", "nAppear", "scene"))
    save_mat(os.path.join(ann, "Person.mat"), {"Person": person})
    save_mat(os.path.join(ann, "pool.mat"), {"pool": cell_column([names[i] for i in pool])})
    tt = os.path.join(ann, "test", "train_test")
    train_ids = [k for k in by_num if not is_test[k]]
    train_cell = cell_column(
        [struct_array([id_record(k)], ("idname", "nAppear", "scene")) for k in train_ids]
    )
    save_mat(os.path.join(tt, "Train.mat"), {"Train": train_cell})

    # Queries and galleries.
    test_ids = [k for k in by_num if is_test[k]]

    def make_query(k, qi):
        apps_k = found[k]
        i, b, hd, vis = apps_k[qi]
        qrec = {
            "imname": names[i],
            "idlocate": box_u16(b),
            "ishard": flag_u8(hd),
            "idname": f"p{idnum[k]}",
        }
        pos = [(names[j], bj, hj) for t, (j, bj, hj, _) in enumerate(apps_k) if t != qi]
        excl = {j for j, _, _, _ in apps_k}
        negs = [names[j] for j in rng.permutation(pool) if int(j) not in excl]
        return (qrec, pos, negs, b, vis)

    queries = [make_query(k, int(rng.integers(len(found[k])))) for k in test_ids]
    # Random query choice, except that each subset gets at least one query when possible.
    subset_rules = (
        lambda b, vis: 1.0 - vis >= cfg.occlusion_threshold,
        lambda b, vis: b[3] < cfg.resolution_height,
    )
    for rule in subset_rules:
        if any(rule(q[3], q[4]) for q in queries):
            continue
        for t, k in enumerate(test_ids):
            hits = [a for a, (_, b, _, vis) in enumerate(found[k]) if rule(b, vis)]
            if hits and not any(r(queries[t][3], queries[t][4]) for r in subset_rules):
                queries[t] = make_query(k, hits[0])
                break
    max_pos = max(len(q[1]) for q in queries)
    sizes = []
    for g in sorted(set(int(s) for s in cfg.gallery_sizes)):
        if g < max_pos or g > n_pool - 1:
            logger.warning(
                "Skipping gallery size %d: it must be between %d and %d (pool images - 1)",
                g,
                max_pos,
                n_pool - 1,
            )
            continue
        sizes.append(g)

    def protocol(sel, g):
        recs = [
            {
                "Query": struct_array([q[0]], _QUERY_FIELDS),
                "Gallery": struct_array(_gallery_records(q[1], q[2], g), _GALLERY_FIELDS),
            }
            for q in sel
        ]
        return struct_array(recs, ("Query", "Gallery"))

    for g in sizes:
        save_mat(os.path.join(tt, f"TestG{g}.mat"), {f"TestG{g}": protocol(queries, g)})
    n_occ = n_res = 0
    if sizes:
        g = sizes[0]
        occl = [q for q in queries if subset_rules[0](q[3], q[4])]
        reso = [q for q in queries if subset_rules[1](q[3], q[4])]
        sub = os.path.join(ann, "test", "subset")
        if occl:
            save_mat(os.path.join(sub, "Occlusion.mat"), {"Occlusion": protocol(occl, g)})
        if reso:
            save_mat(os.path.join(sub, "Resolution.mat"), {"Resolution": protocol(reso, g)})
        n_occ, n_res = len(occl), len(reso)

    labeled = sum(len(v) for v in found.values())
    summary = {
        "out_dir": out_dir,
        "images": N,
        "train_images": len(train_imgs),
        "test_images": n_pool,
        "boxes": n_valid,
        "zero_size_boxes": n_zero,
        "labeled_boxes": labeled,
        "unlabeled_boxes": n_valid - labeled,
        "train_identities": n_train,
        "test_identities": n_test,
        "train_boxes": sum(len(found[k]) for k in train_ids),
        "queries": len(queries),
        "gallery_sizes": sizes,
        "occlusion_queries": n_occ,
        "resolution_queries": n_res,
    }
    return summary
