"""A track as a picture: a strip of crops of its detections, evenly spread over its time span,
each labelled with its time, under a title with the video, the span and the number of
detections.

Shape shorthand: H strip height in pixels.
"""

import os
from typing import Dict, Optional

import cv2
import numpy as np

from ..manifest import SHARDS
from ..sources import read_video_frames
from .build import read_track_files

__all__ = ["track_strip", "write_track_strip"]


def _crop(image: np.ndarray, box, height: int) -> np.ndarray:
    """The box widened by 10% on each side, resized to ``height`` pixels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    x1, y1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
    x2, y2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    crop = image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    width = max(1, int(round(crop.shape[1] * height / max(crop.shape[0], 1))))
    return cv2.resize(crop, (width, height))


def track_strip(
    index_dir: str, source: str, number: int, *, height: int = 160, max_crops: int = 8
) -> np.ndarray:
    """
    The picture of one track.

    Args:
        index_dir: the index.
        source: the video's stored path; number: the track's number in it.
        height: crop height, pixels; max_crops: crops at most (evenly spread in time).

    Returns:
        np.ndarray: [H, W, 3] uint8 BGR.

    Raises:
        ValueError: no such track, or its video cannot be read.
    """
    import pyarrow.parquet as pq

    table: Optional[Dict] = None
    for _, header, t in read_track_files(index_dir):
        if header.get("source") == source:
            rows = [r for r in t.to_pylist() if r["track"] == int(number)]
            table = rows[0] if rows else None
    if table is None:
        raise ValueError(f"index '{index_dir}' has no track {number} of '{source}'")
    ids = table["detections"]
    pick = sorted(set(np.linspace(0, len(ids) - 1, min(max_crops, len(ids))).round().astype(int)))
    by_shard: Dict[str, list] = {}
    for i in pick:
        stem, _, row = ids[i].rpartition(".")
        by_shard.setdefault(stem, []).append((i, int(row)))
    dets = {}
    for stem, wanted in by_shard.items():
        cols = ["frame", "time_s", "x1", "y1", "x2", "y2"]
        t = pq.read_table(os.path.join(index_dir, SHARDS, stem + ".parquet"), columns=cols)
        t = t.to_pydict()
        for i, r in wanted:
            dets[i] = (t["frame"][r], t["time_s"][r], [t[k][r] for k in cols[2:]])
    frames = read_video_frames(source, [dets[i][0] for i in pick])
    crops = []
    for i in pick:
        frame, time_s, box = dets[i]
        c = _crop(frames[frame], box, height)
        c = cv2.copyMakeBorder(c, 0, 22, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(c, f"{time_s:.1f} s", (3, height + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        crops.append(c)
    sep = np.full((height + 22, 6, 3), 255, np.uint8)
    parts = [crops[0]]
    for c in crops[1:]:
        parts += [sep, c]
    strip = np.concatenate(parts, axis=1)
    title = (
        f"{os.path.basename(source)}  track {number}:  {table['first_time_s']:.1f}-"
        f"{table['last_time_s']:.1f} s, {table['num_detections']} detections"
    )
    width = max(strip.shape[1], 8 * len(title))
    head = np.full((26, width, 3), 255, np.uint8)
    cv2.putText(head, title, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    body = np.full((strip.shape[0], width, 3), 255, np.uint8)
    body[:, : strip.shape[1]] = strip
    return np.concatenate([head, body], axis=0)


def write_track_strip(index_dir: str, source: str, number: int, path: str, **kwargs) -> str:
    """:func:`track_strip` written to ``path`` (JPEG/PNG by extension); returns ``path``."""
    image = track_strip(index_dir, source, number, **kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise ValueError(f"cannot write the picture '{path}' (an image file name: .jpg, .png)")
    return path
