"""Training and inference speed of IAN models; prints JSON.

Measures, on random images with random person boxes (no dataset needed):

* training: seconds per iteration and peak memory, for a config at its training input size;
* inference: images per second at a given input size (900x1500 on a GPU, as the person-search
  papers report), batch 1 and batched, with AMP (autocast fp16 on CUDA, bf16 on CPU) on and off.

Usage::

    python benchmarks/bench_model.py                          # CPU-sized: R-18-GN quick config
    python benchmarks/bench_model.py --config configs/IAN_R50.yaml --size 900 1500 \\
        --device cuda --batch 1 4 --amp 0 1                   # GPU, the published setting
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import sys
import time
from typing import Dict, List

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ian_d2.config import add_ian_config  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(args):
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(args.config)
    cfg.merge_from_list(
        ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", "MODEL.REID.NUM_PIDS", args.num_pids]
        + args.opts
    )
    h, w = args.size
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", min(h, w), "INPUT.MAX_SIZE_TEST", max(h, w)])
    return cfg


def _inputs(n: int, h: int, w: int, num_pids: int, g: torch.Generator) -> List[Dict]:
    """Random images [3, h, w] (0-255) with 6 person boxes each, half of them labeled."""
    out = []
    for _ in range(n):
        k = 6
        x0 = torch.rand(k, generator=g) * (w * 0.8)
        y0 = torch.rand(k, generator=g) * (h * 0.5)
        bw = w * (0.05 + 0.1 * torch.rand(k, generator=g))
        bh = h * (0.2 + 0.3 * torch.rand(k, generator=g))
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.stack([x0, y0, x0 + bw, y0 + bh], 1))
        inst.gt_classes = torch.zeros(k, dtype=torch.int64)
        pids = torch.randint(0, num_pids, (k,), generator=g)
        pids[k // 2 :] = -1
        inst.gt_pids = pids
        out.append({"image": torch.rand(3, h, w, generator=g) * 255, "instances": inst})
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def bench_train(cfg, args, g) -> Dict:
    """Seconds per iteration (SGD step included) at the training batch size."""
    model = build_model(cfg)
    model.train()
    # lr 0: the timing includes the update, but random weights cannot diverge (FrozenBN nets do)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    h, w = args.train_size
    batch = cfg.SOLVER.IMS_PER_BATCH
    data = [_inputs(batch, h, w, args.num_pids, g) for _ in range(2)]
    times = []
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with EventStorage():
        for it in range(args.warmup + args.iters):
            _sync(args.device)
            t = time.perf_counter()
            losses = model(data[it % 2])
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(args.device)
            if it >= args.warmup:
                times.append(time.perf_counter() - t)
    return {
        "batch": batch,
        "input_size": [h, w],
        "sec_per_iter": sum(times) / len(times),
        "peak_memory_mb": _peak_memory_mb(args.device),
    }


@torch.no_grad()
def bench_inference(cfg, args, g) -> List[Dict]:
    """Images per second at ``--size`` for each batch size and AMP setting."""
    model = build_model(cfg)
    model.eval()
    h, w = args.size
    results = []
    for amp in args.amp:
        for batch in args.batch:
            data = _inputs(batch, h, w, args.num_pids, g)
            for x in data:
                x.pop("instances")
            times = []
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            for it in range(args.warmup + args.iters):
                _sync(args.device)
                t = time.perf_counter()
                with _autocast(args.device, bool(amp)):
                    model(data)
                _sync(args.device)
                if it >= args.warmup:
                    times.append(time.perf_counter() - t)
            results.append(
                {
                    "amp": bool(amp),
                    "batch": batch,
                    "input_size": [h, w],
                    "images_per_sec": batch * len(times) / sum(times),
                    "peak_memory_mb": _peak_memory_mb(args.device),
                }
            )
    return results


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        default=os.path.join(REPO, "configs/quick_schedules/IAN_R18_GN_instant_test.yaml"),
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, nargs=2, default=[240, 320], help="inference H W")
    p.add_argument("--train-size", type=int, nargs=2, default=None, help="training H W")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    p.add_argument("--amp", type=int, nargs="+", default=[0, 1])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--num-pids", type=int, default=5532)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    args.train_size = args.train_size or args.size
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    cfg = _cfg(args)
    out = {
        "config": os.path.relpath(args.config, REPO),
        "backbone": f"R-{cfg.MODEL.RESNETS.DEPTH} {cfg.MODEL.RESNETS.NORM}",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "post_nms_topk_test": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
    }
    if not args.skip_train:
        out["train"] = bench_train(cfg, args, g)
    out["inference"] = bench_inference(cfg, args, g)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
