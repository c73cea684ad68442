"""``python -m ian_d2.search eval-tracks``: tracking and per-track search quality of an index
against a synthetic video's annotations (see :mod:`ian_d2.search.tracks.evaluation`), written
as JSON, optionally with a picture of one person's longest track."""

import json
import os
from typing import Dict

from .common import console_logger, logger

__all__ = ["NAME", "add_parser", "run"]

NAME = "eval-tracks"


def add_parser(subparsers):
    """Add the ``eval-tracks`` subcommand and its arguments to ``subparsers``."""
    e = subparsers.add_parser(
        NAME,
        help="tracking and per-track search quality against a synthetic video's annotations",
    )
    e.add_argument("index", help="an index holding the synthetic video's cameras")
    e.add_argument("--annotations", required=True, help="the video folder's annotations.json")
    e.add_argument("--output", required=True, help="the JSON file to write")
    e.add_argument("--query-every", type=int, default=10, help="query frames of camera 1")
    e.add_argument("--top-k", type=int, default=10)
    e.add_argument("--picture", metavar="FILE",
                   help="also draw the longest track of one person as a strip of crops (.jpg/.png)")  # fmt: skip
    return e


def run(args) -> Dict[str, object]:
    """``eval-tracks``: :mod:`ian_d2.search.tracks.evaluation`, written as JSON."""
    from ..tracks.evaluation import evaluate_search, evaluate_tracking

    if args.query_every < 1 or args.top_k < 1:
        raise ValueError("--query-every and --top-k must be >= 1")
    console_logger()
    result = {
        "index": os.path.abspath(args.index),
        "annotations": os.path.abspath(args.annotations),
        "tracking": evaluate_tracking(args.index, args.annotations),
        "search": evaluate_search(
            args.index, args.annotations, query_every=args.query_every, top_k=args.top_k
        ),
    }
    if args.picture:
        from ..tracks.evaluation import longest_pure_track
        from ..tracks.picture import write_track_strip

        found = longest_pure_track(args.index, args.annotations)
        if found is None:
            raise ValueError(
                f"--picture: index '{args.index}' has no track of one ground-truth person"
            )
        write_track_strip(args.index, found["source"], found["track"], args.picture)
        result["picture"] = {
            "file": os.path.abspath(args.picture),
            "video": os.path.basename(found["source"]),
            "track": found["track"],
            "person_id": found["person_id"],
            "num_detections": found["num_detections"],
            "matched": found["matched"],
        }
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    for variant, per in result["tracking"].items():
        logger.info("%s: %s", variant, json.dumps(per["all"]))
    logger.info("search: %s -> %s", json.dumps(result["search"]), args.output)
    return result
