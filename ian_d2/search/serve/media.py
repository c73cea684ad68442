"""Pictures and videos of the search service: frames, drawn boxes, crops, playable videos, Range.

* Frames are decoded exactly by number (sequentially, as the index decoded them): a reader per
  video stays open at its last frame, so browsing forwards decodes each frame once; the last
  decoded frames are kept (:class:`FrameReader`).
* A video the browser can play (H.264, VP8 or VP9 in mp4/webm) is served as is; any other is
  converted once, with OpenCV, to WebM/VP8 at the same frame rate (frame n at n / video fps,
  like the index) and cached as ``INDEX/media/<source id>.webm`` (:func:`playable_video`).
* :func:`file_response` serves a file honouring ``Range: bytes=a-b`` (206 + Content-Range,
  416 when unsatisfiable).

Shape shorthand: H, W image height and width; n boxes.
"""

import logging
import os
import threading
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..sources import read_image

__all__ = [
    "FrameReader",
    "RangeNotSatisfiable",
    "crop",
    "draw_boxes",
    "encode_jpeg",
    "file_response",
    "parse_range",
    "playable_video",
]

logger = logging.getLogger(__name__)

PLAYABLE_CODECS = {"avc1", "avc3", "h264", "x264", "vp80", "vp08", "vp90", "vp09"}
PLAYABLE_CONTAINERS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm"}


def encode_jpeg(image_bgr: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR image [H, W, 3]."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def draw_boxes(
    image_bgr: np.ndarray, boxes: np.ndarray, scores: Optional[Sequence[float]] = None
) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] with ``boxes`` [n, 4] (XYXY) drawn, labelled with
    their ``scores`` [n]."""
    out = image_bgr.copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    for i, b in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
        if scores is not None:
            cv2.putText(out, f"{float(scores[i]):.2f}", (x1 + 2, max(y1 - 3, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thick, (0, 255, 0), thick)  # fmt: skip
    return out


def crop(image_bgr: np.ndarray, box: Sequence[float], margin: float = 0.1) -> np.ndarray:
    """The part of ``image_bgr`` [H, W, 3] inside ``box`` (XYXY) widened by ``margin`` of its
    size on each side, clipped to the image."""
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a, b = max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my)))
    c, d = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return image_bgr[b : max(d, b + 1), a : max(c, a + 1)]


class _VideoCursor:
    """An open video, positioned after the last frame it returned."""

    def __init__(self, path: str):
        self.path = path
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise ValueError(f"video '{os.path.basename(path)}' cannot be opened")
        self.next = 0

    def read(self, frame: int) -> np.ndarray:
        if frame < self.next:  # backwards: start again from the first frame
            self.cap.release()
            self.__init__(self.path)
        while self.next < frame:
            if not self.cap.grab():
                raise ValueError(f"video '{os.path.basename(self.path)}' ends before {frame}")
            self.next += 1
        ok, img = self.cap.read()
        self.next += 1
        if not ok or img is None:
            raise ValueError(f"video '{os.path.basename(self.path)}': no frame {frame}")
        return img

    def close(self) -> None:
        self.cap.release()


class FrameReader:
    """
    Frames of the indexed sources by number, with an LRU cache of decoded frames.

    Args:
        max_frames: decoded frames kept.
        max_videos: videos kept open.
    """

    def __init__(self, max_frames: int = 32, max_videos: int = 4):
        self.max_frames = max_frames
        self.max_videos = max_videos
        self._frames: "OrderedDict[Tuple[str, int], np.ndarray]" = OrderedDict()
        self._cursors: "OrderedDict[str, _VideoCursor]" = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: str, frame: int) -> np.ndarray:
        """BGR [H, W, 3] of frame ``frame`` of a video, or of an image (``frame`` < 0).

        Raises:
            ValueError: the file is gone or unreadable, or has no such frame.
        """
        key = (path, int(frame))
        with self._lock:
            img = self._frames.get(key)
            if img is not None:
                self._frames.move_to_end(key)
                return img
            if frame < 0:
                img = read_image(path)
            else:
                cursor = self._cursors.pop(path, None) or _VideoCursor(path)
                try:
                    img = cursor.read(int(frame))
                finally:
                    self._cursors[path] = cursor
                    while len(self._cursors) > self.max_videos:
                        self._cursors.popitem(last=False)[1].close()
            self._frames[key] = img
            while len(self._frames) > self.max_frames:
                self._frames.popitem(last=False)
            return img


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).lower()


_convert_locks: Dict[str, threading.Lock] = {}
_convert_locks_guard = threading.Lock()


def playable_video(path: str, source_id: str, media_dir: str) -> Tuple[str, str]:
    """
    A file of the video ``path`` that browsers play, and its media type: the original (H.264,
    VP8 or VP9 in mp4/webm), else a WebM/VP8 copy made once (same frames, same frame rate) and
    cached as ``media_dir/<source_id>.webm`` (made again if the original is newer).

    Raises:
        ValueError: the video is gone or cannot be read or converted.
    """
    if not os.path.isfile(path):
        raise ValueError(f"video '{os.path.basename(path)}' is not there any more")
    ext = os.path.splitext(path)[1].lower()
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ValueError(f"video '{os.path.basename(path)}' cannot be opened")
        codec = _fourcc(cap)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if ext in PLAYABLE_CONTAINERS and codec in PLAYABLE_CODECS:
        return path, PLAYABLE_CONTAINERS[ext]
    out = os.path.join(media_dir, f"{source_id}.webm")
    with _convert_locks_guard:
        lock = _convert_locks.setdefault(out, threading.Lock())
    with lock:
        if not (os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(path)):
            _convert_to_webm(path, out, fps, codec)
    return out, "video/webm"


def _convert_to_webm(path: str, out: str, fps: float, codec: str) -> None:
    """Write every frame of ``path`` to ``out`` as WebM/VP8 at ``fps`` (temporary file, then
    rename)."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out[:-len('.webm')]}.tmp{os.getpid()}.{threading.get_ident()}.webm"
    logger.info("Converting %s (%s) to WebM/VP8 for the browser", os.path.basename(path), codec)
    cap = cv2.VideoCapture(path)
    writer = None
    frames = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                break
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"VP80"), fps or 25.0, (w, h))
                if not writer.isOpened():
                    raise ValueError("this OpenCV cannot write WebM/VP8 videos")
            writer.write(img)
            frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ValueError(f"video '{os.path.basename(path)}' holds no decodable frame")
    os.replace(tmp, out)
    logger.info("Cached %s (%d frames)", out, frames)


class RangeNotSatisfiable(Exception):
    """A Range header that selects no byte of the file."""


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """
    The byte range (first, last, inclusive) of a ``Range`` header for a file of ``size`` bytes;
    None: serve the whole file (no header, another unit, several ranges, malformed).

    Raises:
        RangeNotSatisfiable: a single ``bytes`` range that selects nothing.
    """
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[len("bytes=") :].strip()
    if "," in spec or "-" not in spec:
        return None
    a, _, b = (p.strip() for p in spec.partition("-"))
    if not (_is_digits(a) or a == "") or not (_is_digits(b) or b == "") or (a == b == ""):
        return None
    if a == "":  # the last b bytes
        n = _position(b)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - n), size - 1
    first = _position(a)
    last = size - 1 if b == "" else min(_position(b), size - 1)
    if first >= size or (b != "" and _position(b) < first):
        raise RangeNotSatisfiable()
    return first, last


def _is_digits(text: str) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also accepts e.g. ``"²"``, which ``int``
    refuses)."""
    return text.isascii() and text.isdigit()


def _position(digits: str) -> int:
    """A byte position of a ``Range`` header; past 18 digits, 2**62 (beyond any file: ``int``
    refuses strings of over 4300 digits)."""
    return int(digits) if len(digits.lstrip("0")) <= 18 else 1 << 62


def _file_chunks(path: str, first: int, last: int, chunk: int = 1 << 16):
    with open(path, "rb") as f:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            data = f.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


def file_response(path: str, media_type: str, range_header: Optional[str], head: bool = False):
    """
    A Starlette response of the file ``path``: 200 with the whole file, 206 with the range of
    ``range_header`` (``Content-Range: bytes first-last/size``), or 416 (``Content-Range:
    bytes */size``); always ``Accept-Ranges: bytes``.
    """
    from starlette.responses import JSONResponse, Response, StreamingResponse

    size = os.path.getsize(path)
    headers = {"Accept-Ranges": "bytes"}
    try:
        rng = parse_range(range_header, size)
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return JSONResponse(
            {"detail": f"range '{range_header}' is outside the {size} bytes of the video"},
            status_code=416,
            headers=headers,
        )
    first, last, status = (0, size - 1, 200) if rng is None else (rng[0], rng[1], 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    if head or size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        _file_chunks(path, first, last), status_code=status, headers=headers, media_type=media_type
    )
