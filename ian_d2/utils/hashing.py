"""SHA-256 of files and of canonical JSON (no torch): the one hashing helper of the package.

Model fingerprints (``ian_d2.search``), export manifests (``ian_d2.export``) and the derived
protocols of COCO person-search data all identify files by these digests.
"""

import functools
import hashlib
import json
import os

__all__ = ["canonical_json", "sha256_file", "sha256_text"]

_CHUNK = 1 << 22


def sha256_file(path: str, cache: bool = False) -> str:
    """Hex SHA-256 of a file's bytes.

    Args:
        path: a local file.
        cache: remember the digest in this process for the file's path, size and modification
            time (for large files that do not change while a process runs, e.g. model weights
            that indexing and querying in one process both hash). Off by default: a file
            rewritten with the same size within one timestamp tick would keep its old digest.
    """
    st = os.stat(path)
    if cache:
        return _sha256_of(os.path.abspath(path), st.st_size, st.st_mtime_ns)
    return _sha256_of.__wrapped__(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj) -> str:
    """``obj`` as JSON with sorted keys and no whitespace: equal objects, equal text (and digest)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
