"""Embeddings of the footage's detections with the current model (a round's pseudo labels).

Each item with detections is read once (its image file, :mod:`.frames`), and its detections'
stored boxes are embedded through :func:`ian_d2.modeling.query.extract_query_embeddings`: the
same pooling, res5 and embedding head as the gallery path. Rows are split over the processes of
``launch`` (item i on rank i mod world size) and gathered, so every process holds all of them.

Shape shorthand: N detections, D embedding dimension.
"""

import logging
import time
from typing import Sequence

import numpy as np
import torch

from .footage import Footage

__all__ = ["embed_footage"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def embed_footage(model, cfg, footage: Footage, image_files: Sequence[str]) -> np.ndarray:
    """
    [N, D] float32 embeddings of every detection of ``footage`` by ``model`` (eval mode is set
    for the call and restored).

    Args:
        model: the person-search model (or its DDP wrapper).
        cfg: its config (test-time input size and format).
        footage: the detections and their items.
        image_files: [I] the image file of each item.
    """
    from detectron2.utils import comm

    from ..modeling.query import extract_query_embeddings
    from ..search.indexer import ImageToInput
    from ..search.sources import read_image
    from ..utils.comm import all_gather_rows

    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    to_input = ImageToInput(cfg)
    rank, world = comm.get_rank(), comm.get_world_size()
    rows_of = {}
    for row, key in enumerate(footage.frame_keys.tolist()):
        rows_of.setdefault(key, []).append(row)
    keys = sorted(rows_of)[rank::world]
    d = footage.embeddings.shape[1]
    mine_rows, mine_emb = [], []
    start = time.perf_counter()
    for i, key in enumerate(keys):
        rows = rows_of[key]
        inp = to_input(read_image(image_files[key]))
        emb = extract_query_embeddings(net, [inp], [footage.boxes[rows]])
        mine_rows.extend(rows)
        mine_emb.append(emb.float().cpu())
        if (i + 1) % 200 == 0 or i + 1 == len(keys):
            rate = (i + 1) / max(time.perf_counter() - start, 1e-9)
            logger.info(
                "Embedded %d/%d items on this process (ETA %.0f s)",
                i + 1,
                len(keys),
                (len(keys) - i - 1) / rate,
            )
    net.train(was_training)
    device = next(net.parameters()).device  # the collective's device (gloo: CPU, NCCL: CUDA)
    rows_t = torch.as_tensor(mine_rows, dtype=torch.float64).reshape(-1, 1).to(device)
    emb_t = (torch.cat(mine_emb) if mine_emb else torch.zeros(0, d)).to(device, torch.float64)
    rows_t, emb_t = all_gather_rows(rows_t, emb_t)
    out = np.zeros((len(footage), d), np.float32)
    out[rows_t[:, 0].long().cpu().numpy()] = emb_t.float().cpu().numpy()
    return out
