"""The target training set of one adaptation round: the footage's frames with pseudo boxes and
pseudo identities, as Detectron2 dataset records.

A record is one item (frame or still image) with at least one pseudo box: the index's
detections whose score is at least ``box_thresh`` (the model's confident detections on the
target), each with ``person_id`` = ``pid_offset`` + its pseudo identity, or -1 (an unlabeled
person: a box for the detector, no identity) for an outlier. ``pid_offset`` is the number of
source identities, so that source and target identities share the identity memories without
colliding (source 0..S-1, target S..S+K-1).

The records are written to a JSON file per round and registered in ``DatasetCatalog`` by name
from that file (:func:`register_target`), so that every process of ``launch`` registers the
same set.
"""

import json
import os
from typing import Dict, List, Sequence

import numpy as np

from ..utils.io import atomic_write
from .footage import Footage

__all__ = ["register_target", "target_records", "write_records"]


def target_records(
    footage: Footage,
    labels: np.ndarray,
    image_files: Sequence[str],
    pid_offset: int,
    box_thresh: float,
) -> List[Dict]:
    """
    Args:
        footage: the index's detections.
        labels: [N] pseudo identity of each detection (0..K-1; -1 outlier).
        image_files: [I] the image file of each item (:func:`~.frames.frame_files`).
        pid_offset: S, the number of source identities.
        box_thresh: the smallest score of a pseudo box.

    Returns:
        list[dict]: Detectron2 records (``file_name``, ``height``, ``width``, ``image_id``,
        ``annotations`` with ``bbox`` XYXY_ABS, ``bbox_mode``, ``category_id`` 0, ``person_id``),
        one per item with a pseudo box, in item order.
    """
    from detectron2.structures import BoxMode

    keep = np.flatnonzero(footage.scores >= box_thresh)
    by_item: Dict[int, List[int]] = {}
    for row in keep.tolist():
        by_item.setdefault(int(footage.frame_keys[row]), []).append(row)
    records = []
    for key in sorted(by_item):
        source, frame, width, height = footage.items[key]
        annos = []
        for row in by_item[key]:
            label = int(labels[row])
            annos.append(
                {
                    "bbox": [float(v) for v in footage.boxes[row]],
                    "bbox_mode": int(BoxMode.XYXY_ABS),
                    "category_id": 0,
                    "person_id": pid_offset + label if label >= 0 else -1,
                }
            )
        records.append(
            {
                "file_name": image_files[key],
                "height": int(height),
                "width": int(width),
                "image_id": f"{source}#{frame}",
                "annotations": annos,
            }
        )
    return records


def write_records(path: str, records: List[Dict]) -> None:
    """The records as JSON, written atomically."""
    data = json.dumps(records).encode()
    atomic_write(path, lambda f: f.write(data))


def register_target(name: str, path: str, num_pids: int, repeat: int = 1) -> None:
    """Register (or replace) dataset ``name`` with the records of ``path``, listed ``repeat``
    times (the target's share of the batches); its metadata says ``num_train_pids`` (source
    and target identities together)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    def load() -> List[Dict]:
        with open(path) as f:
            records = json.load(f)
        for r in records:
            for a in r["annotations"]:
                a["bbox_mode"] = BoxMode(a["bbox_mode"])
        return records * int(repeat)

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=["person"], num_train_pids=int(num_pids), records_file=os.path.abspath(path)
    )
