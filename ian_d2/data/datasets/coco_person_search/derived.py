"""The protocol derived from a test JSON that comes without one, and where it is saved (beside
the JSON, or in the cache folder), rewritten only when the JSON's content changes."""

import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

from ....utils.hashing import sha256_file
from .._common import DatasetFormatError, cache_dir
from .protocol import PROTOCOL_FORMAT, PROTOCOL_VERSION, write_protocol
from .values import xyxy_to_xywh

__all__ = ["DERIVED_SUFFIX", "derive_protocol", "derived_protocol_path", "ensure_derived_protocol"]

logger = logging.getLogger(__name__)

DERIVED_SUFFIX = ".derived_protocol.json"


def derive_protocol(gallery_records: Sequence[dict], json_file: str, sha256: str) -> dict:
    """The default protocol of a test split, as a JSON-ready dict.

    Every labeled identity seen in at least two images gets one query: its first box in the
    first image (record order) that shows it; queries sorted by person_id; gallery "all".
    """
    first: Dict[int, Tuple[str, List[float]]] = {}
    seen: Dict[int, set] = {}
    for r in gallery_records:
        for a in r["annotations"]:
            pid = int(a["person_id"])
            if pid < 0:
                continue
            seen.setdefault(pid, set()).add(r["image_id"])
            first.setdefault(pid, (r["image_id"], a["bbox"]))
    queries = [
        {
            "image": first[pid][0],
            "box": xyxy_to_xywh(first[pid][1]),
            "person_id": pid,
            "gallery": "all",
        }
        for pid in sorted(seen)
        if len(seen[pid]) >= 2
    ]
    return {
        "format": PROTOCOL_FORMAT,
        "version": PROTOCOL_VERSION,
        "derived_from": {
            "json_file": os.path.abspath(json_file),
            "sha256": sha256,
            "rule": "one query per labeled identity seen in >= 2 images (its first box in the "
            "first image showing it); gallery = every other test image",
        },
        "queries": queries,
    }


def _cache_dir() -> str:
    """``$IAN_D2_CACHE/protocols`` (default ``~/.cache/ian_d2/protocols``; also when the
    annotation cache is switched off with ``IAN_D2_CACHE=off``: a derived protocol must be
    saved somewhere)."""
    folder = cache_dir() or os.path.expanduser(os.path.join("~", ".cache", "ian_d2"))
    return os.path.join(folder, "protocols")


def derived_protocol_path(json_file: str) -> str:
    """Where the derived protocol of ``json_file`` is saved: ``<name>.derived_protocol.json``
    beside it when its folder is writable, else in the cache folder (``$IAN_D2_CACHE``, default
    ``~/.cache/ian_d2``, then ``protocols/``) under a name that includes a hash of its path."""
    path = os.path.abspath(json_file)
    folder, base = os.path.split(path)
    stem = base[:-5] if base.endswith(".json") else base
    if os.access(folder, os.W_OK):
        return os.path.join(folder, stem + DERIVED_SUFFIX)
    tag = hashlib.sha1(path.encode()).hexdigest()[:10]
    return os.path.join(_cache_dir(), f"{stem}-{tag}{DERIVED_SUFFIX}")


def ensure_derived_protocol(
    json_file: str, gallery_records: Sequence[dict], path: Optional[str] = None
) -> str:
    """Derive the protocol of a test JSON and save it, unless ``path`` already holds the one
    derived from the same JSON content (sha256). Returns the path."""
    path = path or derived_protocol_path(json_file)
    digest = sha256_file(json_file)
    if os.path.isfile(path):
        try:
            with open(path, "r", encoding="utf-8") as f:
                old = json.load(f).get("derived_from", {})
        except (OSError, ValueError, AttributeError):
            old = {}
        if isinstance(old, dict) and old.get("sha256") == digest:
            logger.info(
                "COCO person search: protocol derived earlier from '%s': %s", json_file, path
            )
            return path
        logger.warning(
            "COCO person search: '%s' changed since its protocol was derived; deriving it again "
            "into '%s'",
            json_file,
            path,
        )
    obj = derive_protocol(gallery_records, json_file, digest)
    if not obj["queries"]:
        raise DatasetFormatError(
            f"'{json_file}': no labeled identity (person_id >= 0) appears in two test images, so "
            "no query can be derived; give a protocol file"
        )
    try:
        write_protocol(obj, path)
    except OSError as e:
        raise OSError(
            f"cannot save the protocol derived from '{json_file}' to '{path}' ({e}); set "
            "$IAN_D2_CACHE to a writable folder or give a protocol file"
        ) from e
    logger.info(
        "COCO person search: derived a protocol from '%s' (%d queries: every labeled identity in "
        ">= 2 images; gallery = all other images), saved to '%s'",
        json_file,
        len(obj["queries"]),
        path,
    )
    return path
