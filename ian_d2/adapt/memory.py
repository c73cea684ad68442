"""The identity memories of a round: source identities kept, pseudo identities started from
their cluster centroids.

The identity loss (RSS classifier or OIM lookup table) and the center loss hold one row per
training identity. In a round with K pseudo identities the model has S + K identities: rows
0..S-1 are the source identities (kept from the previous model, so the source is not
forgotten) and rows S..S+K-1 the pseudo identities, started from the mean embedding of their
detections (L2-normalised): the memory of a pseudo identity starts where its members are, as
SpCL and DAPS start their cluster memories. The RSS classifier's background row is kept.

:func:`round_state` writes these rows into a copy of the previous model's state dict; the round
trains from that state (every process loads the same file).

Shape shorthand: S source identities, K pseudo identities, D embedding dimension.
"""

from typing import Dict, Tuple

import numpy as np
import torch

__all__ = ["IDENTITY_KEYS", "NO_IDENTITY_MEMORY", "centroids", "round_state"]

#: Why a model cannot be adapted when it has none of :data:`IDENTITY_KEYS`.
NO_IDENTITY_MEMORY = (
    "the model has no identity memory (RSS classifier, OIM lookup table or center-loss "
    "centers): adapt a person-search model trained with labels"
)

#: The identity rows of a model's state dict, and the rows past the identities (the RSS
#: classifier's background class).
IDENTITY_KEYS = {
    "roi_heads.reid_loss.classifier.weight": 1,
    "roi_heads.reid_loss.classifier.bias": 1,
    "roi_heads.reid_loss.lut": 0,
    "roi_heads.center_loss.centers": 0,
}


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """[K, D] float32 L2-normalised mean embedding of each pseudo identity 0..K-1.

    Args:
        embeddings: [N, D] embeddings of the detections.
        labels: [N] pseudo identity of each (-1 outlier: not counted).
        k: K; every identity must have a member.
    """
    d = embeddings.shape[1]
    sums = np.zeros((k, d), np.float64)
    counts = np.zeros(k, np.int64)
    keep = labels >= 0
    np.add.at(sums, labels[keep], embeddings[keep])
    np.add.at(counts, labels[keep], 1)
    if (counts == 0).any():
        raise ValueError(f"pseudo identity {int(np.argmin(counts))} has no detection")
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def _rows(tensor: torch.Tensor, s: int, extra: int, new: torch.Tensor) -> torch.Tensor:
    """The first ``s`` rows of ``tensor``, then ``new``, then its last ``extra`` rows."""
    parts = [tensor[:s], new.to(tensor.dtype)]
    if extra:
        parts.append(tensor[tensor.shape[0] - extra :])
    return torch.cat(parts, 0)


def round_state(
    state: Dict[str, torch.Tensor], num_source: int, pseudo_centroids: np.ndarray
) -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    """
    The state dict a round starts from.

    Args:
        state: the previous model's state dict (a source model, or the previous round's, whose
            rows past ``num_source`` are the previous round's pseudo identities: dropped).
        num_source: S.
        pseudo_centroids: [K, D] :func:`centroids` of this round's pseudo identities.

    Returns:
        (state, rows): the new state dict (identity tensors with S + K rows, + the background
        row of the RSS classifier), and ``{key: rows}`` of the identity tensors written.
    """
    new = dict(state)
    c = torch.from_numpy(np.ascontiguousarray(pseudo_centroids))
    rows = {}
    for key, extra in IDENTITY_KEYS.items():
        if key not in state:
            continue
        t = state[key]
        if key.endswith("classifier.weight"):
            # a classifier row as long as the source rows, pointing at the centroid
            scale = t[:num_source].norm(dim=1).mean()
            fresh = c * scale
        elif key.endswith("classifier.bias"):
            fresh = t[:num_source].mean().expand(c.shape[0]).clone()
        else:
            fresh = c
        new[key] = _rows(t, num_source, extra, fresh)
        rows[key] = int(new[key].shape[0])
    if not rows:
        raise ValueError(NO_IDENTITY_MEMORY)
    return new, rows
