"""The train split of a COCO person-search JSON: identities remapped to 0..N-1, and that map."""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

from .reader import read_coco_person_search
from .records import coco_records

__all__ = ["load_person_search_coco_train", "coco_train_pid_map"]

logger = logging.getLogger(__name__)


def _pid_map(records: Sequence[dict]) -> Dict[int, int]:
    ids = sorted({a["person_id"] for r in records for a in r["annotations"]} - {-1})
    return {int(p): i for i, p in enumerate(ids)}


def load_person_search_coco_train(
    json_file: str, image_root: Optional[str]
) -> Tuple[List[dict], Dict[int, int]]:
    """Train split: every image, identities remapped to contiguous 0..N-1 (sorted original ids).

    Returns:
        (records, pid_map {original person_id: contiguous id}); -1 stays -1.
    """
    records = coco_records(read_coco_person_search(json_file), image_root, "train")
    pid_map = _pid_map(records)
    for r in records:
        for a in r["annotations"]:
            if a["person_id"] >= 0:
                a["person_id"] = pid_map[a["person_id"]]
    logger.info("COCO person search train '%s': %d identities", json_file, len(pid_map))
    return records, pid_map


def coco_train_pid_map(json_file: str, image_root: Optional[str] = None) -> Dict[int, int]:
    """The train identity map of :func:`load_person_search_coco_train`, without checking that
    the images exist (they are opened only for sizes the JSON does not give)."""
    data = read_coco_person_search(json_file)
    return _pid_map(coco_records(data, image_root, "train", check_files=False))
