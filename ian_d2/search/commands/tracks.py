"""``python -m ian_d2.search tracks``: link the stored detections of an index's videos into
tracks, without running the detector (see :func:`ian_d2.search.tracks.build_tracks`); an index
in Milvus gets the changed shards' rows uploaded again, as they carry their tracks."""

import os
from typing import Dict

from ..tracks.settings import TRACKER_KINDS, TrackSettings
from ..vector_store import FAISS
from .common import console_logger, store_args

__all__ = ["NAME", "add_parser", "run"]

NAME = "tracks"


def add_parser(subparsers):
    """Add the ``tracks`` subcommand and its arguments to ``subparsers``."""
    t = subparsers.add_parser(
        NAME,
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
    store_args(t, choose=False)
    return t


def run(args) -> Dict[str, object]:
    """``tracks``: bring the tracks of an index's videos up to date (see
    :func:`ian_d2.search.tracks.build_tracks`)."""
    from ..manifest import IndexManifest
    from ..tracks import TRACKS, build_tracks

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
    console_logger()
    stats = build_tracks(args.index, settings, rebuild=args.rebuild)  # it logs what it did
    manifest = IndexManifest.load(args.index)
    if manifest.store_uri != FAISS:  # the Milvus rows carry their tracks: re-upload changed shards
        from ..store_sync import open_vector_store, sync_vector_store

        store = open_vector_store(manifest, args.milvus_token_file, args.store_timeout, create=True)
        try:
            stats["vector_store"] = sync_vector_store(args.index, manifest, store)
        finally:
            store.close()
    return stats
