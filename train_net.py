#!/usr/bin/env python
"""Train and evaluate IAN person-search models with Detectron2.

Examples::

    # the paper's model on CUHK-SYSU, 8 GPUs
    python train_net.py --config-file configs/IAN_R101.yaml --num-gpus 8
    # resume a run that was interrupted (reads OUTPUT_DIR/last_checkpoint)
    python train_net.py --config-file configs/IAN_R101.yaml --num-gpus 8 --resume
    # evaluate a checkpoint
    python train_net.py --config-file configs/IAN_R101.yaml --eval-only MODEL.WEIGHTS model.pth

Multi-GPU and multi-machine runs go through Detectron2's ``launch`` (torch.distributed).
"""

import logging
import os

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.file_io import PathManager

import ian_d2
from ian_d2.config import get_ian_cfg
from ian_d2.engine import PersonSearchCheckpointer, PersonSearchTrainer, check_batch_size
from ian_d2.modeling import resolve_num_pids
from ian_d2.utils.comm import launch  # Detectron2's, leaving the process group at the end

logger = logging.getLogger("ian_d2")


class Trainer(PersonSearchTrainer):
    """The person-search trainer (``ian_d2.engine.PersonSearchTrainer``): DefaultTrainer with the
    person-search mapper and evaluator, DDP on GPUs or CPUs, atomic checkpoints."""


def check_weights_available(weights: str) -> None:
    """Fail early, with what to do, when initial weights cannot be fetched (offline machines)."""
    if not weights or os.path.exists(weights):
        return
    try:
        PathManager.get_local_path(weights)
    except Exception as e:  # iopath raises URLError/OSError/HTTPError depending on the failure
        cache = os.path.expanduser(
            os.getenv("FVCORE_CACHE", os.path.join("~", ".torch", "iopath_cache"))
        )
        raise RuntimeError(
            f"Could not fetch MODEL.WEIGHTS='{weights}' ({type(e).__name__}: {e}). Offline, "
            f"download it elsewhere and either set MODEL.WEIGHTS to the local .pkl/.pth file, or "
            f"place it under '{cache}' at the path iopath uses for that URL "
            "(detectron2://X maps to https://dl.fbaipublicfiles.com/detectron2/X). "
            "For random initialisation set MODEL.WEIGHTS ''."
        ) from e


def load_config(args):
    """The config from the file and the command-line overrides (not frozen, no side effect)."""
    return get_ian_cfg(args.config_file, args.opts)


def setup(args):
    """
    Register ian_d2's parts, create the config, resolve what the model reads from the training
    set, freeze, and run Detectron2's ``default_setup`` (logging, seeds, OUTPUT_DIR/config.yaml).

    ``MODEL.REID.NUM_PIDS 0`` is resolved here, once (``ian_d2.modeling.resolve_num_pids``: the
    training set, else the checkpoint of ``--eval-only``), and written into the config, so that
    the config saved beside the checkpoints builds the model without the training set.
    """
    ian_d2.register_all()
    cfg = load_config(args)
    if cfg.MODEL.REID.NUM_PIDS <= 0:
        cfg.MODEL.REID.NUM_PIDS = resolve_num_pids(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        PersonSearchCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    if not (args.resume and os.path.exists(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))):
        check_weights_available(cfg.MODEL.WEIGHTS)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    if not args.eval_only:  # a batch that cannot be split: say so before starting processes
        try:
            check_batch_size(load_config(args), args.num_gpus * args.num_machines)
        except ValueError as e:
            raise SystemExit(f"train_net.py: {e}") from None
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
