"""``python -m ian_d2.search index``: run the model once over a gallery and store its detections.

The model is the Detectron2 model of ``--config-file`` (``--backend pytorch``, on one or several
processes and machines through Detectron2's ``launch``) or a model exported by
``python -m ian_d2.export`` (``--backend onnx`` / ``torchscript``, one process, no Detectron2).
:func:`_index_worker` lives at module level so that ``launch``'s worker processes find it.
"""

import argparse
from typing import Dict, Optional

import torch  # noqa: F401  (loaded before faiss, see cli.py)

from ..indexer import ExportedBackend, index_gallery
from ..manifest import IndexManifest
from .common import console_logger, model_cfg, store_args, vector_args, vector_params
from .variant import EXPORTED, resolve_backend, resolve_exported, variant_args

__all__ = ["NAME", "add_parser", "run"]

NAME = "index"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``index`` subcommand and its arguments to ``subparsers``."""
    p = subparsers.add_parser(
        NAME, help="run the model once over a gallery and store its detections"
    )
    p.add_argument(
        "--backend",
        choices=("pytorch", "onnx", "torchscript"),
        default=None,
        help="pytorch: the Detectron2 model of --config-file (default); onnx / torchscript: "
        "the model exported to --exported-model by `python -m ian_d2.export` (no Detectron2); "
        "left out with --precision: either runtime",
    )
    p.add_argument("--config-file", metavar="FILE", help="the model's config (pytorch backend)")
    p.add_argument(
        "--exported-model",
        metavar="DIR",
        nargs="+",
        help="export folders of one model (onnx / torchscript backend; several: --precision "
        "picks one)",
    )
    variant_args(p)
    p.add_argument("--threads", type=int, default=None, help="exported backend: CPU threads")
    p.add_argument(
        "--gallery",
        required=True,
        nargs="+",
        help="folders (recursive), .txt lists (one path per line) and image or video files",
    )
    p.add_argument("--out", required=True, help="the index folder")
    p.add_argument("--fps", type=float, default=None, help="video frames per second (default 2)")
    p.add_argument(
        "--score-thresh", type=float, default=None, help="store detections from this score (0.5)"
    )
    vector_args(p)
    p.add_argument("--batch-size", type=int, default=4, help="images per model call")
    p.add_argument("--shard-size", type=int, default=256, help="items per committed shard")
    p.add_argument("--num-workers", type=int, default=1, help="image/video decoding processes")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted run")
    g.add_argument("--append", action="store_true", help="add footage to an existing index")
    p.add_argument("--allow-variant-mismatch", action="store_true",
                   help="--resume/--append with a model of another inference variant "
                   "(precision, MODEL.ROI_HEADS.EMBED_BOXES) than the index's")  # fmt: skip
    p.add_argument(
        "--no-tracks",
        action="store_true",
        help="do not link the videos' detections into tracks (add them later with `tracks`)",
    )
    store_args(p)
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (launch)")
    p.add_argument("--num-machines", type=int, default=1,
                   help="machines indexing together (each sees --out)")  # fmt: skip
    p.add_argument("--machine-rank", type=int, default=0, help="this machine: 0 .. N-1")
    p.add_argument("--dist-url", default="auto",
                   help="tcp://HOST:PORT of machine 0 (several machines)")  # fmt: skip
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def _index_arguments(args) -> Dict[str, object]:
    """The arguments of ``index_gallery`` after the model, from the ``index`` command line."""
    return dict(
        gallery=args.gallery,
        out_dir=args.out,
        fps=args.fps,
        score_thresh=args.score_thresh,
        vector_params=vector_params(args),
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        num_workers=args.num_workers,
        resume=args.resume,
        append=args.append,
        tracks=not args.no_tracks,
        vector_store=args.vector_store,
        milvus_collection=args.milvus_collection,
        milvus_token_file=args.milvus_token_file,
        store_timeout=args.store_timeout,
        allow_variant_mismatch=args.allow_variant_mismatch,
    )


def _index_worker(args) -> Dict[str, object]:
    """Index with the Detectron2 model of ``--config-file`` (one process of ``launch``)."""
    return index_gallery(model_cfg(args), **_index_arguments(args))


def _index_exported(args) -> Dict[str, object]:
    """Index with the model exported to ``--exported-model`` (one process, no Detectron2)."""
    what = f"--backend {args.backend}" if args.backend != EXPORTED else "--precision"
    if not args.exported_model:
        raise ValueError(f"{what} needs --exported-model DIR")
    if args.config_file or args.opts:
        raise ValueError(
            f"{what} takes the model from --exported-model: no --config-file or config overrides"
        )
    if args.num_gpus * args.num_machines != 1:
        raise ValueError(f"{what} runs in one process: no --num-gpus/machines")
    console_logger()
    index_variant = None
    if (args.resume or args.append) and IndexManifest.exists(args.out):
        index_variant = IndexManifest.load(args.out).variant
    runtime, folder = resolve_exported(args, index_variant)
    backend = ExportedBackend(folder, runtime, num_threads=args.threads)
    return index_gallery(None, **_index_arguments(args), backend=backend)


def run(args) -> Optional[Dict[str, object]]:
    """``index``: the statistics of :func:`ian_d2.search.indexer.index_gallery` (None when
    ``launch`` ran it in several processes).

    Raises:
        ValueError: options that do not fit the backend, or an exported model that cannot run
            here (:func:`.variant.resolve_exported`).
    """
    if resolve_backend(args) != "pytorch":
        return _index_exported(args)
    if not args.config_file:
        raise ValueError("--backend pytorch needs --config-file (or give --backend onnx)")
    if args.exported_model:
        raise ValueError("--exported-model needs --backend onnx or torchscript")
    if args.num_gpus * args.num_machines == 1:
        return _index_worker(args)
    from ...utils.comm import launch  # Detectron2's, leaving the process group at the end

    launch(
        _index_worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return None
