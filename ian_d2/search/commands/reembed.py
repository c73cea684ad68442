"""``python -m ian_d2.search reembed``: the detections of an index embedded again by another
model (e.g. adapted to the footage) into a new index, without running the detector (see
:func:`ian_d2.search.reembed.reembed_index`)."""

import argparse
from typing import Dict

from .common import model_cfg, store_args

__all__ = ["NAME", "add_parser", "run"]

NAME = "reembed"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reembed`` subcommand and its arguments to ``subparsers``."""
    p = subparsers.add_parser(
        NAME,
        help="embed an index's detections again with another model (same detector) into a new "
        "index, without detecting again",
    )
    p.add_argument("index", help="the index folder (never modified)")
    p.add_argument("--out", required=True, help="the new index folder")
    p.add_argument("--config-file", required=True, metavar="FILE", help="the new model's config")
    p.add_argument("--redetect", action="store_true",
                   help="a model with another detector (or embedding size): index the index's "
                   "footage again into --out instead")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=4, help="frames per model call")
    p.add_argument("--num-workers", type=int, default=1,
                   help="--redetect: image/video decoding processes")  # fmt: skip
    p.add_argument("--no-tracks", action="store_true",
                   help="no tracks in the new index (add them later with `tracks`)")  # fmt: skip
    store_args(p)
    # after INDEX and the options (argparse.REMAINDER would take the options after INDEX too)
    opts = p.add_argument("opts", nargs=argparse.PARSER, default=[], metavar="KEY VALUE",
                          help="config overrides: MODEL.WEIGHTS W [KEY VALUE ...]")  # fmt: skip
    opts.required = False
    return p


def run(args) -> Dict[str, object]:
    """``reembed``: the statistics of :func:`ian_d2.search.reembed.reembed_index`."""
    from ..reembed import reembed_index

    return reembed_index(
        model_cfg(args),
        args.index,
        args.out,
        redetect=args.redetect,
        vector_store=args.vector_store,
        milvus_collection=args.milvus_collection,
        milvus_token_file=args.milvus_token_file,
        store_timeout=args.store_timeout,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        tracks=not args.no_tracks,
    )
