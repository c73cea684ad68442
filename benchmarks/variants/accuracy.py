"""The accuracy part of ``bench_variants``: every variant end to end over the test set of the
synthetic ``ablation`` preset through the project's evaluator (detection AP) and ``rescore``
(search mAP / top-1 at gallery 100 and the full pool), resumable per variant, with ΔmAP and
Δtop-1 against eager fp32 and their paired percentile bootstrap intervals over the queries.
"""

import json
import logging
import os
import time
from typing import Callable, Dict

import numpy as np

from benchmarks.machine import write_json
from benchmarks.variants.build import (
    REFERENCE,
    build_variant,
    calibration_list,
    own_reference,
    prepare_dataset,
    variant_cfg,
    variants,
)

__all__ = ["PROTOCOLS", "paired_deltas", "run_accuracy"]

logger = logging.getLogger("bench_variants")

PROTOCOLS = {"search": "gallery 100", "search_full": "full pool"}  # rescore's keys
PER_QUERY_KEYS = {"search": "g100", "search_full": "full"}  # per_query_metrics' keys
GALLERY_SIZES = (100, -1)


def _evaluate(model_fn: Callable, cfg, dataset: Dict, out_dir: str, reuse: bool = False) -> Dict:
    """Run ``model_fn`` over the test set through the evaluator (``reuse``: the evaluator's
    files of an earlier run of the same variant instead), then rescore per query."""
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset
    from projects.ablations.run import per_query_metrics

    from ian_d2.data import PersonSearchDatasetMapper
    from ian_d2.evaluation import PREDICTIONS_FILE, PersonSearchEvaluator
    from ian_d2.evaluation.rescore import rescore

    name = dataset["names"]["test"]
    ecfg = cfg.clone()
    ecfg.defrost()
    ecfg.TEST.PERSON_SEARCH.GALLERY_SIZES = [100]
    ecfg.TEST.PERSON_SEARCH.SAVE_PREDICTIONS = True
    results_file = os.path.join(out_dir, "person_search_results.json")
    seconds = None
    if reuse and os.path.isfile(results_file):
        with open(results_file) as f:
            results = json.load(f)["results"]
    else:
        evaluator = PersonSearchEvaluator(name, ecfg, distributed=False, output_dir=out_dir)
        mapper = PersonSearchDatasetMapper(ecfg, False)
        loader = build_detection_test_loader(ecfg, name, mapper=mapper)
        t0 = time.perf_counter()
        results = inference_on_dataset(model_fn, loader, evaluator)
        seconds = round(time.perf_counter() - t0, 1)
    pred = os.path.join(out_dir, PREDICTIONS_FILE)
    res, settings = rescore(pred, dataset["root"], "cuhk_sysu", gallery_sizes=list(GALLERY_SIZES))
    per_query = per_query_metrics(pred, dataset["root"], {"results": res, "settings": settings})
    return {
        "search": {PROTOCOLS[k]: res[k] for k in PROTOCOLS},
        "detection": results["detection"],
        "per_query": {PROTOCOLS[k]: per_query[PER_QUERY_KEYS[k]] for k in PROTOCOLS},
        "predictions": pred,
        "wall_seconds_contended": seconds,
    }


def paired_deltas(
    ref: Dict, other: Dict, resamples: int, rng_seed: int = 0, level: float = 0.95
) -> Dict:
    """ΔmAP and Δtop-1 (``other`` - ``ref``, points) per protocol with the paired bootstrap
    interval over the queries both score (``projects.ablations.report.contrast``)."""
    from projects.ablations.report import bootstrap_indices, contrast

    out = {}
    for i, proto in enumerate(PROTOCOLS.values()):
        a, b = other["per_query"][proto], ref["per_query"][proto]
        if a["query_index"] != b["query_index"]:
            raise ValueError(f"{proto}: the variants were scored on other queries")
        ap_a, ap_b = np.asarray(a["ap"], np.float64), np.asarray(b["ap"], np.float64)
        valid = ~np.isnan(ap_a) & ~np.isnan(ap_b)
        counts = bootstrap_indices(int(valid.sum()), resamples, seed=[rng_seed, i])
        entry = {"n_queries": int(valid.sum())}
        for metric, field in (("mAP", "ap"), ("top-1", "top1")):
            x = np.asarray(a[field], np.float64)[valid][None]
            y = np.asarray(b[field], np.float64)[valid][None]
            c = contrast(x, y, counts, level)
            entry[f"delta_{metric}"] = {
                "mean": round(c["mean"], 3),
                "ci95": [round(v, 3) for v in c["ci"]],
            }
        out[proto] = entry
    return out


def run_accuracy(args, cfg, model) -> Dict:
    """The accuracy part (see the module docstring) with the command line's ``args``, the
    model's ``cfg`` and its eager ``model``: the JSON's ``accuracy``."""
    dataset = prepare_dataset(args.data_root)
    calib_list = calibration_list(args.work_dir, dataset)
    records = {}
    for name, kind, embed in variants(args.kinds):
        vdir = os.path.join(args.work_dir, name)
        done = os.path.join(vdir, "variant.json")
        spec = {"weights_sha256": _sha(cfg.MODEL.WEIGHTS), "kind": kind, "embed_boxes": embed}
        if os.path.isfile(done):
            with open(done) as f:
                rec = json.load(f)
            if rec.get("spec") == spec:
                logger.info("%s: already evaluated (%s)", name, done)
                records[name] = rec
                continue
        os.makedirs(vdir, exist_ok=True)
        spec_file = os.path.join(vdir, "spec.json")
        reuse = os.path.isfile(spec_file) and _read(spec_file) == spec
        write_json(spec, spec_file)
        if reuse:  # inference finished before (the evaluator's files), the rest did not
            rec = _evaluate(None, variant_cfg(cfg, embed), dataset, vdir, reuse=True)
            rec["spec"] = spec
            write_json(rec, done)
            records[name] = rec
            continue
        model_fn, _ = build_variant(
            kind, embed, cfg, model, os.path.join(vdir, "export"),
            (calib_list, args.calibration_count),
        )  # fmt: skip
        logger.info("%s: evaluating on %s", name, dataset["names"]["test"])
        rec = _evaluate(model_fn, variant_cfg(cfg, embed), dataset, vdir)
        rec["spec"] = spec
        write_json(rec, done)
        records[name] = rec
        logger.info("%s: %s, detection %s", name, rec["search"], rec["detection"])
    ref = records[REFERENCE]
    table = {}
    for name, rec in records.items():
        row = {
            "search": rec["search"],
            "detection": rec["detection"],
            "delta_detection_AP": round(rec["detection"]["AP"] - ref["detection"]["AP"], 3),
        }
        if name != REFERENCE:
            row["vs_eager_fp32"] = paired_deltas(ref, rec, args.resamples, args.rng_seed)
        own = own_reference(name)
        if own != REFERENCE and name != own and own in records:  # what the precision costs
            row[f"vs_{own}"] = paired_deltas(records[own], rec, args.resamples, args.rng_seed)
        table[name] = row
    return {
        "data": {
            "preset": "ablation",
            "root": dataset["root"],
            "test_images": dataset["summary"]["test_images"],
            "queries": dataset["summary"]["queries"],
            "protocols": list(PROTOCOLS.values()),
        },
        "calibration": {
            "images": f"{args.calibration_count} of the {len(dataset['train_images'])} training "
            f"images ({calib_list}, every k-th in order)",
        },
        "bootstrap": {
            "resamples": args.resamples,
            "rng_seed": args.rng_seed,
            "method": "percentile bootstrap over queries, paired (one draw per protocol shared by "
            "both variants), projects/ablations/report.py",
        },
        "variants": table,
    }


def _read(path: str):
    with open(path) as f:
        return json.load(f)


def _sha(path: str) -> str:
    from ian_d2.utils.hashing import sha256_file

    return sha256_file(path)
