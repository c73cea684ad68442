"""What several subcommands of ``python -m ian_d2.search`` share: argument groups (vector
index, vector store, search filters), their conversion to settings, and logging set-up."""

import argparse
import logging
import os
from typing import Optional

from ..store_sync import DEFAULT_TIMEOUT
from ..vector_index import INDEX_KINDS, VectorIndexParams
from ..vector_store import TOKEN_ENV, SearchFilter

__all__ = [
    "console_logger",
    "filter_args",
    "logger",
    "search_filter",
    "setup_d2_logger",
    "store_args",
    "vector_args",
    "vector_params",
]

logger = logging.getLogger("ian_d2.search")


def vector_args(p: argparse.ArgumentParser) -> None:
    """Add the vector index settings (``--index-type``, ``--nprobe``, ``--ef-search``)."""
    p.add_argument(
        "--index-type",
        choices=INDEX_KINDS,
        default=None,
        help="vector index: flat (exact, default), ivf or hnsw (approximate, for large galleries)",
    )
    p.add_argument("--nprobe", type=int, default=None, help="ivf: cells scanned per query")
    p.add_argument("--ef-search", type=int, default=None, help="hnsw: candidates per query")


def store_args(p: argparse.ArgumentParser, choose: bool = True) -> None:
    """Add the vector store arguments: the Milvus token file and timeout, and with ``choose``
    also the store (``--vector-store``) and its collection."""
    if choose:
        p.add_argument(
            "--vector-store",
            metavar="URI",
            default=None,
            help="where the vectors live: faiss (default, the index folder), "
            "milvus-lite://PATH.db (a local Milvus Lite file) or milvus://HOST:PORT[/DB] "
            "(a Milvus server or cluster)",
        )
        p.add_argument(
            "--milvus-collection", default=None, help="the Milvus collection (default: new name)"
        )
    p.add_argument(
        "--milvus-token-file",
        metavar="FILE",
        default=None,
        help=f"a file holding the Milvus server's token (else ${TOKEN_ENV}; never given on the "
        "command line)",
    )
    p.add_argument(
        "--store-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the Milvus server",
    )


def filter_args(p: argparse.ArgumentParser) -> None:
    """Add the search filters (``--source``, ``--time-min``, ``--time-max``, ``--min-score``)."""
    p.add_argument("--source", action="append", default=None, metavar="PATH",
                   help="only detections of this image / video (a camera); repeatable")  # fmt: skip
    p.add_argument("--time-min", type=float, default=None, help="video time from (seconds)")
    p.add_argument("--time-max", type=float, default=None, help="video time to (seconds)")
    p.add_argument("--min-score", type=float, default=None, help="detection score from")


def search_filter(args) -> SearchFilter:
    """The filters of ``query``'s command line (sources as absolute paths, as stored)."""
    sources = None
    if args.source:
        sources = tuple(os.path.abspath(s) for s in args.source)
    return SearchFilter(sources, args.time_min, args.time_max, args.min_score)


def vector_params(args) -> Optional[VectorIndexParams]:
    """The vector index settings given on the command line (None: none given)."""
    if args.index_type is None and args.nprobe is None and args.ef_search is None:
        return None
    over = {"kind": args.index_type or "flat"}
    if args.nprobe is not None:
        over["nprobe"] = args.nprobe
    if args.ef_search is not None:
        over["ef_search"] = args.ef_search
    return VectorIndexParams(**over)


def setup_d2_logger() -> None:
    """Detectron2's logger set-up for ``ian_d2`` (commands that run the Detectron2 model)."""
    from ... import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="ian_d2")


def model_cfg(args):
    """The frozen config of ``--config-file`` and the overrides, on the GPU when there is one,
    with Detectron2's logger set up (commands that run the Detectron2 model)."""
    import torch

    from ...config import get_ian_cfg

    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.freeze()
    setup_d2_logger()
    return cfg


def console_logger() -> None:
    """Log INFO to the console when nothing else does (commands without Detectron2)."""
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
