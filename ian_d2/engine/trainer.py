"""The person-search trainer: Detectron2's DefaultTrainer, correct on any number of processes.

What differs from ``DefaultTrainer``:

* the model is wrapped in ``DistributedDataParallel`` by :func:`create_ddp_model`, which also
  works for CPU models (Detectron2's passes ``device_ids=[local_rank]``, which DDP rejects for a
  CPU module), so that ``--num-gpus 2`` runs on a machine without GPU (gloo backend);
* the total batch is checked against the number of processes with an error that says what to
  set (:func:`check_batch_size`), before Detectron2's assertion would stop the run;
* checkpoints are written atomically (:class:`PersonSearchCheckpointer`);
* the data loaders and the evaluator are the person-search ones.

Identity memories (center-loss centers, OIM lookup table and queue) stay identical on every
process because the losses update them from the boxes of all processes (``ian_d2.utils.comm``);
DDP runs with ``broadcast_buffers=False`` as in Detectron2.
"""

import logging
import os
import weakref

from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..data import PersonSearchDatasetMapper
from ..evaluation import PersonSearchEvaluator
from .checkpoint import PersonSearchCheckpointer

__all__ = [
    "PersonSearchTrainer",
    "create_ddp_model",
    "check_batch_size",
    "crop_training_set",
    "per_process_batch",
]

logger = logging.getLogger(__name__)


def create_ddp_model(model, **kwargs):
    """
    Wrap ``model`` in ``DistributedDataParallel`` when more than one process takes part.

    Args:
        model (nn.Module): the model, on its device (CUDA or CPU).
        kwargs: arguments of ``DistributedDataParallel``. ``broadcast_buffers`` defaults to
            False (the identity memories are synchronised by the losses themselves);
            ``device_ids`` defaults to the local GPU for a CUDA model and None for a CPU model.

    Returns:
        nn.Module: ``model`` itself with one process, else its DDP wrapper.
    """
    if comm.get_world_size() == 1:
        return model
    kwargs.setdefault("broadcast_buffers", False)
    if "device_ids" not in kwargs:
        device = next(model.parameters()).device
        kwargs["device_ids"] = [comm.get_local_rank()] if device.type == "cuda" else None
    return DistributedDataParallel(model, **kwargs)


def per_process_batch(cfg, world_size: int) -> float:
    """
    Images per process and iteration that ``cfg`` gives on ``world_size`` processes, after
    Detectron2's ``SOLVER.REFERENCE_WORLD_SIZE`` scaling (non-integer if it cannot be split).
    """
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference > 0:
        return cfg.SOLVER.IMS_PER_BATCH / reference
    return cfg.SOLVER.IMS_PER_BATCH / world_size


def check_batch_size(cfg, world_size: int) -> None:
    """
    Raise a ValueError, saying what to set, when the training batch of ``cfg`` cannot be split
    over ``world_size`` processes.

    With ``SOLVER.REFERENCE_WORLD_SIZE = R > 0`` (every config of ian_d2), the config describes
    R processes with ``IMS_PER_BATCH / R`` images each; on N processes Detectron2 multiplies
    the batch and learning rate by N / R and divides the iterations by it (linear scaling rule).
    With ``REFERENCE_WORLD_SIZE = 0``, ``IMS_PER_BATCH`` is the total batch, split evenly.
    """
    ims = cfg.SOLVER.IMS_PER_BATCH
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference < 0:
        raise ValueError(f"SOLVER.REFERENCE_WORLD_SIZE={reference} must be >= 0")
    if reference > 0 and ims % reference != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={ims} is not a multiple of SOLVER.REFERENCE_WORLD_SIZE="
            f"{reference}: the config must give every one of its {reference} reference processes "
            f"the same number of images. Set SOLVER.IMS_PER_BATCH to a multiple of {reference}."
        )
    if reference == 0 and ims % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={ims} images per iteration cannot be split over {world_size} "
            f"processes (--num-gpus x --num-machines). Either set SOLVER.REFERENCE_WORLD_SIZE to "
            f"the number of processes the config was written for (e.g. SOLVER.REFERENCE_WORLD_SIZE "
            f"1: {ims} images per process, batch, learning rate and schedule scaled to "
            f"{world_size} processes), or set SOLVER.IMS_PER_BATCH to a multiple of {world_size} "
            "and scale SOLVER.BASE_LR with it."
        )


def crop_training_set(cfg):
    """
    The training records of step 1 (``CropClassifier``): the images with at least one person
    to crop (a labeled one, or an unlabeled one with ``PRETRAIN_CROPS.INCLUDE_UNLABELED``), so
    that every image of a batch gives its person and background crops.
    """
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=0,
        proposal_files=None,
    )
    lowest = -1 if cfg.MODEL.REID.PRETRAIN_CROPS.INCLUDE_UNLABELED else 0
    kept = [d for d in dicts if any(a.get("person_id", -1) >= lowest for a in d["annotations"])]
    logger.info(
        f"Crop pre-training: {len(kept)} of {len(dicts)} training images have a person to crop"
    )
    if not kept:
        raise ValueError(f"No training image of {cfg.DATASETS.TRAIN} has a person to crop")
    return kept


class PersonSearchTrainer(DefaultTrainer):
    """
    ``DefaultTrainer`` with the person-search mapper and evaluator, CPU-capable DDP, a batch
    check with a clear error, and atomic checkpoints (see the module docstring).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ wraps the model with Detectron2's create_ddp_model, which
        # fails for CPU models: the same construction, with this module's wrapper.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        world_size = comm.get_world_size()
        check_batch_size(cfg, world_size)
        cfg = self.auto_scale_workers(cfg, world_size)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PersonSearchCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg):
        mapper = PersonSearchDatasetMapper(cfg, True)
        if cfg.MODEL.META_ARCHITECTURE != "CropClassifier":
            return build_detection_train_loader(cfg, mapper=mapper)
        return build_detection_train_loader(cfg, mapper=mapper, dataset=crop_training_set(cfg))

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
