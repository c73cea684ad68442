"""Helpers shared by the dataset readers (CUHK-SYSU, PRW, COCO person search), one concern per
module: :mod:`.errors` (the format error, file checks), :mod:`.cache` (the on-disk cache of
parsed annotation files), :mod:`.mat` (.mat access), :mod:`.boxes` (box conversion, checks,
clipping) and :mod:`.images` (image sizes).

The annotation readers import neither torch nor Detectron2 (the rescore CLI uses them without a
model); scipy and PIL are imported when a file is really parsed.
"""

from .boxes import XYXY_ABS, check_boxes, clip_and_filter, xywh_to_xyxy
from .cache import CACHE_ENV, cache_dir, cached_parse
from .errors import ENV_HINT, DatasetFormatError, require_dir, require_file
from .images import read_image_sizes, resolve_image_sizes
from .mat import load_mat_var, mat_box_or_nan, mat_cell_strings, mat_string

__all__ = [
    "XYXY_ABS",
    "CACHE_ENV",
    "cache_dir",
    "cached_parse",
    "DatasetFormatError",
    "ENV_HINT",
    "require_dir",
    "require_file",
    "load_mat_var",
    "mat_string",
    "mat_cell_strings",
    "mat_box_or_nan",
    "xywh_to_xyxy",
    "read_image_sizes",
    "resolve_image_sizes",
    "check_boxes",
    "clip_and_filter",
]
