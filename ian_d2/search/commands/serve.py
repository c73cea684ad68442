"""``python -m ian_d2.search serve``: search an index in the browser (the HTTP API and page of
:mod:`ian_d2.search.serve`, run by uvicorn; docs/SEARCH_API.md)."""

from typing import Optional

from .common import console_logger, logger, setup_d2_logger
from .variant import resolve_backend, resolve_exported, variant_args

__all__ = ["NAME", "add_parser", "check_serve_args", "run", "serve_vectors"]

NAME = "serve"


def add_parser(subparsers):
    """Add the ``serve`` subcommand and its arguments to ``subparsers``."""
    s = subparsers.add_parser(NAME, help="search the index in the browser (HTTP API and page)")
    s.add_argument("index", help="the index folder")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--backend", choices=("pytorch", "onnx", "torchscript"), default=None,
                   help="pytorch: the index's Detectron2 model (default); onnx / torchscript: "
                   "the model exported to --exported-model; left out with --precision: either "
                   "runtime")  # fmt: skip
    s.add_argument("--exported-model", metavar="DIR", nargs="+",
                   help="export folders of the index's model (onnx/torchscript; several: "
                   "--precision picks one)")  # fmt: skip
    variant_args(s)
    s.add_argument("--weights", default=None, help="the index's checkpoint, if it moved")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--allow-variant-mismatch", action="store_true",
                   help="query with a model of another inference variant (precision, "
                   "MODEL.ROI_HEADS.EMBED_BOXES) than the index's")  # fmt: skip
    s.add_argument("--footage-root", action="extend", nargs="+", default=[], metavar="DIR",
                   help="folders whose files indexing jobs may read (none: no jobs)")  # fmt: skip
    s.add_argument("--token-file", metavar="FILE",
                   help="a secret (>= 16 characters) every API client must send; required "
                   "for a non-loopback --host")  # fmt: skip
    s.add_argument("--max-upload-mb", type=float, default=20.0, help="uploaded image limit")
    s.add_argument("--job-shard-size", type=int, default=256, help="jobs: items per shard")
    s.add_argument("--job-batch-size", type=int, default=4, help="jobs: images per model call")
    g = s.add_argument_group("serving (docs/SEARCH.md#serving-settings)")
    g.add_argument("--served-vectors", choices=("int8", "fp16", "fp32"), default="int8",
                   help="the copy of the embeddings the server scans: int8 (default; 1 byte per "
                   "dimension, per-dimension scalar quantisation) or fp16, with the float32 rows "
                   "on disk for an exact re-ranking; fp32: the float32 matrix in memory (4 bytes "
                   "per dimension)")  # fmt: skip
    g.add_argument("--rerank", type=int, default=200,
                   help="int8/fp16: the scan's best candidates ranked again in float32 first "
                   "(more are when the codes' error bound requires: the ranking stays exact)")  # fmt: skip
    g.add_argument("--batch-window-ms", type=float, default=1.0,
                   help="fp32: searches arriving within this many ms are ranked in one matrix "
                   "product (0: each alone)")  # fmt: skip
    g.add_argument("--batch-max", type=int, default=16,
                   help="fp32: at most this many searches per matrix product")  # fmt: skip
    g.add_argument("--model-batch-max", type=int, default=None,
                   help="query boxes waiting for the model are embedded together: boxes of one "
                   "image in one call, and (pytorch) up to this many images of one size per call "
                   "(default: 4 on a GPU; 1 on the CPU, where a batch costs what its images cost "
                   "one by one)")  # fmt: skip
    return s


def check_serve_args(args) -> Optional[str]:
    """The token of ``serve`` (None: no token file).

    Raises:
        ValueError: a non-loopback ``--host`` without ``--token-file``, a bad token file or
            limits (served vectors' settings included).
    """
    from ..serve.security import check_host, read_token_file

    check_host(args.host, args.token_file)
    if args.max_upload_mb <= 0 or args.job_shard_size < 1 or args.job_batch_size < 1:
        raise ValueError("--max-upload-mb, --job-shard-size and --job-batch-size must be > 0")
    if args.model_batch_max is not None and args.model_batch_max < 1:
        raise ValueError(f"--model-batch-max must be >= 1, not {args.model_batch_max}")
    serve_vectors(args)
    return read_token_file(args.token_file) if args.token_file else None


def serve_vectors(args):
    """The :class:`ian_d2.search.serve.matrix.ServeVectors` of the arguments.

    Raises:
        ValueError: a bad --rerank, --batch-window-ms or --batch-max.
    """
    from ..serve.matrix import ServeVectors

    return ServeVectors(args.served_vectors, args.rerank, args.batch_window_ms, args.batch_max)


def run(args) -> None:
    """``serve``: check the arguments, build the app and serve it until stopped.

    Raises:
        ValueError: see :func:`check_serve_args`; an exported model that cannot run here
            (:func:`.variant.resolve_exported`).
    """
    token = check_serve_args(args)  # before loading anything
    import uvicorn

    from ..serve import create_app

    exported = args.exported_model
    if resolve_backend(args) == "pytorch":
        setup_d2_logger()
    else:
        console_logger()
        from ..manifest import IndexManifest

        args.backend, exported = resolve_exported(args, IndexManifest.load(args.index).variant)
    app = create_app(
        args.index,
        backend=args.backend,
        exported_model=exported,
        weights=args.weights,
        device=args.device,
        allow_variant_mismatch=args.allow_variant_mismatch,
        footage_roots=args.footage_root,
        token=token,
        max_upload_mb=args.max_upload_mb,
        job_shard_size=args.job_shard_size,
        job_batch_size=args.job_batch_size,
        vectors=serve_vectors(args),
        model_batch_max=args.model_batch_max,
    )
    logger.info("Serving %s on http://%s:%d", args.index, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
