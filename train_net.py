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
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.data import build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils.file_io import PathManager

import ian_d2  # noqa: F401  (registers datasets, heads and meta-architectures)
from ian_d2.config import add_ian_config
from ian_d2.data import PersonSearchDatasetMapper
from ian_d2.evaluation import PersonSearchEvaluator

logger = logging.getLogger("ian_d2")


class Trainer(DefaultTrainer):
    """DefaultTrainer with the person-search mapper and evaluator."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=PersonSearchDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=PersonSearchDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type != "person_search":
            raise NotImplementedError(
                f"no evaluator for dataset '{dataset_name}' (evaluator_type={evaluator_type!r}); "
                "person-search test sets are the registered '*_test' splits"
            )
        return PersonSearchEvaluator(dataset_name, cfg, True, output_folder)


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


def setup(args):
    """Create the config from the file and the command-line overrides."""
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
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
