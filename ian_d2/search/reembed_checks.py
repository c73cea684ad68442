"""What ``reembed`` checks before it writes anything: the folders, the footage, the model.

* :func:`check_folders`: the new index is not the index, nor inside it, nor around it.
* :func:`index_sources` / :func:`check_sources`: the index's source files, all still there.
* :func:`detector_differences` / :func:`check_same_detector`: the new model has the index's
  detector (its config less the identity-embedding and training-only keys, and its embedding
  size); only its embeddings may differ.
* :func:`check_belongs`: a new index folder already there is this re-embedding's (resume).
"""

import os
from typing import Dict, List, Sequence, Tuple

from ..utils.fingerprint import model_config_yaml
from .shards import read_shard_item_records

__all__ = [
    "IGNORED_KEYS",
    "check_belongs",
    "check_folders",
    "check_same_detector",
    "check_sources",
    "detector_differences",
    "index_sources",
]

#: Config keys (and key prefixes) that do not change the detections of a model: the identity
#: embedding (``MODEL.REID``), training-only losses (``MODEL.CENTER_LOSS``), the weights file
#: and the device. Keys ending in ``_TRAIN`` (training-time proposals) are left out as well.
IGNORED_KEYS = ("MODEL.WEIGHTS", "MODEL.DEVICE", "MODEL.REID", "MODEL.CENTER_LOSS")
_MISSING = "<absent>"


def check_folders(index_dir: str, out_dir: str) -> None:
    """
    Raises:
        ValueError: ``out_dir`` is ``index_dir``, inside it, or holds it.
    """
    index = os.path.realpath(index_dir)
    out = os.path.realpath(out_dir)
    if out == index:
        raise ValueError(f"--out '{out_dir}' is the index itself: the index is never modified")
    if out.startswith(index + os.sep):
        raise ValueError(
            f"--out '{out_dir}' is inside the index '{index_dir}': choose a folder outside it"
        )
    if index.startswith(out + os.sep):
        raise ValueError(f"--out '{out_dir}' holds the index '{index_dir}': choose another folder")


def index_sources(shards: Sequence[str]) -> Tuple[List[str], int]:
    """(the distinct source files of ``shards`` in their order of appearance, the number of
    items they cover), from the shards' metadata."""
    seen: Dict[str, None] = {}
    items = 0
    for path in shards:
        for item, _, _ in read_shard_item_records(path):
            seen.setdefault(item.source, None)
            items += 1
    return list(seen), items


def check_sources(index_dir: str, sources: Sequence[str]) -> None:
    """
    Raises:
        ValueError: source files of the index that no longer exist (the first one named, and
            how many).
    """
    missing = [s for s in sources if not os.path.isfile(s)]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(sources)} source files of index '{index_dir}' no longer "
            f"exist; the first: '{missing[0]}'. The index holds each file's absolute path: move "
            "the footage back to where it was indexed, then run the command again"
        )


def _flatten(node, prefix: str = "") -> Dict[str, object]:
    """{dotted key: value} of a nested dict (lists and scalars are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: Dict[str, object] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _ignored(key: str) -> bool:
    return key.endswith("_TRAIN") or any(key == k or key.startswith(k + ".") for k in IGNORED_KEYS)


def detector_differences(index_yaml: str, cfg) -> List[str]:
    """
    The detector settings in which the model of ``cfg`` differs from the index's model.

    Args:
        index_yaml: the index's model config (its manifest's ``model.config_yaml``).
        cfg: the new model's config.

    Returns:
        list[str]: ``"KEY: <new value> (the index: <its value>)"``, sorted by key; empty when
        the two configs agree on every key but :data:`IGNORED_KEYS`.
    """
    import yaml

    mine = _flatten(yaml.safe_load(index_yaml) or {})
    new = _flatten(yaml.safe_load(model_config_yaml(cfg)) or {})
    out = []
    for key in sorted(set(mine) | set(new)):
        a, b = mine.get(key, _MISSING), new.get(key, _MISSING)
        if not _ignored(key) and a != b:
            out.append(f"{key}: {b!r} (the index: {a!r})")
    return out


def check_same_detector(index_dir: str, index_model: Dict, cfg, embed_dim: int) -> None:
    """
    Raises:
        ValueError: the new model's detector or embedding size differs from the index's model,
            naming each difference (``--redetect`` indexes the footage again instead).
    """
    problems = detector_differences(str(index_model.get("config_yaml", "")), cfg)
    if int(embed_dim) != int(index_model["embed_dim"]):
        problems.insert(0, f"embedding size {embed_dim} (the index: {index_model['embed_dim']})")
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise ValueError(
            f"the model differs from the detector of index '{index_dir}' in {len(problems)} "
            f"setting(s): {shown}. Its detections would not be this model's: pass --redetect to "
            "index the footage again with it (only MODEL.WEIGHTS, MODEL.REID.* and "
            "MODEL.CENTER_LOSS.* may differ for a re-embedding)"
        )


def _describe(record: Dict) -> str:
    return (
        f"index '{record.get('index')}' with model weights '{record.get('model_weights')}' "
        f"(sha256 {str(record.get('model_weights_sha256'))[:12]}, config sha256 "
        f"{str(record.get('model_config_sha256'))[:12]}"
        f"{', --redetect' if record.get('redetect') else ''})"
    )


KEYS = (
    "index",
    "config_sha256",
    "weights_sha256",
    "model_config_sha256",
    "model_weights_sha256",
    "redetect",
)


def check_belongs(out_dir: str, stored: Dict, wanted: Dict) -> None:
    """
    Raises:
        ValueError: ``out_dir`` holds the re-embedding ``stored`` of another index, of another
            model or mode than ``wanted`` (both named).
    """
    if any(stored.get(k) != wanted.get(k) for k in KEYS):
        raise ValueError(
            f"--out '{out_dir}' holds a re-embedding of {_describe(stored)}, not of "
            f"{_describe(wanted)}: choose another --out (or delete '{out_dir}')"
        )
