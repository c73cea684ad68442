"""Query images uploaded to the search service: checked, decoded, kept in a bounded memory store.

An upload is refused when larger than the limit (413, see :func:`read_limited_form` for the
request body), or when it is not a whole image (422 naming the problem: not an image, truncated
or corrupt, empty, too many pixels). Accepted uploads get a random id (32 hex digits) and are
kept in memory, the least recently used dropped beyond ``max_items`` or ``max_bytes``.

Shape shorthand: H, W image height and width.
"""

import io
import secrets
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

__all__ = ["TooLarge", "Upload", "UploadStore", "decode_image", "read_limited_form"]

MAX_PIXELS = 64_000_000


class TooLarge(Exception):
    """A request body over the upload limit."""


@dataclass
class Upload:
    """
    Attributes:
        id: 32 hex digits.
        data: the uploaded file's bytes (decoded again for each query: what the user sent).
        width, height: its size in pixels.
        jpeg: the image re-encoded as JPEG (what ``GET /api/uploads/{id}.jpg`` returns).
    """

    id: str
    data: bytes
    width: int
    height: int
    jpeg: bytes

    def image(self) -> np.ndarray:
        """BGR [H, W, 3] uint8."""
        return decode_image(self.data)


def decode_image(data: bytes) -> np.ndarray:
    """
    BGR [H, W, 3] uint8 of an image file's bytes (as ``cv2.imread`` reads the file).

    Raises:
        ValueError: empty, not an image, truncated or corrupt, or over :data:`MAX_PIXELS`
            pixels; the message names the problem.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("the uploaded file is empty")
    fmt = "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "image"
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(
                    f"the {fmt} image is {im.width}x{im.height}: over {MAX_PIXELS} pixels"
                )
            im.load()  # decodes everything: a truncated file raises here
    except UnidentifiedImageError:
        raise ValueError("the uploaded file is not an image (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"the uploaded image is too large ({e})") from None
    except ValueError:
        raise
    except (OSError, SyntaxError) as e:
        raise ValueError(f"the uploaded {fmt} image is truncated or corrupt ({e})") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:  # a format Pillow reads and OpenCV does not (e.g. GIF)
        img = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
    return img


async def read_limited_form(request, max_bytes: int):
    """
    The multipart form of ``request``, reading at most ``max_bytes`` of body (plus 64 KiB for
    the multipart envelope).

    Raises:
        TooLarge: the body (announced by Content-Length, or as read) is over the limit.
    """
    from starlette.requests import Request

    cap = max_bytes + 65536
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise TooLarge()
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise TooLarge()
        return message

    return await Request(request.scope, receive).form(max_files=1, max_fields=10)


class UploadStore:
    """
    The uploads, least recently used first out.

    Args:
        max_items: uploads kept.
        max_bytes: total bytes kept (uploads and their JPEG copies).
    """

    def __init__(self, max_items: int = 64, max_bytes: int = 512 << 20):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: "OrderedDict[str, Upload]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, data: bytes) -> Upload:
        """Check and keep an uploaded file.

        Raises:
            ValueError: not a whole image (see :func:`decode_image`).
        """
        img = decode_image(data)
        from .media import encode_jpeg

        h, w = img.shape[:2]
        upload = Upload(secrets.token_hex(16), bytes(data), w, h, encode_jpeg(img, 92))
        size = len(upload.data) + len(upload.jpeg)
        with self._lock:
            self._items[upload.id] = upload
            self._bytes += size
            while len(self._items) > 1 and (
                len(self._items) > self.max_items or self._bytes > self.max_bytes
            ):
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data) + len(old.jpeg)
        return upload

    def get(self, upload_id: str) -> Optional[Upload]:
        with self._lock:
            upload = self._items.get(str(upload_id))
            if upload is not None:
                self._items.move_to_end(upload.id)
            return upload
