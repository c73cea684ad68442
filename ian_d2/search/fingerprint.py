"""What identifies a model: the hashes of its output-deciding config and of its weights.

A search index records the fingerprint of the model that built it (and refuses another model);
an export (:mod:`ian_d2.export`) carries the fingerprint of the model it was exported from, so
that an exported model's index is the eager model's index.
"""

import json
import os
from typing import Dict

from ..utils.hashing import sha256_file, sha256_text

__all__ = ["config_canonical_json", "config_sha256", "model_config_yaml", "model_fingerprint"]


def model_config_yaml(cfg) -> str:
    """The part of a config that decides what the model outputs for an image: ``MODEL`` (less
    its weights path and device) and the test-time ``INPUT`` settings, as YAML."""
    from detectron2.config import CfgNode

    c = cfg.clone()
    c.defrost()
    c.MODEL.WEIGHTS = ""
    c.MODEL.DEVICE = "cpu"
    node = CfgNode({"MODEL": c.MODEL, "INPUT": c.INPUT})
    for key in (
        "MIN_SIZE_TRAIN",
        "MAX_SIZE_TRAIN",
        "MIN_SIZE_TRAIN_SAMPLING",
        "RANDOM_FLIP",
        "CROP",
    ):
        node.INPUT.pop(key, None)
    return node.dump()


def config_canonical_json(yaml_text: str) -> str:
    """A config's YAML as JSON with sorted keys, so that equal configs hash equally (YAML dumps
    may share anchors or order keys differently).

    The JSON keeps :func:`json.dumps`'s default separators (``", "``, ``": "``), not the compact
    ones of :func:`ian_d2.utils.hashing.canonical_json`: the ``config_sha256`` recorded in
    existing indexes and exports is the digest of this text.
    """
    import yaml

    return json.dumps(_plain(yaml.safe_load(yaml_text)), sort_keys=True)


def _plain(x):
    """``x`` with string dict keys and lists for tuples (JSON's types)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def config_sha256(yaml_text: str) -> str:
    """Hex SHA-256 of :func:`config_canonical_json` of a :func:`model_config_yaml` text."""
    return sha256_text(config_canonical_json(yaml_text))


def model_fingerprint(cfg) -> Dict[str, object]:
    """
    What identifies the model that produced the embeddings of an index.

    Returns:
        dict: ``config_sha256``, ``weights`` (absolute path), ``weights_sha256``, ``embed_dim``
        and ``config_yaml`` (:func:`model_config_yaml`).

    Raises:
        ValueError: ``MODEL.WEIGHTS`` is empty or not a local file (an index of a randomly
            initialised model would be meaningless, and could not be queried again).
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.WEIGHTS is empty: a search index needs a trained model (a .pth checkpoint)"
        )
    if not os.path.isfile(weights):
        raise ValueError(f"MODEL.WEIGHTS '{weights}' does not exist (a local .pth/.pkl file)")
    yaml = model_config_yaml(cfg)
    return {
        "config_sha256": config_sha256(yaml),
        "weights": os.path.abspath(weights),
        "weights_sha256": sha256_file(weights, cache=True),
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "config_yaml": yaml,
    }
