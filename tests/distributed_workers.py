"""Worker functions of the multi-process tests, started by Detectron2's ``launch``.

``launch`` spawns fresh interpreters that import these functions by module name
(``tests.distributed_workers``: the spawned processes get the parent's ``sys.path``, where pytest
put the repository root), so they live in a module of their own (the test module would be
collected twice). On a machine without GPU, ``launch`` initialises torch.distributed with the
gloo backend: the processes are CPU processes.
"""

import json
import os

import torch
from detectron2.data import DatasetCatalog
from detectron2.utils import comm

from ian_d2.data import register_person_search_dataset
from ian_d2.modeling.batch_norm import SyncBatchNorm1d
from ian_d2.modeling.losses import CenterLoss, OIMLoss, RandomSamplingSoftmaxLoss

NUM_PIDS = 7
EMBED_DIM = 8
NUM_ITERS = 4

#: Buffers of the identity memories and of the embedding's batch norm, by state-dict key.
MEMORY_KEYS = (
    "roi_heads.center_loss.centers",
    "roi_heads.reid_loss.lut",
    "roi_heads.reid_loss.queue",
    "roi_heads.reid_loss.queue_ptr",
    "roi_heads.reid_head.norm.running_mean",
    "roi_heads.reid_head.norm.running_var",
)


def rank_batch(iteration: int, rank: int):
    """
    The boxes of process ``rank`` at ``iteration``: a different number per process (none on
    rank 1 at iteration 2), identities shared across processes, unlabeled persons (-1) and
    background (-2). Returns features [n, EMBED_DIM] (L2-normalised) and labels [n].
    """
    sizes = {0: [5, 4, 6, 3], 1: [3, 5, 0, 4]}[rank]
    n = sizes[iteration]
    g = torch.Generator().manual_seed(100 * iteration + rank)
    feats = torch.nn.functional.normalize(torch.randn(n, EMBED_DIM, generator=g), dim=1)
    labels = torch.randint(-2, NUM_PIDS, (n,), generator=g)
    if n:
        labels[0] = 3  # identity 3 on every process with boxes: updated from several ranks
    return feats, labels


def build_memory_modules():
    """Center loss, OIM and RSS (sampled softmax smaller than the classes) and a SyncBN."""
    torch.manual_seed(0)
    modules = {
        "center": CenterLoss(num_pids=NUM_PIDS, embed_dim=EMBED_DIM, alpha=0.5),
        "oim": OIMLoss(num_pids=NUM_PIDS, embed_dim=EMBED_DIM, cq_size=6, momentum=0.5),
        "rss": RandomSamplingSoftmaxLoss(num_pids=NUM_PIDS, embed_dim=EMBED_DIM, sample_size=5),
        "bn": SyncBatchNorm1d(EMBED_DIM),
    }
    # OIM's table starts at random unit rows, so that the momentum updates are not trivial
    modules["oim"].lut.copy_(torch.nn.functional.normalize(torch.randn(NUM_PIDS, EMBED_DIM)))
    for m in modules.values():
        m.train()
    return modules


def run_memory_modules(modules, batches):
    """
    Feed ``batches`` (one (feats, labels) per iteration) to every module.

    Returns:
        dict: final buffers (``center.centers``, ``oim.lut`` ...) and, per iteration, the RSS
        class subset (``rss.classes.<it>``) and the batch-norm output (``bn.out.<it>``).
    """
    out = {}
    rss = modules["rss"]
    sample = rss.sample_classes
    for it, (feats, labels) in enumerate(batches):
        classes = []
        rss.sample_classes = lambda t: classes.append(sample(t)) or classes[-1]
        for name in ("center", "oim", "rss"):
            modules[name](feats, labels)
        rss.sample_classes = sample
        out[f"rss.classes.{it}"] = classes[0]
        out[f"bn.out.{it}"] = modules["bn"](feats * 3.0 + 1.0).detach()
    for name, m in modules.items():
        for key, value in m.state_dict().items():
            out[f"{name}.{key}"] = value.clone()
    return out


def teardown_worker(out_dir: str) -> None:
    """Runs a collective; at interpreter exit, records whether torch.distributed was still
    initialised (``exit<r>.json``): :func:`ian_d2.utils.comm.launch` must have left it."""
    import atexit

    import torch.distributed as dist

    rank = comm.get_rank()
    total = torch.ones(1)
    dist.all_reduce(total)

    def _record():
        with open(os.path.join(out_dir, f"exit{rank}.json"), "w") as f:
            json.dump({"sum": float(total), "initialized": dist.is_initialized()}, f)

    atexit.register(_record)


def adapt_worker(root: str, weights: str, index: str, out_dir: str) -> None:
    """``ian_d2.adapt`` on this process (the tiny setting of tests/adapt/test_adapt.py); after
    each round, saves this process's model state to ``rank<r>.round<k>.pth``."""
    from ian_d2.adapt import rounds
    from tests.adapt.test_adapt import adapt_cfg

    names = register_person_search_dataset("cuhk_sysu", "adapt2_src", root)
    from ian_d2.data.datasets.builtin import get_num_train_pids

    cfg = adapt_cfg(weights, get_num_train_pids(names["train"]), names["train"])
    train_round = rounds._train_round
    done = []

    def _saving(rcfg):
        trainer = train_round(rcfg)
        model = getattr(trainer.model, "module", trainer.model)
        path = os.path.join(out_dir, f"rank{comm.get_rank()}.round{len(done)}.pth")
        torch.save(model.state_dict(), path)
        done.append(path)
        return trainer

    rounds._train_round = _saving
    rounds.adapt(cfg, index, os.path.join(out_dir, "adapted"))


def memory_worker(out_dir: str) -> None:
    """Each process feeds its own boxes; saves what it ends with to ``rank<r>.pth``."""
    rank = comm.get_rank()
    batches = [rank_batch(it, rank) for it in range(NUM_ITERS)]
    state = run_memory_modules(build_memory_modules(), batches)
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pth"))


def crop_worker(out_dir: str) -> None:
    """
    One DDP training step of the step-1 CropClassifier where rank 1 has NO crop (nobody
    labeled): every process must still join the collectives (SyncBN, RSS subset); saves the
    averaged gradients.
    """
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from ian_d2.engine import create_ddp_model
    from ian_d2.utils.testing import quick_cfg, synthetic_inputs

    rank = comm.get_rank()
    opts = ["MODEL.REID.PRETRAIN_CROPS.NUM_BG_PER_IMAGE", -1]
    cfg = quick_cfg("quick_schedules/step1_crop_pretrain_R18_GN_instant_test.yaml", opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    ddp = create_ddp_model(model)
    inputs = synthetic_inputs(seed=rank)
    if rank == 1:
        for x in inputs:
            x["instances"].gt_pids[:] = -1
    with EventStorage():
        losses = ddp(inputs)
        sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save(grads, os.path.join(out_dir, f"rank{rank}.pth"))


def _register(root: str, prefix: str) -> None:
    from ian_d2.data import register_person_search_dataset

    if f"{prefix}_train" not in DatasetCatalog.list():
        register_person_search_dataset("cuhk_sysu", prefix, root)


def train_worker(train_net_path: str, root: str, prefix: str, argv, out_dir: str) -> None:
    """``train_net.py ARGV`` in this process; then every process saves its model state."""
    from tests.repo_scripts import load_script

    _register(root, prefix)
    train_net = load_script(os.path.basename(train_net_path), "train_net")
    args = train_net.default_argument_parser().parse_args(argv)
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = getattr(trainer.model, "module", trainer.model)
    rank = comm.get_rank()
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))


def eval_worker(train_net_path: str, root: str, prefix: str, argv, out_file: str) -> None:
    """``train_net.py --eval-only ARGV``; the main process writes the results as JSON."""
    from tests.repo_scripts import load_script

    _register(root, prefix)
    train_net = load_script(os.path.basename(train_net_path), "train_net")
    res = train_net.main(train_net.default_argument_parser().parse_args(argv))
    if comm.is_main_process():
        with open(out_file, "w") as f:
            json.dump(res, f)
