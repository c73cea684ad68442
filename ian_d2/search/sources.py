"""Gallery sources of the search index: image files and videos, and the items they hold.

A gallery is given as folders (searched recursively), list files (``.txt``, one path per line,
relative to the list's folder) and paths of images or videos. Every still image is one item;
a video gives one item per SAMPLED frame: at ``fps`` frames per second of video time (the first
frame of every 1/fps interval), each with its frame number and timestamp (frame / video fps).
Frames are decoded in memory and never written to disk.

An item is identified by ``(source, frame)``: the source's absolute path and the frame number
(-1 for a still image); the index uses that key to skip what is already committed.
"""

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "GallerySource",
    "GalleryItem",
    "expand_gallery",
    "read_image",
    "read_video_frames",
    "iter_source_items",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GallerySource:
    """
    Attributes:
        path: absolute path.
        kind: "image" or "video".
        video_fps: frames per second of a video (0 for an image).
        num_frames: frames of a video as its container reports them (1 for an image).
    """

    path: str
    kind: str
    video_fps: float = 0.0
    num_frames: int = 1


@dataclass(frozen=True)
class GalleryItem:
    """
    One image to run the detector on.

    Attributes:
        source: absolute path of the image or video file.
        frame: frame number in the video, -1 for a still image.
        time: timestamp in seconds (frame / video fps), NaN for a still image.
    """

    source: str
    frame: int = -1
    time: float = float("nan")

    @property
    def key(self) -> Tuple[str, int]:
        return (self.source, int(self.frame))


def read_image(path: str) -> np.ndarray:
    """Read an image as BGR uint8 [H, W, 3]; a ValueError naming the file if it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if img is None:
        reason = "does not exist" if not os.path.exists(path) else "is not a readable image"
        raise ValueError(f"image '{path}' {reason}")
    return img


def _open_video(path: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(path) if os.path.isfile(path) else None
    if cap is None or not cap.isOpened():
        reason = (
            "does not exist"
            if not os.path.exists(path)
            else ("is not a video that OpenCV can read")
        )
        raise ValueError(f"video '{path}' {reason}")
    return cap


def probe_video(path: str) -> GallerySource:
    """A video source with its fps and frame count; a ValueError naming the file if unreadable."""
    cap = _open_video(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        num_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok = cap.grab()
    finally:
        cap.release()
    if not ok:
        raise ValueError(f"video '{path}' holds no decodable frame")
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"video '{path}' reports no frame rate (CAP_PROP_FPS={fps})")
    return GallerySource(path, "video", fps, num_frames)


def _kind(path: str) -> Optional[str]:
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def _read_list(path: str) -> List[str]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        lines = [line.strip() for line in f]
    return [p if os.path.isabs(p) else os.path.join(base, p) for p in lines if p]


def expand_gallery(specs: Sequence[str]) -> List[GallerySource]:
    """
    The image and video files of a gallery specification, in a stable order (each folder's
    files sorted by path; list files and paths in their own order), without duplicates.

    Args:
        specs: folders, ``.txt`` list files and image/video paths.

    Returns:
        list[GallerySource]

    Raises:
        ValueError: a path that does not exist, a file that is neither an image nor a video (by
            extension), a video OpenCV cannot open, or a gallery without any image or video.
    """
    paths: List[str] = []
    for spec in specs:
        if os.path.isdir(spec):
            found = []
            for root, dirs, files in os.walk(spec):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if _kind(f) is not None]
            paths += sorted(found)
        elif spec.lower().endswith(".txt"):
            if not os.path.isfile(spec):
                raise ValueError(f"gallery list '{spec}' does not exist")
            paths += _read_list(spec)
        else:
            paths.append(spec)
    sources, seen = [], set()
    for p in paths:
        path = os.path.abspath(p)
        if path in seen:
            continue
        seen.add(path)
        kind = _kind(path)
        if kind is None:
            raise ValueError(
                f"'{p}' is neither an image ({'/'.join(IMAGE_EXTENSIONS)}) nor a video "
                f"({'/'.join(VIDEO_EXTENSIONS)})"
            )
        if not os.path.isfile(path):
            raise ValueError(f"{kind} '{p}' does not exist")
        sources.append(probe_video(path) if kind == "video" else GallerySource(path, "image"))
    if not sources:
        raise ValueError(f"the gallery {list(specs)} holds no image or video")
    return sources


def sampled(frame: int, video_fps: float, fps: float) -> bool:
    """Whether ``frame`` is the first frame of its 1/``fps`` interval (always, if fps <= 0 or
    fps >= video fps)."""
    if fps <= 0 or fps >= video_fps:
        return True
    step = video_fps / fps
    return frame == 0 or math.floor(frame / step) != math.floor((frame - 1) / step)


def expected_items(source: GallerySource, fps: float) -> int:
    """About how many items a source gives (for progress bars; a video's count is estimated)."""
    if source.kind == "image":
        return 1
    if fps <= 0 or fps >= source.video_fps:
        return source.num_frames
    return int(math.ceil(source.num_frames * fps / source.video_fps))


def iter_source_items(
    source: GallerySource, fps: float, want: Callable[[GalleryItem], bool] = lambda item: True
) -> Iterator[Tuple[GalleryItem, np.ndarray]]:
    """
    The items of ``source`` and their BGR images, decoding only the frames that are sampled and
    wanted (the others are skipped with ``grab``, without decoding into an image).

    Args:
        source: an image or a video.
        fps: sampling rate of videos (<= 0: every frame).
        want: which items to decode (e.g. not yet committed, owned by this process).
    """
    if source.kind == "image":
        item = GalleryItem(source.path)
        if want(item):
            yield item, read_image(source.path)
        return
    cap = _open_video(source.path)
    try:
        frame = 0
        while cap.grab():
            if sampled(frame, source.video_fps, fps):
                item = GalleryItem(source.path, frame, frame / source.video_fps)
                if want(item):
                    ok, img = cap.retrieve()
                    if not ok or img is None:
                        raise ValueError(f"video '{source.path}': frame {frame} cannot be decoded")
                    yield item, img
            frame += 1
    finally:
        cap.release()


def read_video_frames(path: str, frames: Sequence[int]) -> Dict[int, np.ndarray]:
    """
    Frames of a video (BGR) by frame number, decoded in one sequential pass from the start
    (exact frame numbers whatever the codec's seeking precision).

    Raises:
        ValueError: the video cannot be read or ends before a requested frame.
    """
    wanted = set(int(f) for f in frames)
    out: Dict[int, np.ndarray] = {}
    if not wanted:
        return out
    last = max(wanted)
    cap = _open_video(path)
    try:
        frame = 0
        while frame <= last and cap.grab():
            if frame in wanted:
                ok, img = cap.retrieve()
                if ok and img is not None:
                    out[frame] = img
            frame += 1
    finally:
        cap.release()
    missing = sorted(wanted - set(out))
    if missing:
        raise ValueError(f"video '{path}' has no decodable frame {missing[0]}")
    return out
