"""``python -m ian_d2.search query``: rank the stored detections of an index for query boxes
(one ``--query-image`` with ``--query-box``, many from a ``--queries`` CSV, or a stored track),
writing each ranking (JSON and a picture) under ``--output``."""

import csv
import json
import os
from typing import Dict, List

from .common import (
    filter_args,
    logger,
    search_filter,
    setup_d2_logger,
    store_args,
    vector_args,
    vector_params,
)

__all__ = ["NAME", "add_parser", "read_queries", "run"]

NAME = "query"


def add_parser(subparsers):
    """Add the ``query`` subcommand and its arguments to ``subparsers``."""
    q = subparsers.add_parser(NAME, help="rank the stored detections for a query box")
    q.add_argument("index", help="the index folder")
    q.add_argument("--query-image", help="the image holding the query person")
    q.add_argument("--query-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"))
    q.add_argument("--queries", help="CSV with columns image,x1,y1,x2,y2[,name]: many queries")
    q.add_argument(
        "--query-track",
        metavar="TRACK_ID",
        help="a track of the index as the query (its mean embedding): an id of ranking.json's "
        "'track' with --group tracks",
    )
    q.add_argument("--top-k", type=int, default=10)
    q.add_argument("--output", default="search_output", help="folder for rankings")
    q.add_argument("--no-draw", action="store_true", help="JSON only, no ranking picture")
    q.add_argument("--weights", default=None, help="the index's checkpoint, if it moved")
    q.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    q.add_argument("--allow-variant-mismatch", action="store_true",
                   help="query an index built with another inference variant (an int8 or bf16 "
                   "export) with the float32 model")  # fmt: skip
    q.add_argument(
        "--group",
        choices=("none", "tracks"),
        default="none",
        help="tracks: one match per track (a person's appearance in a video; a still image is "
        "a track of one detection)",
    )
    q.add_argument(
        "--rank-by",
        choices=("best", "mean"),
        default="best",
        help="--group tracks: rank a track by its most similar detection (best) or by its mean "
        "embedding (mean)",
    )
    vector_args(q)
    store_args(q, choose=False)
    filter_args(q)
    return q


def read_queries(path: str) -> List[Dict[str, object]]:
    """Queries of a CSV file with a header ``image,x1,y1,x2,y2[,name]`` (image paths relative
    to the CSV's folder)."""
    if not os.path.isfile(path):
        raise ValueError(f"queries file '{path}' does not exist")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"image", "x1", "y1", "x2", "y2"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise ValueError(
                f"queries file '{path}' needs the header image,x1,y1,x2,y2[,name]; it has "
                f"{reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
            except (TypeError, ValueError):
                raise ValueError(f"queries file '{path}', line {line}: the box is not 4 numbers")
            image = (
                row["image"] if os.path.isabs(row["image"]) else os.path.join(base, row["image"])
            )
            name = row.get("name") or f"q{len(out):03d}"
            out.append({"image": image, "box": box, "name": name})
    if not out:
        raise ValueError(f"queries file '{path}' holds no query")
    return out


def run(args) -> List[Dict[str, object]]:
    """``query``: the result of each query (see :class:`ian_d2.search.searcher.GallerySearcher`),
    its ranking written under ``--output`` (with ``--queries``, also ``queries.json``).

    Raises:
        ValueError: no query or more than one kind of query given, a bad queries file.
    """
    given = [bool(args.queries), bool(args.query_image or args.query_box), bool(args.query_track)]
    if sum(given) > 1:
        raise ValueError(
            "give one of --queries CSV, --query-image with --query-box, or --query-track"
        )
    if args.query_track:
        queries = [{"track": args.query_track, "name": None}]
    elif args.queries:
        queries = read_queries(args.queries)
    elif args.query_image and args.query_box:
        queries = [{"image": args.query_image, "box": args.query_box, "name": None}]
    else:
        raise ValueError(
            "give --query-image IMG --query-box X1 Y1 X2 Y2, --queries CSV or --query-track ID"
        )
    from ..searcher import GallerySearcher

    setup_d2_logger()
    filters = search_filter(args)
    searcher = GallerySearcher(
        args.index,
        weights=args.weights,
        device=args.device,
        vector_params=vector_params(args),
        milvus_token_file=args.milvus_token_file,
        store_timeout=args.store_timeout,
        allow_variant_mismatch=args.allow_variant_mismatch,
    )
    try:
        results = _run_queries(args, searcher, queries, filters)
    finally:
        searcher.close()
    if args.queries:
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "queries.json"), "w") as f:
            json.dump(results, f, indent=1)
    return results


def _run_queries(args, searcher, queries, filters) -> List[Dict[str, object]]:
    """Run ``queries`` on ``searcher``, writing each ranking under ``--output``."""
    from ..searcher import write_ranking

    results = []
    for q in queries:
        if "track" in q:
            res = searcher.query_track(q["track"], args.top_k, args.group, args.rank_by, filters)
        else:
            res = searcher.query(
                q["image"], q["box"], args.top_k, args.group, args.rank_by, filters
            )
        out = args.output if q["name"] is None else os.path.join(args.output, q["name"])
        res["files"] = write_ranking(res, out, draw=not args.no_draw)
        logger.info(
            "Query %s: %d matches among %d stored detections (vector search %.2f ms) -> %s",
            q["name"] or q.get("image") or q["track"],
            len(res["matches"]),
            res["stored_detections"],
            res["search_ms"],
            out,
        )
        results.append(res)
    return results
