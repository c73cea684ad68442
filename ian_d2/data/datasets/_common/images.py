"""Image sizes of the listed images: read from the file headers (PIL, imported when used), or
given by the caller (re-scoring saved predictions without the images)."""

import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import ENV_HINT, DatasetFormatError

__all__ = ["read_image_sizes", "resolve_image_sizes"]


def read_image_sizes(
    image_root: str, names: Iterable[str], what: str, suffix: str = ""
) -> Dict[str, Tuple[int, int]]:
    """Check that every listed image exists and read its (height, width) from the file header.

    Args:
        image_root: directory of the images.
        names: image names as listed by the annotation files.
        what: description of the listing for error messages.
        suffix: appended to each name to form the file name (PRW lists frames without ".jpg").

    Returns:
        dict name -> (height, width)

    Raises:
        FileNotFoundError: naming the missing images (never skipped silently).
    """
    from PIL import Image

    sizes: Dict[str, Tuple[int, int]] = {}
    missing: List[str] = []
    for name in names:
        path = os.path.join(image_root, name + suffix)
        try:
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        except FileNotFoundError:
            missing.append(path)
            continue
        except OSError as e:
            raise DatasetFormatError(f"{what}: image '{path}' cannot be read: {e}") from e
        sizes[name] = (h, w)
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{what}: {len(missing)} listed image(s) are missing: {shown}{more}. {ENV_HINT}"
        )
    return sizes


def resolve_image_sizes(
    image_root: str,
    names: Sequence[str],
    what: str,
    suffix: str = "",
    image_sizes: Optional[Dict[str, Tuple[int, int]]] = None,
) -> Dict[str, Tuple[int, int]]:
    """Image sizes from the files (:func:`read_image_sizes`), or from ``image_sizes`` when given.

    ``image_sizes`` ({image name as listed: (height, width)}) lets a caller without the images
    (e.g. re-scoring saved predictions) build exactly the records a loader builds with them.
    """
    if image_sizes is None:
        return read_image_sizes(image_root, names, what, suffix)
    missing = [n for n in names if n not in image_sizes]
    if missing:
        raise KeyError(
            f"{what}: no image size given for {len(missing)} image(s), e.g. {missing[:5]}"
        )
    return {n: tuple(image_sizes[n]) for n in names}
