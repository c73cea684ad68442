"""Command line of the gallery index (``python -m ian_d2.search``): ``index`` footage once,
``query`` it many times. (In an importable module, so that ``launch``'s worker processes find
the indexing function.)

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
    # vectors in Milvus (a local Milvus Lite file, or a server: token from a file or
    # $IAN_D2_MILVUS_TOKEN), filters applied in the store; rebuild a store from the shards
    python -m ian_d2.search index ... --out my_index --vector-store milvus-lite://vectors.db
    python -m ian_d2.search query my_index --query-image q.jpg --query-box 244 115 282 214 \
        --source footage/cam1.avi --time-min 60 --time-max 120 --min-score 0.8
    python -m ian_d2.search reindex-vectors my_index --vector-store milvus://milvus:19530 \
        --milvus-token-file ~/.milvus_token
    # several machines (every machine sees --out): machine 0 and machine 1
    python -m ian_d2.search index ... --num-machines 2 --machine-rank 0 \
        --dist-url tcp://HOST0:29500
    # search in the browser (http://127.0.0.1:8000; docs/SEARCH_API.md)
    python -m ian_d2.search serve my_index --footage-root footage/
"""

import argparse
import csv
import json
import logging
import os
import sys
from typing import Dict, List, Optional

import torch

from .indexer import ExportedBackend, index_gallery
from .tracks.settings import TRACKER_KINDS, TrackSettings
from .vector_index import INDEX_KINDS, VectorIndexParams
from .store_sync import DEFAULT_TIMEOUT
from .vector_store import FAISS, TOKEN_ENV, SearchFilter

__all__ = ["build_parser", "check_serve_args", "main", "read_queries", "run"]

logger = logging.getLogger("ian_d2.search")


def _vector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index-type",
        choices=INDEX_KINDS,
        default=None,
        help="vector index: flat (exact, default), ivf or hnsw (approximate, for large galleries)",
    )
    p.add_argument("--nprobe", type=int, default=None, help="ivf: cells scanned per query")
    p.add_argument("--ef-search", type=int, default=None, help="hnsw: candidates per query")


def _store_args(p: argparse.ArgumentParser, choose: bool = True) -> None:
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


def _filter_args(p: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m ian_d2.search``."""
    parser = argparse.ArgumentParser(
        prog="python -m ian_d2.search", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="run the model once over a gallery and store its detections")
    p.add_argument(
        "--backend",
        choices=("pytorch", "onnx", "torchscript"),
        default="pytorch",
        help="pytorch: the Detectron2 model of --config-file (default); onnx / torchscript: "
        "the model exported to --exported-model by `python -m ian_d2.export` (no Detectron2)",
    )
    p.add_argument("--config-file", metavar="FILE", help="the model's config (pytorch backend)")
    p.add_argument(
        "--exported-model", metavar="DIR", help="an export folder (onnx / torchscript backend)"
    )
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
    _vector_args(p)
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
    _store_args(p)
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (launch)")
    p.add_argument("--num-machines", type=int, default=1,
                   help="machines indexing together (each sees --out)")  # fmt: skip
    p.add_argument("--machine-rank", type=int, default=0, help="this machine: 0 .. N-1")
    p.add_argument("--dist-url", default="auto",
                   help="tcp://HOST:PORT of machine 0 (several machines)")  # fmt: skip
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")

    q = sub.add_parser("query", help="rank the stored detections for a query box")
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
    _vector_args(q)
    _store_args(q, choose=False)
    _filter_args(q)

    r = sub.add_parser(
        "reindex-vectors",
        help="rebuild the index's vector store from its shards (or move it to another store)",
    )
    r.add_argument("index", help="the index folder")
    _store_args(r)
    r.add_argument("--drop", action="store_true",
                   help="Milvus: drop the collection first and upload everything")  # fmt: skip

    t = sub.add_parser(
        "tracks",
        help="link the stored detections of the index's videos into tracks (no detector run)",
    )
    t.add_argument("index", help="the index folder")
    t.add_argument("--tracker", choices=TRACKER_KINDS, default=None,
                   help="the motion tracker (default bytetrack)")  # fmt: skip
    t.add_argument("--lost-track-s", type=float, default=None,
                   help="seconds a track survives without a detection (default 1)")  # fmt: skip
    t.add_argument("--no-reid", action="store_true",
                   help="motion only: do not re-link tracks whose embeddings agree")  # fmt: skip
    t.add_argument("--link-similarity", type=float, default=None,
                   help="smallest cosine similarity to re-link two tracks (default 0.7)")  # fmt: skip
    t.add_argument("--link-max-gap-s", type=float, default=None,
                   help="longest gap, seconds, between re-linked tracks (default 5)")  # fmt: skip
    t.add_argument("--rebuild", action="store_true",
                   help="delete the index's tracks and build them all again (needed to change "
                   "the settings)")  # fmt: skip
    _store_args(t, choose=False)

    e = sub.add_parser(
        "eval-tracks",
        help="tracking and per-track search quality against a synthetic video's annotations",
    )
    e.add_argument("index", help="an index holding the synthetic video's cameras")
    e.add_argument("--annotations", required=True, help="the video folder's annotations.json")
    e.add_argument("--output", required=True, help="the JSON file to write")
    e.add_argument("--query-every", type=int, default=10, help="query frames of camera 1")
    e.add_argument("--top-k", type=int, default=10)
    e.add_argument("--picture", metavar="FILE",
                   help="also draw the longest track of one person as a strip of crops (.jpg/.png)")  # fmt: skip

    s = sub.add_parser("serve", help="search the index in the browser (HTTP API and page)")
    s.add_argument("index", help="the index folder")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--backend", choices=("pytorch", "onnx", "torchscript"), default="pytorch",
                   help="pytorch: the index's Detectron2 model; onnx / torchscript: the model "
                   "exported to --exported-model")  # fmt: skip
    s.add_argument("--exported-model", metavar="DIR", help="an export folder (onnx/torchscript)")
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
    return parser


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


def _setup_logger() -> None:
    from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="ian_d2")


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
    from ..config import get_ian_cfg

    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.freeze()
    _setup_logger()
    return index_gallery(cfg, **_index_arguments(args))


def _index_exported(args) -> Dict[str, object]:
    if not args.exported_model:
        raise ValueError(f"--backend {args.backend} needs --exported-model DIR")
    if args.config_file or args.opts:
        raise ValueError(
            f"--backend {args.backend} takes the model from --exported-model: no --config-file "
            "or config overrides"
        )
    if args.num_gpus * args.num_machines != 1:
        raise ValueError(f"--backend {args.backend} runs in one process: no --num-gpus/machines")
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    backend = ExportedBackend(args.exported_model, args.backend, num_threads=args.threads)
    return index_gallery(None, **_index_arguments(args), backend=backend)


def run_index(args) -> Optional[Dict[str, object]]:
    if args.backend != "pytorch":
        return _index_exported(args)
    if not args.config_file:
        raise ValueError("--backend pytorch needs --config-file (or give --backend onnx)")
    if args.exported_model:
        raise ValueError("--exported-model needs --backend onnx or torchscript")
    if args.num_gpus * args.num_machines == 1:
        return _index_worker(args)
    from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
    from detectron2.engine import launch

    launch(
        _index_worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return None


def run_query(args) -> List[Dict[str, object]]:
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
    from .searcher import GallerySearcher

    _setup_logger()
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
    from .searcher import write_ranking

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


def run_reindex(args) -> Dict[str, object]:
    """``reindex-vectors``: :func:`ian_d2.search.store_sync.reindex_vectors`."""
    from .store_sync import reindex_vectors

    _console_logger()
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


def run_tracks(args) -> Dict[str, object]:
    """``tracks``: bring the tracks of an index's videos up to date (see
    :func:`ian_d2.search.tracks.build_tracks`)."""
    from .manifest import IndexManifest
    from .tracks import TRACKS, build_tracks

    IndexManifest.load(args.index)  # a clear error for a folder that is not an index
    given = dict(
        tracker=args.tracker,
        lost_track_s=args.lost_track_s,
        reid=False if args.no_reid else None,
        link_similarity=args.link_similarity,
        link_max_gap_s=args.link_max_gap_s,
    )
    settings = None
    if args.rebuild or any(v is not None for v in given.values()):
        base = TrackSettings.load(os.path.join(args.index, TRACKS)) or TrackSettings()
        settings = base.replace(**given) if not args.rebuild else TrackSettings().replace(**given)
    _console_logger()
    stats = build_tracks(args.index, settings, rebuild=args.rebuild)  # it logs what it did
    manifest = IndexManifest.load(args.index)
    if manifest.store_uri != FAISS:  # the Milvus rows carry their tracks: re-upload changed shards
        from .store_sync import open_vector_store, sync_vector_store

        store = open_vector_store(manifest, args.milvus_token_file, args.store_timeout, create=True)
        try:
            stats["vector_store"] = sync_vector_store(args.index, manifest, store)
        finally:
            store.close()
    return stats


def run_eval_tracks(args) -> Dict[str, object]:
    """``eval-tracks``: :mod:`ian_d2.search.tracks.evaluation`, written as JSON."""
    from .tracks.evaluation import evaluate_search, evaluate_tracking

    if args.query_every < 1 or args.top_k < 1:
        raise ValueError("--query-every and --top-k must be >= 1")
    _console_logger()
    result = {
        "index": os.path.abspath(args.index),
        "annotations": os.path.abspath(args.annotations),
        "tracking": evaluate_tracking(args.index, args.annotations),
        "search": evaluate_search(
            args.index, args.annotations, query_every=args.query_every, top_k=args.top_k
        ),
    }
    if args.picture:
        from .tracks.evaluation import longest_pure_track
        from .tracks.picture import write_track_strip

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


def _console_logger() -> None:
    """Log INFO to the console when nothing else does (commands without Detectron2)."""
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def check_serve_args(args) -> Optional[str]:
    """The token of ``serve`` (None: no token file).

    Raises:
        ValueError: a non-loopback ``--host`` without ``--token-file``, a bad token file or
            limits.
    """
    from .serve.security import check_host, read_token_file

    check_host(args.host, args.token_file)
    if args.max_upload_mb <= 0 or args.job_shard_size < 1 or args.job_batch_size < 1:
        raise ValueError("--max-upload-mb, --job-shard-size and --job-batch-size must be > 0")
    return read_token_file(args.token_file) if args.token_file else None


def run_serve(args) -> None:
    token = check_serve_args(args)  # before loading anything
    import uvicorn

    from .serve import create_app

    if args.backend == "pytorch":
        _setup_logger()
    elif not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    app = create_app(
        args.index,
        backend=args.backend,
        exported_model=args.exported_model,
        weights=args.weights,
        device=args.device,
        allow_variant_mismatch=args.allow_variant_mismatch,
        footage_roots=args.footage_root,
        token=token,
        max_upload_mb=args.max_upload_mb,
        job_shard_size=args.job_shard_size,
        job_batch_size=args.job_batch_size,
    )
    logger.info("Serving %s on http://%s:%d", args.index, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "index":
        return run_index(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "tracks":
        return run_tracks(args)
    if args.command == "reindex-vectors":
        return run_reindex(args)
    if args.command == "eval-tracks":
        return run_eval_tracks(args)
    return run_query(args)


def run(argv=None) -> None:
    """``main`` for the command line: bad input ends with one clear line, no traceback."""
    try:
        main(argv)
    except ValueError as e:
        sys.exit(f"python -m ian_d2.search: error: {e}")
