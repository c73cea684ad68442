"""The command line of ``python -m ian_d2.adapt``: fine-tune a trained model on footage that has no labels.

    python -m ian_d2.adapt --index INDEX --config-file CONFIG --output DIR \\
        [--num-gpus N] MODEL.WEIGHTS W [ADAPT.ROUNDS 3 ADAPT.PSEUDO_LABELS both ...]

INDEX is the footage indexed (with tracks) by the model of CONFIG + W; the labeled data W was
trained on stays in the batches (``DATASETS.TRAIN``). Writes ``DIR/model_final.pth`` and
``DIR/adapt_manifest.json``; the same command resumes a run that was stopped. Then
``python -m ian_d2.search reembed INDEX --out NEW ... MODEL.WEIGHTS DIR/model_final.pth``
searches the same footage with the adapted model. See docs/ADAPT.md.
"""

import argparse
import logging
import os
import sys

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ian_d2.adapt",
        description="Adapt a trained person-search model to unlabeled footage (an index with "
        "tracks): pseudo identities from tracks and clusters, fine-tuning with the source data.",
    )
    p.add_argument("--index", required=True, help="the footage: a search index with tracks")
    p.add_argument("--config-file", required=True, help="the model's config (as for indexing)")
    p.add_argument("--output", required=True, help="folder of the adapted model and manifest")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (launch)")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT of machine 0")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def worker(args) -> None:
    """One process: the config, the logger, the adaptation."""
    import torch
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    from ..config import get_ian_cfg
    from .rounds import adapt

    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.output, exist_ok=True)
    setup_logger(os.path.join(args.output, "log.txt"), distributed_rank=comm.get_rank())
    setup_logger(
        os.path.join(args.output, "log.txt"), distributed_rank=comm.get_rank(), name="ian_d2"
    )
    adapt(cfg, args.index, args.output)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if not os.path.isfile(args.config_file):
        raise ValueError(f"--config-file '{args.config_file}' does not exist")
    from ..utils.comm import launch

    launch(
        worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def run(argv=None) -> None:
    """:func:`main`, a bad input ending the program with its message (no traceback)."""
    try:
        main(argv)
    except ValueError as e:
        logging.getLogger("ian_d2.adapt").error("%s", e)
        sys.exit(f"python -m ian_d2.adapt: {e}")
