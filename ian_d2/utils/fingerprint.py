"""What identifies a model: the hashes of its output-deciding config and of its weights, and the
variant of its embeddings (the box they are pooled on, the numeric precision).

Shared by the search index (:mod:`ian_d2.search`: an index records the fingerprint of the model
that built it and refuses another model) and the export (:mod:`ian_d2.export`: an export carries
the fingerprint of the model it was exported from, so that an exported model's index is the eager
model's index); neither package imports the other. The old path
``ian_d2.search.fingerprint`` still imports these names.
"""

import json
import os
from typing import Dict

from ..utils.hashing import sha256_file, sha256_text

__all__ = [
    "DEFAULT_VARIANT",
    "VARIANT_FLAG",
    "check_variant",
    "config_canonical_json",
    "config_sha256",
    "exported_variant",
    "inference_variant",
    "model_config_yaml",
    "model_fingerprint",
]

#: How a model's embeddings were computed, beside its fingerprint: the box they are pooled on
#: (``MODEL.ROI_HEADS.EMBED_BOXES``) and the numeric precision of the model that ran
#: ("fp32", "bf16", "int8"). What an index or export without the record was built with.
DEFAULT_VARIANT = {"embed_boxes": "proposals", "precision": "fp32"}
#: The command-line flag that accepts a model of another variant than an index's.
VARIANT_FLAG = "--allow-variant-mismatch"


def model_config_yaml(cfg) -> str:
    """The part of a config that decides what the model outputs for an image: ``MODEL`` (less
    its weights path and device) and the test-time ``INPUT`` settings, as YAML."""
    from detectron2.config import CfgNode

    c = cfg.clone()
    c.defrost()
    c.MODEL.WEIGHTS = ""
    c.MODEL.DEVICE = "cpu"
    # a test-time choice of the same weights, recorded as the variant (inference_variant), so
    # that the hashes of indexes and exports made before the key existed stay valid
    c.MODEL.ROI_HEADS.pop("EMBED_BOXES", None)
    node = CfgNode({"MODEL": c.MODEL, "INPUT": c.INPUT})
    for key in (
        "MIN_SIZE_TRAIN",
        "MAX_SIZE_TRAIN",
        "MIN_SIZE_TRAIN_SAMPLING",
        "RANDOM_FLIP",
        "CROP",
        "COLOR_JITTER",
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


def inference_variant(cfg=None, precision: str = "fp32", embed_boxes=None) -> Dict[str, str]:
    """
    The variant of a model's embeddings: ``{"embed_boxes", "precision"}``.

    Args:
        cfg: a config (its ``MODEL.ROI_HEADS.EMBED_BOXES``); None: ``embed_boxes`` or the default.
        precision: "fp32" (the eager model), "bf16" or "int8" (exports).
        embed_boxes: overrides ``cfg``'s.
    """
    if embed_boxes is None:
        embed_boxes = DEFAULT_VARIANT["embed_boxes"]
        if cfg is not None:
            embed_boxes = cfg.MODEL.ROI_HEADS.get("EMBED_BOXES", embed_boxes)
    return {"embed_boxes": str(embed_boxes), "precision": str(precision)}


def exported_variant(export_manifest: Dict) -> Dict[str, str]:
    """The :func:`inference_variant` of an export (its ``ian_d2_export.json``)."""
    return inference_variant(
        precision=export_manifest.get("precision", DEFAULT_VARIANT["precision"]),
        embed_boxes=export_manifest.get("embed_boxes", DEFAULT_VARIANT["embed_boxes"]),
    )


def check_variant(
    stored: Dict[str, str], given: Dict[str, str], where: str, allow: bool = False
) -> None:
    """
    Refuse a model whose variant (:func:`inference_variant`) differs from what built ``where``.

    Args:
        stored: the variant of the index (missing keys: :data:`DEFAULT_VARIANT`).
        given: the variant of the model about to embed queries or images.
        where: what the stored variant belongs to, for the message ("index 'x'").
        allow: only log the difference (the user said so with :data:`VARIANT_FLAG`).

    Raises:
        ValueError: naming each difference, unless ``allow``.
    """
    import logging

    stored = dict(DEFAULT_VARIANT, **(stored or {}))
    given = dict(DEFAULT_VARIANT, **(given or {}))
    diff = [
        f"{k} {given[k]!r} vs {stored[k]!r}"
        for k in sorted(DEFAULT_VARIANT)
        if given[k] != stored[k]
    ]
    if not diff:
        return
    text = f"{where} was built with another inference variant: " + "; ".join(diff)
    if allow:
        logging.getLogger(__name__).warning("%s (accepted: %s)", text, VARIANT_FLAG)
        return
    raise ValueError(
        text + f". Similarities across variants are not those of one model: use a model of the "
        f"index's variant (the export of that precision, MODEL.ROI_HEADS.EMBED_BOXES "
        f"{stored['embed_boxes']}), or pass {VARIANT_FLAG} to accept it."
    )
