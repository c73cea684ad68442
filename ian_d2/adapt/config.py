"""Config keys of the adaptation to unlabeled footage (``cfg.ADAPT``), added by
:func:`ian_d2.add_ian_config` (a leaf: Detectron2's ``CfgNode`` only)."""

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.config import CfgNode as CN

__all__ = ["add_adapt_config"]


def add_adapt_config(cfg) -> None:
    """Add ``cfg.ADAPT`` (``python -m ian_d2.adapt``, docs/ADAPT.md) to ``cfg`` in place."""
    _C = cfg
    _C.ADAPT = CN()
    # Rounds of (pseudo-label the footage with the current model, fine-tune on it).
    _C.ADAPT.ROUNDS = 3
    # Training iterations of each round (SOLVER.* gives the batch, learning rate and schedule
    # of one round; SOLVER.MAX_ITER is replaced by this).
    _C.ADAPT.ITERS_PER_ROUND = 100
    # Where pseudo identities come from: "tracks" (one track, one identity), "clusters"
    # (DBSCAN over the detections' k-reciprocal Jaccard distance, tracks unused) or "both"
    # (tracks as must-links, clustered across tracks and cameras). Two detections of one frame
    # never share an identity.
    _C.ADAPT.PSEUDO_LABELS = "both"
    # DBSCAN radius on the Jaccard distance, and the detections a core point stands for.
    _C.ADAPT.EPS = 0.6
    _C.ADAPT.MIN_SAMPLES = 4
    # k-reciprocal neighbours (k1) and query expansion (k2) of the Jaccard distance.
    _C.ADAPT.K1 = 20
    _C.ADAPT.K2 = 6
    # Tracks cut into tracklets of at most this many detections (in time order) before they
    # are used as must-links: a tracker switches identities on sparse or crowded footage, a
    # short piece of a track is far purer than the whole (docs/ADAPT.md). 0: whole tracks.
    _C.ADAPT.TRACKLET_LEN = 0
    # Tracks shorter than this are not identities of their own.
    _C.ADAPT.MIN_TRACK_LEN = 2
    # A track that clusters with nothing stays an identity of its own (else an outlier).
    _C.ADAPT.KEEP_NOISE_TRACKS = True
    # Pseudo boxes: the index's detections with at least this score (the model's confident
    # detections); the others are not training boxes.
    _C.ADAPT.BOX_THRESH = 0.7
    # About this share of the training images are the footage's (its frames are listed several
    # times when the labeled source set is larger); the rest are DATASETS.TRAIN's.
    _C.ADAPT.TARGET_SHARE = 0.5
    # Evaluate on DATASETS.TEST after every round (mAP over rounds); False: no evaluation.
    _C.ADAPT.EVAL_EACH_ROUND = False
