"""The adaptation: rounds of pseudo-labelling the footage and fine-tuning on it with the source.

:func:`adapt` runs in every process of ``launch`` (one process: directly). Each round ``r``:

1. **embeddings** of the footage's detections: round 0 takes the index's own (the index was
   built by the model being adapted: checked by fingerprint), later rounds embed the stored boxes
   again with the previous round's model (:mod:`.embed`, split over the processes);
2. **pseudo identities** (:func:`~.pseudo_labels.assign_pseudo_identities`, rank 0): tracks,
   clusters or both (``ADAPT.PSEUDO_LABELS``), re-clustered every round;
3. **the round's data and start**: the target records (confident detections as pseudo boxes,
   pseudo identities after the S source identities, :mod:`.dataset`) and the state the round
   starts from (previous weights, source identity rows kept, pseudo rows at their centroids,
   :mod:`.memory`), written under ``OUT/round_RR/`` (rank 0; every process then reads them);
4. **training**: :class:`~ian_d2.engine.PersonSearchTrainer` on ``DATASETS.TRAIN`` (the labeled
   source, so that detection and the source identities are not forgotten) + the round's target
   set, ``MODEL.REID.NUM_PIDS`` = S + K, ``ADAPT.ITERS_PER_ROUND`` iterations; the identity loss
   (RSS or OIM memories) and the center loss as configured, identical on every process as in
   training;
5. ``round.json`` (rank 0) marks the round done.

Every file is written atomically; a run killed at any point resumes (same command) from what was
committed: finished rounds are skipped, a round's pseudo labels are reused, its training resumes
from its last checkpoint. ``OUT/adapt_manifest.json`` records what was used (index, model
fingerprints, settings, per round the pseudo-label summary and cluster sizes) and
``OUT/model_final.pth`` is the adapted model.
"""

import json
import logging
import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..utils.io import atomic_write
from .dataset import register_target, target_records, write_records
from .footage import Footage, FootageError, read_footage
from .frames import frame_files
from .memory import NO_IDENTITY_MEMORY, centroids, round_state
from .pseudo_labels import assign_pseudo_identities, tracklets

__all__ = ["MANIFEST", "adapt", "round_dir"]

logger = logging.getLogger(__name__)

MANIFEST = "adapt_manifest.json"
FORMAT = "ian_d2.adapt"


def round_dir(output_dir: str, r: int) -> str:
    return os.path.join(output_dir, f"round_{r:02d}")


def _write_json(path: str, data) -> None:
    text = json.dumps(data, indent=1, sort_keys=True).encode()
    atomic_write(path, lambda f: f.write(text))


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _load_state(path: str) -> Dict[str, torch.Tensor]:
    data = torch.load(path, map_location="cpu", weights_only=False)
    return data.get("model", data) if isinstance(data, dict) else data


def _settings(cfg) -> Dict:
    a = cfg.ADAPT
    return {k.lower(): (list(v) if isinstance(v, tuple) else v) for k, v in a.items()}


def _check_model(cfg, footage: Footage) -> Dict:
    """The fingerprint of the model to adapt, which must be the index's (round 0 pseudo-labels
    the index's embeddings)."""
    from ..utils.fingerprint import model_fingerprint

    fingerprint = model_fingerprint(cfg)
    footage.manifest.check_model(fingerprint, footage.index_dir)
    return {k: v for k, v in fingerprint.items() if k != "config_yaml"}


def _check_source(cfg, num_source: int) -> Tuple[List[str], int]:
    """The labeled source datasets of ``DATASETS.TRAIN`` (they must hold the S identities of
    the model being adapted) and their number of images."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..data.datasets.builtin import get_num_train_pids

    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "DATASETS.TRAIN is empty: adaptation keeps the labeled source data in the batches "
            "(the training set of the model), so that detection and the source identities are "
            "not forgotten"
        )
    meta = MetadataCatalog.get(names[0]).get("num_train_pids", None)
    pids = int(meta) if meta is not None else int(get_num_train_pids(names[0]))
    if pids != num_source:
        raise ValueError(
            f"DATASETS.TRAIN[0] '{names[0]}' has {pids} labeled identities but the model has "
            f"{num_source}: give the dataset the model was trained on"
        )
    return names, sum(len(DatasetCatalog.get(n)) for n in names)


def target_repeat(share: float, source_images: int, target_images: int) -> int:
    """How many times the target records are listed so that they make about ``share`` of the
    training images (at least once: the target is never cut)."""
    if not 0 < share < 1:
        raise ValueError(f"ADAPT.TARGET_SHARE {share} must be in (0, 1)")
    return max(1, int(round(share / (1 - share) * source_images / max(target_images, 1))))


def _check_footage(cfg, footage: Footage) -> None:
    """Refuse, before anything is written, footage that gives nothing to learn from."""
    a = cfg.ADAPT
    if not (footage.scores >= a.BOX_THRESH).any():
        raise FootageError(
            f"no detection of '{footage.index_dir}' has a score >= ADAPT.BOX_THRESH "
            f"{a.BOX_THRESH} (the highest is {float(footage.scores.max(initial=0)):.3f}): "
            "lower it, or index more footage"
        )
    if len(footage) < a.MIN_SAMPLES:
        raise FootageError(
            f"'{footage.index_dir}' holds {len(footage)} detections, fewer than "
            f"ADAPT.MIN_SAMPLES {a.MIN_SAMPLES}: too few to cluster; index more footage"
        )
    if a.PSEUDO_LABELS in ("tracks", "both"):
        lengths = np.bincount(footage.track_ids[footage.track_ids >= 0])
        if not (lengths >= a.MIN_TRACK_LEN).any():
            raise FootageError(
                f"no track of '{footage.index_dir}' has ADAPT.MIN_TRACK_LEN "
                f"{a.MIN_TRACK_LEN} detections: too few to learn identities from; index more "
                "(or longer) video, or rebuild the tracks (`python -m ian_d2.search tracks`)"
            )


def _pseudo_labels(cfg, footage: Footage, embeddings: np.ndarray):
    a = cfg.ADAPT
    return assign_pseudo_identities(
        embeddings,
        tracklets(footage.track_ids, footage.frames, a.TRACKLET_LEN),
        footage.frame_keys,
        mode=a.PSEUDO_LABELS,
        eps=a.EPS,
        min_samples=a.MIN_SAMPLES,
        k1=a.K1,
        k2=a.K2,
        min_track_len=a.MIN_TRACK_LEN,
        keep_noise_tracks=a.KEEP_NOISE_TRACKS,
    )


def _prepare_round(cfg, footage, files, embeddings, prev_weights, num_source, rdir) -> None:
    """Rank 0: the round's pseudo labels, records and start state, each written atomically
    (``prepared.json`` last: its presence means the others are complete)."""
    os.makedirs(rdir, exist_ok=True)
    pseudo = _pseudo_labels(cfg, footage, embeddings)
    if pseudo.num_identities == 0:
        raise FootageError(
            f"no pseudo identity in '{footage.index_dir}' ({pseudo.summary()}): the footage has "
            "too few tracks or detections to learn from (index more footage, lower "
            "ADAPT.MIN_SAMPLES or ADAPT.MIN_TRACK_LEN)"
        )
    labels_path = os.path.join(rdir, "pseudo_labels.npy")
    atomic_write(labels_path, lambda f: np.save(f, pseudo.labels))
    records = target_records(footage, pseudo.labels, files, num_source, cfg.ADAPT.BOX_THRESH)
    write_records(os.path.join(rdir, "target.json"), records)
    state, rows = round_state(
        _load_state(prev_weights),
        num_source,
        centroids(embeddings, pseudo.labels, pseudo.num_identities),
    )
    atomic_write(os.path.join(rdir, "init.pth"), lambda f: torch.save({"model": state}, f))
    boxes = sum(len(r["annotations"]) for r in records)
    labeled = sum(a["person_id"] >= 0 for r in records for a in r["annotations"])
    _write_json(
        os.path.join(rdir, "prepared.json"),
        {
            "pseudo_labels": pseudo.summary(),
            "num_identities": pseudo.num_identities,
            "target_images": len(records),
            "pseudo_boxes": boxes,
            "pseudo_boxes_with_identity": int(labeled),
            "identity_rows": rows,
        },
    )


def _round_cfg(cfg, rdir: str, train: List[str], name: str, num_pids: int, r: int):
    c = cfg.clone()
    c.defrost()
    c.DATASETS.TRAIN = tuple(train) + (name,)
    c.MODEL.REID.NUM_PIDS = int(num_pids)
    c.MODEL.WEIGHTS = os.path.join(rdir, "init.pth")
    c.SOLVER.MAX_ITER = int(cfg.ADAPT.ITERS_PER_ROUND)
    c.OUTPUT_DIR = rdir
    if not cfg.ADAPT.EVAL_EACH_ROUND:
        c.DATASETS.TEST = ()
    if cfg.SEED >= 0:
        c.SEED = int(cfg.SEED) + r
    c.freeze()
    return c


def _train_round(rcfg):
    """Train one round; returns the trainer (its model holds the round's final state)."""
    from detectron2.utils import comm
    from detectron2.utils.env import seed_all_rng

    from ..engine import PersonSearchTrainer

    seed_all_rng(None if rcfg.SEED < 0 else rcfg.SEED + comm.get_rank())
    trainer = PersonSearchTrainer(rcfg)
    trainer.resume_or_load(resume=True)  # the round's last checkpoint, else its init.pth
    trainer.train()
    return trainer


def _embed_with(weights: str, cfg, footage: Footage, files: List[str]) -> np.ndarray:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from ..modeling.num_pids import num_pids_in_checkpoint
    from .embed import embed_footage

    c = cfg.clone()
    c.defrost()
    c.MODEL.REID.NUM_PIDS = int(num_pids_in_checkpoint(weights))
    c.MODEL.WEIGHTS = weights
    model = build_model(c)
    DetectionCheckpointer(model).load(weights)
    return embed_footage(model, c, footage, files)


def _manifest(output_dir, index_dir, cfg, model, footage, num_source) -> Dict:
    path = os.path.join(output_dir, MANIFEST)
    if os.path.isfile(path):
        old = _read_json(path)
        same = (
            old.get("index") == os.path.abspath(index_dir)
            and old.get("model", {}).get("weights_sha256") == model["weights_sha256"]
            and old.get("settings") == _settings(cfg)
        )
        if not same:
            raise ValueError(
                f"'{output_dir}' holds an adaptation of another index, model or settings "
                f"({path}): give a new --output, or the same index, weights and ADAPT settings "
                "to resume it"
            )
        return old
    return {
        "format": FORMAT,
        "index": os.path.abspath(index_dir),
        "index_model": {k: v for k, v in footage.manifest.model.items() if k != "config_yaml"},
        "model": model,
        "settings": _settings(cfg),
        "source_datasets": list(cfg.DATASETS.TRAIN),
        "num_source_identities": num_source,
        "footage": footage.summary(),
        "seed": int(cfg.SEED),
        "rounds": [],
    }


def adapt(cfg, index_dir: str, output_dir: str) -> Optional[Dict]:
    """
    Adapt the model of ``cfg`` (``MODEL.WEIGHTS``) to the footage of ``index_dir``; see the
    module docstring. Runs in every process; returns the manifest on rank 0 (None elsewhere).

    Raises:
        FootageError / ValueError: no index, no tracks, moved footage, another model than the
            index's, too little to learn from, an output folder of another adaptation.
    """
    from detectron2.utils import comm

    from ..utils.hashing import sha256_file

    main = comm.is_main_process()
    footage = read_footage(index_dir)
    model = _check_model(cfg, footage)
    _check_footage(cfg, footage)
    from ..modeling.num_pids import num_pids_in_checkpoint

    num_source = num_pids_in_checkpoint(cfg.MODEL.WEIGHTS)  # its identity tensors' shapes
    if num_source is None:
        raise ValueError(f"MODEL.WEIGHTS '{cfg.MODEL.WEIGHTS}': {NO_IDENTITY_MEMORY}")
    train, source_images = _check_source(cfg, num_source)
    os.makedirs(output_dir, exist_ok=True)
    manifest = _manifest(output_dir, index_dir, cfg, model, footage, num_source)
    if main:
        _write_json(os.path.join(output_dir, MANIFEST), manifest)
        files = frame_files(footage.items, output_dir)
    comm.synchronize()
    if not main:
        files = frame_files(footage.items, output_dir)  # written by rank 0: paths only
    prev = cfg.MODEL.WEIGHTS
    rounds = int(cfg.ADAPT.ROUNDS)
    start = time.perf_counter()
    for r in range(rounds):
        rdir = round_dir(output_dir, r)
        done = os.path.join(rdir, "round.json")
        if os.path.isfile(done):
            prev = os.path.join(rdir, "model_final.pth")
            continue
        t0 = time.perf_counter()
        if not os.path.isfile(os.path.join(rdir, "prepared.json")):
            emb = footage.embeddings if r == 0 else _embed_with(prev, cfg, footage, files)
            if main:
                _prepare_round(cfg, footage, files, emb, prev, num_source, rdir)
            comm.synchronize()
        prepared = _read_json(os.path.join(rdir, "prepared.json"))
        name = f"adapt_target_r{r}"
        num_pids = num_source + prepared["num_identities"]
        repeat = target_repeat(cfg.ADAPT.TARGET_SHARE, source_images, prepared["target_images"])
        register_target(name, os.path.join(rdir, "target.json"), num_pids, repeat)
        logger.info(
            "Adaptation round %d/%d: %d pseudo identities, %d target images, %s",
            r + 1,
            rounds,
            prepared["num_identities"],
            prepared["target_images"],
            prepared["pseudo_labels"],
        )
        _train_round(_round_cfg(cfg, rdir, train, name, num_pids, r))
        prev = os.path.join(rdir, "model_final.pth")
        if main:
            entry = dict(prepared, round=r, seconds=round(time.perf_counter() - t0, 1))
            entry.update(source_images=source_images, target_repeat=repeat)
            entry["weights_sha256"] = sha256_file(prev)
            _write_json(done, entry)
            manifest["rounds"] = [e for e in manifest["rounds"] if e["round"] != r] + [entry]
            _write_json(os.path.join(output_dir, MANIFEST), manifest)
        comm.synchronize()
        elapsed = time.perf_counter() - start
        logger.info(
            "Adaptation round %d/%d done in %.0f s (ETA %.0f s)",
            r + 1,
            rounds,
            time.perf_counter() - t0,
            elapsed / (r + 1) * (rounds - r - 1),
        )
    final = os.path.join(output_dir, "model_final.pth")
    if main:
        tmp = final + ".tmp"
        shutil.copyfile(prev, tmp)
        os.replace(tmp, final)
        manifest["final"] = {"weights": final, "weights_sha256": sha256_file(final)}
        _write_json(os.path.join(output_dir, MANIFEST), manifest)
    comm.synchronize()
    return manifest if main else None
