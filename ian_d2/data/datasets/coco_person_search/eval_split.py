"""The test split of a COCO person-search JSON: the gallery records and one record per query
of its protocol (given, or derived)."""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

from .._common import XYXY_ABS
from .derived import ensure_derived_protocol
from .protocol import PersonSearchProtocol, check_protocol, read_person_search_protocol
from .reader import read_coco_person_search
from .records import coco_records

__all__ = ["load_person_search_coco_test"]

logger = logging.getLogger(__name__)


def _query_records(protocol: PersonSearchProtocol, gallery_records: Sequence[dict]) -> List[dict]:
    index = {r["image_id"]: r for r in gallery_records}
    out = []
    for q, (name, box, pid) in enumerate(
        zip(protocol.query_images, protocol.query_boxes, protocol.query_pids.tolist())
    ):
        g = index[name]
        rec = {
            "file_name": g["file_name"],
            "image_id": name,
            "height": g["height"],
            "width": g["width"],
            "query_index": q,
            "annotations": [
                {
                    "bbox": box.tolist(),
                    "bbox_mode": XYXY_ABS,
                    "category_id": 0,
                    "person_id": int(pid),
                }
            ],
        }
        if "camera_id" in g:
            rec["camera_id"] = g["camera_id"]
        out.append(rec)
    return out


def load_person_search_coco_test(
    json_file: str,
    image_root: Optional[str],
    protocol_file: Optional[str] = None,
    *,
    image_sizes: Optional[Dict[str, Tuple[int, int]]] = None,
    derived_path: Optional[str] = None,
) -> Tuple[List[dict], List[dict], str]:
    """Test split: gallery records (every image) and query records (the protocol's queries).

    Args:
        json_file: the COCO person-search JSON of the test images.
        image_root: their folder (None with ``image_sizes``: ``file_name`` = the name).
        protocol_file: the protocol JSON; None = the derived one (derived and saved if needed,
            see :func:`ensure_derived_protocol`).
        image_sizes: {image name: (height, width)}: no image is touched (re-scoring).
        derived_path: where the derived protocol is saved (default
            :func:`derived_protocol_path`); unused with a ``protocol_file``.

    Returns:
        (gallery records, query records with ``query_index``, the protocol file used)
    """
    data = read_coco_person_search(json_file)
    gallery = coco_records(data, image_root, "test", image_sizes=image_sizes)
    if protocol_file is None:
        protocol_file = ensure_derived_protocol(json_file, gallery, derived_path)
    protocol = read_person_search_protocol(protocol_file)
    check_protocol(protocol, gallery)
    queries = _query_records(protocol, gallery)
    logger.info(
        "COCO person search test '%s': %d queries, protocols %s (from '%s')",
        json_file,
        len(queries),
        [p.key for p in protocol.protocols],
        protocol_file,
    )
    return gallery, queries, protocol_file
