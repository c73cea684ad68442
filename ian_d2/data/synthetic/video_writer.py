"""Writing the synthetic videos: Motion-JPEG in AVI through OpenCV.

OpenCV's built-in MJPG encoder is preferred: with it, the same frames give identical files.
"""

from typing import Tuple

import cv2

__all__ = ["open_video_writer"]


def open_video_writer(
    path: str, fps: float, frame_size: Tuple[int, int], quality: int = 90
) -> cv2.VideoWriter:
    """Open an MJPG-in-AVI writer, preferring OpenCV's built-in Motion-JPEG encoder.

    Args:
        path: Output ``.avi`` path.
        fps: Frames per second.
        frame_size: (width, height).
        quality: JPEG quality (0-100), where the backend supports it.

    Returns:
        An opened ``cv2.VideoWriter``.

    Raises:
        RuntimeError: When no OpenCV backend can write MJPG in AVI.
    """
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    size = (int(frame_size[0]), int(frame_size[1]))
    for api in (cv2.CAP_OPENCV_MJPEG, cv2.CAP_ANY):
        writer = cv2.VideoWriter(path, api, fourcc, float(fps), size)
        if writer.isOpened():
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
            return writer
        writer.release()
    raise RuntimeError(
        f"OpenCV {cv2.__version__} cannot write MJPG in AVI to {path!r} "
        "(cv2.VideoWriter(...).isOpened() is False): check that the folder is writable and that "
        "this OpenCV build has video I/O (opencv-python-headless has)"
    )
