"""Security of the search service: who may call it, and which files a job may read.

* Host: the service listens on 127.0.0.1 by default; a non-loopback ``--host`` is refused
  without ``--token-file`` (:func:`check_host`).
* Token: with a token, every ``/api/*`` request needs ``Authorization: Bearer <token>`` or the
  session cookie that ``POST /api/session`` sets for the right token (HttpOnly,
  SameSite=Strict); the page (``/``, ``/static/*``) loads without it (:class:`TokenAuth`).
  The cookie holds a hash of the token, never the token itself.
* Job paths: relative to a ``--footage-root``; absolute paths and ``..`` are refused as given,
  and the real path (symlinks resolved) must lie under the root's real path
  (:func:`confine_job_path`); nothing outside is opened, not even to check it exists.
"""

import hashlib
import hmac
import ipaddress
import os
import re
from typing import List, Optional

from ...utils.media import IMAGE_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "COOKIE",
    "PathRefused",
    "TokenAuth",
    "check_host",
    "confine_job_path",
    "is_loopback",
    "is_under",
    "read_token_file",
]

COOKIE = "ian_d2_session"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding white space stripped).

    Raises:
        ValueError: no such file, or an empty or short (< 16 characters) token.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--token-file '{path}' does not exist")
    with open(path) as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"--token-file '{path}': the token must have at least 16 characters")
    return token


def check_host(host: str, token_file: Optional[str]) -> None:
    """
    Raises:
        ValueError: a non-loopback ``host`` without ``token_file``.
    """
    if not is_loopback(host) and not token_file:
        raise ValueError(
            f"--host {host} makes the search service reachable from other machines: give "
            "--token-file FILE (a secret of at least 16 characters that every client must "
            "send), or keep the default --host 127.0.0.1"
        )


class TokenAuth:
    """
    The token check of ``/api/*`` requests.

    Args:
        token: the secret; None: no check (loopback service).
    """

    def __init__(self, token: Optional[str]):
        self.token = token
        self.cookie_value = (
            hashlib.sha256(b"ian_d2.search.session\0" + token.encode()).hexdigest()
            if token
            else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def token_matches(self, token: Optional[str]) -> bool:
        return bool(self.token) and hmac.compare_digest(str(token or ""), self.token)

    def allows(self, headers, cookies) -> bool:
        """Whether a request with these headers and cookies may call the API."""
        if not self.enabled:
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self.token_matches(auth[7:].strip()):
            return True
        cookie = cookies.get(COOKIE)
        return bool(cookie) and hmac.compare_digest(cookie, self.cookie_value)


class PathRefused(ValueError):
    """A job path that is not a readable image, video or folder under its footage root."""


_DRIVE = re.compile(r"^[A-Za-z]:")


def is_under(path: str, root: str) -> bool:
    """Whether the real path ``path`` is ``root`` or inside it (both real paths)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confine_job_path(root: str, rel: str) -> List[str]:
    """
    The real paths of the image and video files that ``rel`` names under ``root``: the file
    itself, or a folder's files (recursively, sorted).

    Args:
        root: a footage root (``--footage-root``).
        rel: a path relative to it, as the client sent it.

    Raises:
        PathRefused: absolute, with ``..``, a symlink leaving the root (also inside a folder),
            missing, neither an image nor a video, or a folder without any; the message names
            ``rel`` only (never the server's paths).
    """
    if not isinstance(rel, str) or not rel.strip() or "\0" in rel:
        raise PathRefused(f"'{rel}': an empty or invalid path")
    try:
        os.fsencode(rel)
    except UnicodeEncodeError:  # e.g. a lone surrogate ("\ud800" in JSON): no file has that name
        raise PathRefused(f"{ascii(rel)}: not a file name (not valid Unicode)") from None
    if os.path.isabs(rel) or rel.startswith(("/", "\\", "~")) or _DRIVE.match(rel):
        raise PathRefused(f"'{rel}': absolute paths are refused; give a path relative to the root")
    if ".." in re.split(r"[\\/]+", rel):
        raise PathRefused(f"'{rel}': '..' is refused; give a path inside the root")
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, rel))
    if not is_under(target, real_root):
        raise PathRefused(f"'{rel}' leads outside the footage root (a symbolic link)")
    if os.path.isdir(target):
        found = []
        for folder, dirs, files in os.walk(target):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() not in MEDIA_EXTENSIONS:
                    continue
                real = os.path.realpath(os.path.join(folder, name))
                if not is_under(real, real_root):
                    shown = os.path.relpath(os.path.join(folder, name), real_root)
                    raise PathRefused(f"'{shown}' leads outside the footage root (a symbolic link)")
                if os.path.isfile(real):
                    found.append(real)
        if not found:
            raise PathRefused(f"'{rel}': a folder without any image or video")
        return found
    if not os.path.isfile(target):
        raise PathRefused(f"'{rel}' does not exist under the footage root")
    if os.path.splitext(target)[1].lower() not in MEDIA_EXTENSIONS:
        raise PathRefused(
            f"'{rel}' is neither an image ({'/'.join(IMAGE_EXTENSIONS)}) nor a video "
            f"({'/'.join(VIDEO_EXTENSIONS)})"
        )
    return [target]
