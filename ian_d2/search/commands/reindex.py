"""``python -m ian_d2.search reindex-vectors``: rebuild an index's vector store from its shards,
or move it to another store (see :func:`ian_d2.search.store_sync.reindex_vectors`)."""

import json
from typing import Dict

from .common import console_logger, logger, store_args

__all__ = ["NAME", "add_parser", "run"]

NAME = "reindex-vectors"


def add_parser(subparsers):
    """Add the ``reindex-vectors`` subcommand and its arguments to ``subparsers``."""
    r = subparsers.add_parser(
        NAME,
        help="rebuild the index's vector store from its shards (or move it to another store)",
    )
    r.add_argument("index", help="the index folder")
    store_args(r)
    r.add_argument("--drop", action="store_true",
                   help="Milvus: drop the collection first and upload everything")  # fmt: skip
    return r


def run(args) -> Dict[str, object]:
    """``reindex-vectors``: :func:`ian_d2.search.store_sync.reindex_vectors`."""
    from ..store_sync import reindex_vectors

    console_logger()
    out = reindex_vectors(
        args.index,
        args.vector_store,
        args.milvus_collection,
        args.milvus_token_file,
        args.store_timeout,
        drop=args.drop,
    )
    logger.info("Vector store of %s: %s", args.index, json.dumps(out))
    return out
