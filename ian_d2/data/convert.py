"""Write CUHK-SYSU or PRW (original files) as COCO person-search JSONs with their protocol.

Usage::

    python -m ian_d2.data.convert cuhk_sysu datasets/cuhk_sysu datasets/cuhk_sysu_coco
    python -m ian_d2.data.convert prw datasets/PRW datasets/prw_coco [--images copy] [--name P]

writes, under OUT:

* ``train.json``: the train split (CUHK-SYSU: the Train.mat identity index; PRW: the original
  ids, remapped again to 0..N-1 when loaded); ``test.json``: the gallery images with their ids
  (PRW: ``camera_id`` per image);
* ``test_protocol.json``: the queries and galleries of the built-in protocols, with the built-in
  result keys. CUHK-SYSU: ``search`` = the default ``TestG{N}`` (explicit gallery lists with the
  protocol's boxes), ``search_g{N}`` for every other TestG file, ``search_full`` (the TestG50
  galleries plus every other image), ``search_occlusion`` / ``search_resolution``. PRW:
  ``search`` = every other test frame, ``search_multiview`` = other cameras only;
* ``datasets.json``: a dataset list registering ``{name}_train`` and ``{name}_test`` (name
  default ``{family}_coco``; ``IAN_D2_COCO_DATASETS=OUT/datasets.json``);
* ``images``: a symbolic link to the image folder (``--images copy`` copies it; ``--images
  none`` makes ``datasets.json`` point to the original folder).

Evaluated with the same predictions, the converted dataset gives exactly the built-in numbers
(``tests/data/test_coco_person_search.py``).
"""

import argparse
import logging
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from .datasets.coco_person_search import (
    PROTOCOL_FORMAT,
    PROTOCOL_VERSION,
    write_json_lines,
    write_protocol,
    xyxy_to_xywh,
)
from .datasets.cuhk_sysu import (
    cuhk_sysu_paths,
    default_gallery_size,
    find_cuhk_sysu_protocols,
    find_cuhk_sysu_subsets,
    load_cuhk_sysu_gallery,
    load_cuhk_sysu_protocol,
    load_cuhk_sysu_query,
    load_cuhk_sysu_subset_indices,
    load_cuhk_sysu_train,
)
from .datasets.prw import load_prw_gallery, load_prw_query, load_prw_train, prw_paths

__all__ = ["records_to_coco", "convert_cuhk_sysu", "convert_prw", "build_parser", "main"]

logger = logging.getLogger(__name__)

FULL_POOL_BASE_SIZE = 50  # OIM's psdb.py: the full-pool gallery extends TestG50
IMAGE_MODES = ("symlink", "copy", "none")


def records_to_coco(records: Sequence[dict], pid_of=None) -> dict:
    """Detectron2 person-search records -> a COCO person-search dict.

    Args:
        records: dicts with ``image_id`` (written as ``file_name``), ``height``, ``width``,
            optional ``camera_id``, and XYXY_ABS annotations with ``person_id``.
        pid_of: optional map applied to every labeled ``person_id`` (e.g. back to the original
            ids); -1 stays -1.

    Returns:
        {"images", "annotations", "categories"} with one category "person" (id 1); boxes
        [x, y, w, h] that read back to exactly the records' boxes.
    """
    images, annos = [], []
    for i, r in enumerate(records, start=1):
        im = {"id": i, "file_name": r["image_id"], "height": r["height"], "width": r["width"]}
        if "camera_id" in r:
            im["camera_id"] = r["camera_id"]
        images.append(im)
        for a in r["annotations"]:
            pid = int(a["person_id"])
            if pid >= 0 and pid_of is not None:
                pid = int(pid_of[pid])
            box = xyxy_to_xywh(a["bbox"])
            annos.append(
                {
                    "id": len(annos) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                    "person_id": pid,
                }
            )
    return {
        "images": images,
        "annotations": annos,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def _write_coco(obj: dict, path: str) -> None:
    write_json_lines(obj, path, ("images", "annotations"))
    logger.info(
        "Wrote %s: %d images, %d person boxes", path, len(obj["images"]), len(obj["annotations"])
    )


def _link_images(src: str, out: str, mode: str) -> str:
    """The image_root to record in datasets.json (relative to OUT when inside it)."""
    src = os.path.abspath(src)
    if mode == "none":
        return src
    dst = os.path.join(out, "images")
    if mode == "symlink":
        if os.path.islink(dst) and os.path.realpath(dst) == os.path.realpath(src):
            return "images"
        if os.path.lexists(dst):
            raise FileExistsError(f"'{dst}' exists and is not a link to '{src}'; remove it")
        os.symlink(src, dst, target_is_directory=True)
    else:
        if os.path.lexists(dst):
            raise FileExistsError(f"'{dst}' exists; remove it to copy the images again")
        shutil.copytree(src, dst)
    return "images"


def _dataset_list(out: str, name: str, image_root: str) -> None:
    obj = {
        f"{name}_train": {"json_file": "train.json", "image_root": image_root, "split": "train"},
        f"{name}_test": {
            "json_file": "test.json",
            "image_root": image_root,
            "protocol_file": "test_protocol.json",
        },
    }
    write_json_lines(obj, os.path.join(out, "datasets.json"), ())


def _gallery_entries(names: Sequence[str], boxes: np.ndarray) -> List[dict]:
    """Explicit entries: the protocol's box where the person is, null elsewhere."""
    return [
        {"image": str(n), "box": None if np.isnan(b).any() else xyxy_to_xywh(b)}
        for n, b in zip(names, boxes)
    ]


def convert_cuhk_sysu(root: str, out: str, images: str = "symlink", name: Optional[str] = None):
    """Convert a CUHK-SYSU root (original files) under ``out``. Returns a summary dict."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
    os.makedirs(out, exist_ok=True)
    train = load_cuhk_sysu_train(root)
    gallery = load_cuhk_sysu_gallery(root)
    queries = load_cuhk_sysu_query(root)
    _write_coco(records_to_coco(train), os.path.join(out, "train.json"))
    _write_coco(records_to_coco(gallery), os.path.join(out, "test.json"))

    available = find_cuhk_sysu_protocols(root)
    main_size = default_gallery_size(root)
    main = load_cuhk_sysu_protocol(root, main_size)
    qmap: Dict[tuple, int] = {}
    for q, (n, b) in enumerate(zip(main.query_imnames, main.query_boxes)):
        qmap.setdefault((n, tuple(b.tolist())), q)

    def rows_of(proto) -> List[int]:
        out_rows = []
        for q, (n, b) in enumerate(zip(proto.query_imnames, proto.query_boxes)):
            key = (n, tuple(b.tolist()))
            if key not in qmap:
                raise ValueError(
                    f"'{proto.source}' query {q} ({n!r}, box {b.tolist()}) is not a query of "
                    f"'{main.source}'"
                )
            out_rows.append(qmap[key])
        return out_rows

    obj = {
        "format": PROTOCOL_FORMAT,
        "version": PROTOCOL_VERSION,
        "description": f"CUHK-SYSU gallery {main_size} (TestG{main_size}.mat)",
        "converted_from": {"dataset": "cuhk_sysu", "root": os.path.abspath(root)},
        "queries": [
            {
                "image": r["image_id"],
                "box": xyxy_to_xywh(r["annotations"][0]["bbox"]),
                "person_id": int(r["annotations"][0]["person_id"]),
                "gallery": _gallery_entries(main.gallery_imnames[q], main.gallery_boxes[q]),
            }
            for q, r in enumerate(queries)
        ],
    }
    extra = []
    keys = {main_size: "search"}
    for size in sorted(s for s in available if s != main_size):
        proto = load_cuhk_sysu_protocol(root, size)
        keys[size] = f"search_g{size}"
        spec = {"key": keys[size], "description": f"CUHK-SYSU gallery {size} (TestG{size}.mat)"}
        rows = rows_of(proto)
        if rows != list(range(len(queries))):
            spec["queries"] = rows
        spec["galleries"] = [
            _gallery_entries(proto.gallery_imnames[q], proto.gallery_boxes[q])
            for q in range(proto.num_queries)
        ]
        extra.append(spec)
    base = FULL_POOL_BASE_SIZE if FULL_POOL_BASE_SIZE in available else min(available)
    spec = {
        "key": "search_full",
        "description": f"CUHK-SYSU full pool ({len(gallery)} images; TestG{base} galleries plus "
        "every other pool image except the query image)",
    }
    rows = rows_of(load_cuhk_sysu_protocol(root, base))
    if rows != list(range(len(queries))):
        spec["queries"] = rows
    spec.update(gallery_from=keys[base], add_all_other_images=True)
    extra.append(spec)
    for subset, path in find_cuhk_sysu_subsets(root).items():
        idx = load_cuhk_sysu_subset_indices(root, subset, reference=main)
        extra.append(
            {
                "key": f"search_{subset}",
                "description": f"CUHK-SYSU {subset} subset ({os.path.basename(path)}), "
                f"gallery {main_size}",
                "queries": idx.tolist(),
                "gallery_from": "search",
            }
        )
    obj["protocols"] = extra
    write_protocol(obj, os.path.join(out, "test_protocol.json"))
    image_root = _link_images(cuhk_sysu_paths(root)["image_root"], out, images)
    _dataset_list(out, name or "cuhk_sysu_coco", image_root)
    summary = {
        "train_images": len(train),
        "test_images": len(gallery),
        "queries": len(queries),
        "protocols": ["search"] + [e["key"] for e in extra],
    }
    logger.info("CUHK-SYSU '%s' -> '%s': %s", root, out, summary)
    return summary


def convert_prw(root: str, out: str, images: str = "symlink", name: Optional[str] = None):
    """Convert a PRW root (original files) under ``out``. Returns a summary dict."""
    if images not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
    os.makedirs(out, exist_ok=True)
    train, pid_map = load_prw_train(root)
    original = {v: k for k, v in pid_map.items()}
    gallery = load_prw_gallery(root)
    queries = load_prw_query(root)
    _write_coco(records_to_coco(train, original), os.path.join(out, "train.json"))
    _write_coco(records_to_coco(gallery), os.path.join(out, "test.json"))
    obj = {
        "format": PROTOCOL_FORMAT,
        "version": PROTOCOL_VERSION,
        "description": "PRW all cameras (gallery = every test frame but the query frame)",
        "converted_from": {"dataset": "prw", "root": os.path.abspath(root)},
        "queries": [
            {
                "image": r["image_id"],
                "box": xyxy_to_xywh(r["annotations"][0]["bbox"]),
                "person_id": int(r["annotations"][0]["person_id"]),
                "gallery": "all",
            }
            for r in queries
        ],
        "protocols": [
            {
                "key": "search_multiview",
                "description": "PRW multi-view (gallery = test frames of other cameras)",
                "gallery": "all",
                "other_cameras_only": True,
            }
        ],
    }
    write_protocol(obj, os.path.join(out, "test_protocol.json"))
    image_root = _link_images(prw_paths(root)["image_root"], out, images)
    _dataset_list(out, name or "prw_coco", image_root)
    summary = {
        "train_images": len(train),
        "train_identities": len(pid_map),
        "test_images": len(gallery),
        "queries": len(queries),
        "protocols": ["search", "search_multiview"],
    }
    logger.info("PRW '%s' -> '%s': %s", root, out, summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ian_d2.data.convert",
        description="Write CUHK-SYSU or PRW as COCO person-search JSONs with their protocol file.",
    )
    p.add_argument("dataset", choices=("cuhk_sysu", "prw"), help="format of ROOT")
    p.add_argument("root", help="the dataset folder (original files)")
    p.add_argument("out", help="output folder")
    p.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="symlink",
        help="OUT/images: a link to the image folder (default), a copy, or none "
        "(datasets.json then points to the original folder)",
    )
    p.add_argument("--name", help="registered name prefix in OUT/datasets.json")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point. Returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    convert = convert_cuhk_sysu if args.dataset == "cuhk_sysu" else convert_prw
    try:
        convert(args.root, args.out, images=args.images, name=args.name)
    except (ValueError, OSError) as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
