"""Command line of the gallery index (``python -m ian_d2.search``): ``index`` footage once,
``query`` it many times. This module assembles the subcommands of
:mod:`ian_d2.search.commands` (one module each: its arguments and its body) and re-exports
their public functions.

Examples::

    # index images and videos with a trained model (2 sampled frames per second of video)
    python -m ian_d2.search index --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml \\
        --gallery datasets/cuhk_sysu_synth/Image/SSM footage/cam1.avi --out my_index \\
        MODEL.WEIGHTS output/synthetic/step3/model_final.pth
    # add more footage later, or finish a run that was interrupted
    python -m ian_d2.search index ... --out my_index --append
    python -m ian_d2.search index ... --out my_index --resume
    # one query, or many from a CSV (image,x1,y1,x2,y2[,name])
    python -m ian_d2.search query my_index --query-image q.jpg --query-box 244 115 282 214 \\
        --top-k 10 --output results
    python -m ian_d2.search query my_index --queries queries.csv --output results
    # one match per track (a person's appearance in a video), ranked by its best detection
    python -m ian_d2.search query my_index --query-image q.jpg --query-box 244 115 282 214 \\
        --group tracks --rank-by best
    # add tracks to an index built without them (from the stored boxes and embeddings)
    python -m ian_d2.search tracks my_index
    # index with a model exported by `python -m ian_d2.export` (no Detectron2 needed)
    python -m ian_d2.search index --backend onnx --exported-model exported/ \\
        --gallery footage/ --out my_index
    # the fastest of several exports of one model on this CPU (bf16 only with native bf16)
    python -m ian_d2.search index --exported-model exported/ exported_bf16/ exported_int8/ \\
        --precision auto --gallery footage/ --out my_index
    # vectors in Milvus (a local Milvus Lite file, or a server: token from a file or
    # $IAN_D2_MILVUS_TOKEN), filters applied in the store; rebuild a store from the shards
    python -m ian_d2.search index ... --out my_index --vector-store milvus-lite://vectors.db
    python -m ian_d2.search query my_index --query-image q.jpg --query-box 244 115 282 214 \\
        --source footage/cam1.avi --time-min 60 --time-max 120 --min-score 0.8
    python -m ian_d2.search reindex-vectors my_index --vector-store milvus://milvus:19530 \\
        --milvus-token-file ~/.milvus_token
    # the same detections embedded by an adapted model (same detector), into a new index
    python -m ian_d2.search reembed my_index --out my_index_adapted \\
        --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml MODEL.WEIGHTS adapted.pth
    # several machines (every machine sees --out): machine 0 and machine 1
    python -m ian_d2.search index ... --num-machines 2 --machine-rank 0 \\
        --dist-url tcp://HOST0:29500
    # search in the browser (http://127.0.0.1:8000; docs/SEARCH_API.md)
    python -m ian_d2.search serve my_index --footage-root footage/
"""

import argparse
import sys

# the order of --help; `index` first loads torch before faiss (imported by the others' arguments)
from .commands import index, query, reindex, reembed, tracks, eval_tracks, serve
from .commands.common import logger, search_filter, vector_params
from .commands.eval_tracks import run as run_eval_tracks
from .commands.index import run as run_index
from .commands.query import read_queries
from .commands.query import run as run_query
from .commands.reembed import run as run_reembed
from .commands.reindex import run as run_reindex
from .commands.serve import check_serve_args
from .commands.serve import run as run_serve
from .commands.tracks import run as run_tracks

__all__ = [
    "build_parser",
    "check_serve_args",
    "logger",
    "main",
    "read_queries",
    "run",
    "run_eval_tracks",
    "run_index",
    "run_query",
    "run_reembed",
    "run_reindex",
    "run_serve",
    "run_tracks",
    "search_filter",
    "vector_params",
]

COMMANDS = (index, query, reindex, reembed, tracks, eval_tracks, serve)
"""The subcommand modules, in the order of ``--help``: each has ``NAME``, ``add_parser`` and
``run``."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m ian_d2.search``."""
    parser = argparse.ArgumentParser(
        prog="python -m ian_d2.search", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None):
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run its subcommand; returns what the
    subcommand's ``run`` returns.

    Raises:
        ValueError: bad input (see each subcommand).
    """
    args = build_parser().parse_args(argv)
    runs = {command.NAME: command.run for command in COMMANDS}
    return runs[args.command](args)


def run(argv=None) -> None:
    """``main`` for the command line: bad input ends with one clear line, no traceback."""
    try:
        main(argv)
    except ValueError as e:
        sys.exit(f"python -m ian_d2.search: error: {e}")
