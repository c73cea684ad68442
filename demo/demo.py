#!/usr/bin/env python
"""Person-search demo: find a query person in a gallery of images and videos.

A thin front door over ``python -m ian_d2.search``: the gallery is indexed once (the model runs
once per image or sampled video frame; an index kept with ``--index`` is only extended with new
files on the next call), then the query box is embedded and ranked against every stored
detection, with no detection re-run per query.

Example (a model trained by ``make demo`` on the synthetic dataset)::

    python demo/demo.py --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml \\
        --query-image datasets/cuhk_sysu_synth/Image/SSM/s975.jpg --query-box 244 115 282 214 \\
        --gallery datasets/cuhk_sysu_synth/Image/SSM --top-k 5 --output demo_output \\
        --opts MODEL.WEIGHTS output/synthetic/step3/model_final.pth

``--gallery`` takes folders, ``.txt`` lists of paths, images and videos. The output folder
receives ``ranking.jpg`` (the query and the top-k matches side by side) and ``ranking.json``;
the index is kept in ``--index`` (default: ``<output>/index``).
"""

import argparse
import logging
import os
import sys
from typing import List

import torch
from detectron2.utils.logger import setup_logger

from ian_d2.config import get_ian_cfg  # registers the model parts that the configs name
from ian_d2.search import (
    GallerySearcher,
    IndexManifest,
    check_query_box,
    index_gallery,
    load_search_model,
    write_ranking,
)
from ian_d2.search.sources import read_image

__all__ = ["main"]

logger = logging.getLogger("ian_d2.demo")


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description="IAN person search demo")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--query-image", required=True)
    parser.add_argument(
        "--query-box", required=True, type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2")
    )
    parser.add_argument(
        "--gallery", required=True, nargs="+", help="folders, .txt lists, images and videos"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--det-thresh", type=float, default=0.5, help="store detections from")
    parser.add_argument("--fps", type=float, default=2.0, help="video frames per second")
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--index", default=None, help="index folder (default: OUTPUT/index)")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE pairs")
    args = parser.parse_args(argv)
    setup_logger(name="ian_d2")
    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.freeze()

    query_image = read_image(args.query_image)  # bad query input: fail before indexing
    check_query_box(args.query_box, query_image.shape, f"query image '{args.query_image}'")
    index_dir = args.index or os.path.join(args.output, "index")
    model = load_search_model(cfg)
    exists = IndexManifest.exists(index_dir)
    stats = index_gallery(
        cfg,
        args.gallery,
        index_dir,
        fps=None if exists else args.fps,
        score_thresh=None if exists else args.det_thresh,
        append=exists,
        model=model,
        num_workers=0,
    )
    searcher = GallerySearcher(index_dir, model=model, device=cfg.MODEL.DEVICE)
    result = searcher.query(args.query_image, args.query_box, args.top_k)
    result["indexed_now"] = stats["items"]
    write_ranking(result, args.output)
    logger.info(
        "Wrote %d matches among %d stored detections to %s (index: %s)",
        len(result["matches"]),
        result["stored_detections"],
        args.output,
        index_dir,
    )
    return result["matches"]


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad user input: one clear line, no traceback
        sys.exit(f"demo.py: error: {e}")
