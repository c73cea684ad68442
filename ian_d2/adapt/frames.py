"""The indexed frames as image files, for the training data loader.

An index stores video frames by (video, frame number), decoded in memory when indexed. Training
reads images by file name (Detectron2's mapper), so each video's indexed frames are decoded once,
in one sequential pass, and written as JPEG files under ``OUT/frames/<source key>/<frame>.jpg``
(each file written atomically: a crash leaves complete files, and a rerun decodes only the
videos that miss some). Still images are used where they are.
"""

import logging
import os
from collections import defaultdict
from typing import Dict, List, Tuple

import cv2

from ..search.sources import read_image
from ..search.tracks import source_key
from ..utils.io import atomic_write

__all__ = ["FRAMES", "frame_files"]

logger = logging.getLogger(__name__)

FRAMES = "frames"
JPEG_QUALITY = 95


def _frame_path(out_dir: str, source: str, frame: int) -> str:
    return os.path.join(out_dir, FRAMES, source_key(source), f"{frame:07d}.jpg")


def _write_jpeg(path: str, image) -> None:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"could not encode frame '{path}' as JPEG")
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def _decode_video(path: str, frames: List[int], out_dir: str) -> None:
    """Write ``frames`` of video ``path`` (those not written yet) in one sequential pass."""
    todo = {f for f in frames if not os.path.isfile(_frame_path(out_dir, path, f))}
    if not todo:
        return
    os.makedirs(os.path.dirname(_frame_path(out_dir, path, 0)), exist_ok=True)
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"video '{path}' is not a video that OpenCV can read")
    try:
        frame, last = 0, max(todo)
        while frame <= last and cap.grab():
            if frame in todo:
                ok, img = cap.retrieve()
                if not ok or img is None:
                    raise ValueError(f"video '{path}': frame {frame} cannot be decoded")
                _write_jpeg(_frame_path(out_dir, path, frame), img)
                todo.discard(frame)
            frame += 1
    finally:
        cap.release()
    if todo:
        raise ValueError(
            f"video '{path}' ends before frame {min(todo)} that the index holds: the file "
            "changed since it was indexed"
        )


def frame_files(items: List[Tuple[str, int, int, int]], out_dir: str) -> List[str]:
    """
    The image file of each item ``(source, frame, width, height)``: the still image itself, or
    the written JPEG of the video frame (decoded now if missing).

    Raises:
        ValueError: a video or image that cannot be read, or that changed since it was indexed.
    """
    by_video: Dict[str, List[int]] = defaultdict(list)
    for source, frame, _, _ in items:
        if frame >= 0:
            by_video[source].append(frame)
    for i, (video, frames) in enumerate(sorted(by_video.items())):
        _decode_video(video, frames, out_dir)
        logger.info("Frames of video %d/%d written: '%s'", i + 1, len(by_video), video)
    out = []
    for source, frame, _, _ in items:
        if frame >= 0:
            out.append(_frame_path(out_dir, source, frame))
        else:
            read_image(source)  # readable, or a ValueError naming it
            out.append(source)
    return out
