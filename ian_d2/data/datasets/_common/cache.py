"""The on-disk cache of parsed annotation files (``$IAN_D2_CACHE``, default ``~/.cache/ian_d2``)."""

import hashlib
import logging
import os
import pickle
from typing import Callable, Optional, Sequence, TypeVar

__all__ = ["CACHE_ENV", "cache_dir", "cached_parse"]

logger = logging.getLogger(__name__)

CACHE_ENV = "IAN_D2_CACHE"
_CACHE_VERSION = 2  # bump whenever a cached parse result changes its form
T = TypeVar("T")


def cache_dir() -> Optional[str]:
    """Folder of the parsed-annotation cache: ``$IAN_D2_CACHE``, default ``~/.cache/ian_d2``;
    None when ``IAN_D2_CACHE`` is ``off`` (or empty)."""
    value = os.environ.get(CACHE_ENV, os.path.join("~", ".cache", "ian_d2"))
    if value.strip().lower() in ("", "off", "0", "none"):
        return None
    return os.path.expanduser(value)


def cached_parse(kind: str, files: Sequence[str], parse: Callable[[], T]) -> T:
    """``parse()``, cached on disk while every file of ``files`` keeps its size and mtime.

    The cache entry is ``<cache_dir>/annotations/<kind>-<hash of the file paths>.pkl`` and holds
    the files' (path, size, mtime) stamp: a changed file makes the entry stale, and it is parsed
    again and rewritten (atomically). An unreadable entry is rebuilt with a warning; a cache
    folder that cannot be written only costs the parse. ``IAN_D2_CACHE=off`` disables it.

    Args:
        kind: what is parsed, with every argument that changes the result (e.g.
            "cuhk_sysu_protocol-TestG100").
        files: the files the result is read from (each must exist).
        parse: computes the result (picklable).
    """
    folder = cache_dir()
    if folder is None:
        return parse()
    stamp = []
    for f in files:
        st = os.stat(f)
        stamp.append((os.path.abspath(f), st.st_size, st.st_mtime_ns))
    digest = hashlib.sha1(repr([s[0] for s in stamp]).encode()).hexdigest()[:16]
    path = os.path.join(folder, "annotations", f"{kind}-{digest}.pkl")
    try:
        with open(path, "rb") as fh:
            version, saved, value = pickle.load(fh)
        if version == _CACHE_VERSION and saved == stamp:
            return value
        logger.info("Annotation cache %s is stale (files changed): parsing again", path)
    except FileNotFoundError:
        pass
    except Exception as e:  # a truncated or foreign file: rebuilt
        logger.warning("Annotation cache %s is unreadable (%s): parsing again", path, e)
    value = parse()
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            pickle.dump((_CACHE_VERSION, stamp, value), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as e:
        logger.warning("Could not write the annotation cache %s: %s", path, e)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return value
