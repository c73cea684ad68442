"""The model fingerprint, moved to :mod:`ian_d2.utils.fingerprint` (shared with the export, which
does not import the search package); this import path is kept for existing code."""

from ..utils.fingerprint import (  # noqa: F401
    DEFAULT_VARIANT,
    VARIANT_FLAG,
    __all__,
    check_variant,
    config_canonical_json,
    config_sha256,
    exported_variant,
    inference_variant,
    model_config_yaml,
    model_fingerprint,
)
