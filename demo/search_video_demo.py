#!/usr/bin/env python
"""Search synthetic surveillance footage with the demo model; measure it; draw the README picture.

1. writes the synthetic two-camera video (``python -m ian_d2.data.synthetic --format video``,
   default preset: 640x360, 10 fps, 10 s per camera, 10 identities, 4 seen by both cameras)
   to ``datasets/video_synth`` if it is absent;
2. indexes both videos at ``--fps`` with the step-3 model of ``make demo``
   (``python -m ian_d2.search index``), at the frames' own size (``INPUT.MIN_SIZE_TEST`` /
   ``MAX_SIZE_TEST`` = frame height / width; ``--test-size config``: the config's 300 / 400,
   made for the 400x300 training images, which shrinks the people of a 640x360 frame below the
   size the model was trained on);
3. queries every ground-truth person box of every ``--query-every``-th frame of camera 1 (the
   frame written to a PNG, the GIVEN box as the query) and counts how often the same identity
   (a match overlapping one of its ground-truth boxes with IoU >= 0.5) is found in another
   frame among the top 1 / 5 / 10 matches, and in the OTHER camera among the top 10; chance =
   the same counts for a random ranking of the stored detections;
4. draws the ranking of one cross-camera query to ``docs/search_video.jpg``.

Prints JSON. Needs ``make demo`` first (its ``output/synthetic/step3/model_final.pth``).

Usage: ``python demo/search_video_demo.py [--fps 5] [--query-every 10]`` (``--help``: all options).
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np

from ian_d2.data.synthetic import generate_video
from ian_d2.search import GallerySearcher, write_ranking
from ian_d2.search.cli import main as search_main
from ian_d2.search.sources import read_video_frames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["main"]

logger = logging.getLogger("ian_d2.search_video_demo")


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def identity_of(match, ann) -> int:
    """The person id of a match (ground truth of its frame with IoU >= 0.5), or -1."""
    cam = os.path.splitext(os.path.basename(match["source"]))[0]
    best, pid = 0.5, -1
    for g in ann["cameras"][cam]["frames"][match["frame"]]:
        o = iou(g["box"], match["box"])
        if o >= best:
            best, pid = o, g["person_id"]
    return pid


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", default=os.path.join(REPO, "datasets", "video_synth"))
    p.add_argument(
        "--weights", default=os.path.join(REPO, "output/synthetic/step3/model_final.pth")
    )
    p.add_argument(
        "--config", default=os.path.join(REPO, "configs/Synthetic/IAN_R18_GN_step3_center.yaml")
    )
    p.add_argument("--index", default=os.path.join(REPO, "output", "search_video_index"))
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--query-every", type=int, default=10, help="query frames of camera 1")
    p.add_argument("--picture", default=os.path.join(REPO, "docs", "search_video.jpg"))
    p.add_argument("--test-size", choices=("native", "config"), default="native",
                   help="index at the frames' own size (default) or at the config's test size")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not os.path.isfile(args.weights):
        sys.exit(f"{args.weights} does not exist: run `make demo` first")
    if not os.path.isfile(os.path.join(args.videos, "annotations.json")):
        generate_video(args.videos, size="default", seed=0)
    with open(os.path.join(args.videos, "annotations.json")) as f:
        ann = json.load(f)
    if os.path.isdir(args.index):
        shutil.rmtree(args.index)
    size = []
    if args.test_size == "native":
        width, height = ann["frame_size"]
        size = ["INPUT.MIN_SIZE_TEST", str(height), "INPUT.MAX_SIZE_TEST", str(width)]
    stats = search_main(["index", "--config-file", args.config, "--gallery", args.videos,
                         "--out", args.index, "--fps", str(args.fps),
                         "MODEL.WEIGHTS", args.weights] + size)  # fmt: skip
    searcher = GallerySearcher(args.index, device="cpu")
    cam1 = os.path.abspath(os.path.join(args.videos, "cam1.avi"))
    frames = list(range(0, ann["cameras"]["cam1"]["num_frames"], args.query_every))
    decoded = read_video_frames(cam1, frames)
    rng = np.random.default_rng(0)
    counts = {k: 0 for k in ("top1", "top5", "top10", "other_camera_top10", "queries")}
    chance = {k: 0 for k in ("top1", "top5", "top10")}
    best_query = None
    tmp = tempfile.mkdtemp()
    try:
        for f in frames:
            image = os.path.join(tmp, f"cam1_{f:05d}.png")
            cv2.imwrite(image, decoded[f])
            for g in ann["cameras"]["cam1"]["frames"][f]:
                pid = g["person_id"]
                res = searcher.query(image, g["box"], top_k=11)
                others = [m for m in res["matches"]
                          if not (m["source"] == cam1 and m["frame"] == f)][:10]  # fmt: skip
                ids = [identity_of(m, ann) for m in others]
                counts["queries"] += 1
                for k in (1, 5, 10):
                    counts[f"top{k}"] += pid in ids[:k]
                cross = [i for m, i in zip(others, ids) if m["source"] != cam1]
                counts["other_camera_top10"] += pid in cross
                rows = rng.choice(searcher.num_detections, 10, replace=False)
                rand = [identity_of(searcher.match(int(r), 0.0), ann) for r in rows]
                for k in (1, 5, 10):
                    chance[f"top{k}"] += pid in rand[:k]
                if cross and cross[0] == pid and best_query is None:
                    best_query = (image, g["box"], f)
                    shown = dict(res, matches=others[:5])
                    write_ranking(shown, tmp + "_picture")
                    shutil.copy(os.path.join(tmp + "_picture", "ranking.jpg"), args.picture)
    finally:
        shutil.rmtree(tmp)
        shutil.rmtree(tmp + "_picture", ignore_errors=True)
    n = max(counts["queries"], 1)
    result = {
        "videos": args.videos,
        "fps": args.fps,
        "test_size": args.test_size,
        "index": stats,
        "stored_detections": searcher.num_detections,
        "queries": counts["queries"],
        "identity_found_in_another_frame": {
            k: round(100.0 * counts[k] / n, 1) for k in ("top1", "top5", "top10")
        },
        "identity_found_in_the_other_camera_top10": round(
            100.0 * counts["other_camera_top10"] / n, 1
        ),
        "chance_random_ranking": {k: round(100.0 * v / n, 1) for k, v in chance.items()},
        "picture": args.picture if best_query else None,
        "picture_query": {"frame": best_query[2], "box": best_query[1]} if best_query else None,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
