"""Indexing throughput of ``ian_d2.search`` against plain model inference on the same images.

Both runs read the same images from disk, resize them as ``DefaultPredictor`` does and call the
model on batches of the same size; "plain" stops there (the detections are thrown away), the
index also keeps the detections above the score threshold, writes its Parquet shards and builds
the vector index. The overhead is ``index / plain - 1``; the goal is at most 5%. Prints JSON.

Usage::

    python -m benchmarks.bench_index --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml \\
        --gallery datasets/cuhk_sysu_synth/Image/SSM --num-images 200 \\
        MODEL.WEIGHTS output/synthetic/step3/model_final.pth
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import torch

from ian_d2.config import get_ian_cfg
from ian_d2.search import expand_gallery, index_gallery, load_search_model
from ian_d2.search.indexer import ImageToInput
from ian_d2.search.sources import read_image

__all__ = ["main", "plain_inference"]


def plain_inference(model, to_input, paths, batch_size: int) -> float:
    """Seconds to read, resize and run the model on ``paths`` in batches (outputs discarded)."""
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), batch_size):
            batch = [to_input(read_image(p)) for p in paths[i : i + batch_size]]
            model(batch)
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_index", description=__doc__.splitlines()[0]
    )
    p.add_argument("--config-file", required=True)
    p.add_argument("--gallery", required=True, nargs="+")
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=2, help="alternate plain/index this many times")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.freeze()
    sources = [s for s in expand_gallery(args.gallery) if s.kind == "image"]
    paths = [s.path for s in sources[: args.num_images]]
    model = load_search_model(cfg)
    to_input = ImageToInput(cfg)
    plain_inference(model, to_input, paths[: args.batch_size], args.batch_size)  # warm-up
    runs = []
    tmp = tempfile.mkdtemp()
    try:
        for r in range(args.repeats):
            plain = plain_inference(model, to_input, paths, args.batch_size)
            out = os.path.join(tmp, f"index{r}")
            t0 = time.perf_counter()
            stats = index_gallery(cfg, paths, out, score_thresh=args.score_thresh,
                                  batch_size=args.batch_size, num_workers=0, model=model,
                                  progress=False)  # fmt: skip
            index = time.perf_counter() - t0
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
            runs.append(
                {
                    "plain_s": plain,
                    "index_s": index,
                    "overhead": index / plain - 1.0,
                    "stored_detections": stats["stored_detections"],
                    "index_bytes": size,
                    "bytes_per_detection": size / max(stats["stored_detections"], 1),
                }
            )
    finally:
        shutil.rmtree(tmp)
    result = {
        "config": args.config_file,
        "images": len(paths),
        "image_size": list(read_image(paths[0]).shape[:2]),
        "batch_size": args.batch_size,
        "score_thresh": args.score_thresh,
        "device": cfg.MODEL.DEVICE,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "runs": runs,
        "overhead_median": sorted(r["overhead"] for r in runs)[len(runs) // 2],
        "plain_images_per_s": len(paths) / min(r["plain_s"] for r in runs),
        "index_images_per_s": len(paths) / min(r["index_s"] for r in runs),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
