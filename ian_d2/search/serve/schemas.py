"""Request bodies and error answers of the search service (pydantic): what ``POST /api/search``,
``/api/index/jobs`` and ``/api/session`` accept, and the ``{"detail": "message"}`` of every error.
Anything else is answered 422 with a readable ``detail``.

The query of a search is one of four objects (:data:`QuerySpec`, a ``oneOf`` in the OpenAPI
schema): :class:`DetectionQuery`, :class:`TrackQuery`, :class:`FrameQuery`,
:class:`UploadQuery`. Each names its own id (a non-empty string); the other ids, and ``box`` where
it takes none, may only be absent or null, and no other key is accepted.
"""

import math
from typing import List, Literal, Optional, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)
from typing_extensions import Annotated, TypeAliasType

__all__ = [
    "DetectionQuery",
    "ErrorDetail",
    "FilterSpec",
    "FrameQuery",
    "JobRequest",
    "QUERY_KINDS",
    "QuerySpec",
    "SearchRequest",
    "SessionRequest",
    "TrackQuery",
    "UploadQuery",
]

# the id keys of a query, one per kind; each is also the kind's tag in the union
QUERY_KINDS = ("detection_id", "track_id", "frame_id", "upload_id")
_ONE_QUERY = "give exactly one of detection_id, track_id, frame_id (with box), upload_id (with box)"


class ErrorDetail(BaseModel):
    """Every error answer (4xx, and 500 ``internal error``): one readable sentence."""

    detail: str = Field(description="what was wrong, e.g. `top_k: Input should be ...`")


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectionQuery(_Query):
    """A stored detection: its stored embedding is the query (no model call)."""

    detection_id: str = Field(min_length=1)
    track_id: None = None
    frame_id: None = None
    upload_id: None = None
    box: None = None


class TrackQuery(_Query):
    """A track (a hit's ``track.id`` with ``"group": "tracks"``): its mean embedding."""

    track_id: str = Field(min_length=1)
    detection_id: None = None
    frame_id: None = None
    upload_id: None = None
    box: None = None


class _BoxQuery(_Query):
    box: List[float] = Field(
        min_length=4, max_length=4, description="[x1, y1, x2, y2] in the image's pixels"
    )

    @field_validator("box", mode="before")
    @classmethod
    def _box_length(cls, box):
        if isinstance(box, (list, tuple)) and len(box) != 4:
            raise ValueError("box must be 4 numbers [x1, y1, x2, y2]")
        return box

    @field_validator("box")
    @classmethod
    def _box_finite(cls, box):
        if not all(math.isfinite(v) for v in box):
            raise ValueError("box must be finite numbers")
        return box


class FrameQuery(_BoxQuery):
    """A box drawn on an indexed frame, embedded by the model."""

    frame_id: str = Field(min_length=1)
    detection_id: None = None
    track_id: None = None
    upload_id: None = None


class UploadQuery(_BoxQuery):
    """A box on an uploaded image, embedded by the model."""

    upload_id: str = Field(min_length=1)
    detection_id: None = None
    track_id: None = None
    frame_id: None = None


def _given(value) -> list:
    """The id keys given in a query object (not absent, null or empty)."""
    return [k for k in QUERY_KINDS if value.get(k) is not None and value.get(k) != ""]


def _check_query(value):
    """The rules across keys, with their own messages (before the union's per-kind checks)."""
    if isinstance(value, _Query):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"the query must be an object: {_ONE_QUERY}")
    given = _given(value)
    if len(given) != 1:
        raise ValueError(_ONE_QUERY)
    kind, box = given[0], value.get("box")
    if kind == "detection_id" and box is not None:
        raise ValueError("a detection_id query takes no box (the stored detection is the box)")
    if kind == "track_id" and box is not None:
        raise ValueError("a track_id query takes no box (the track's mean embedding is used)")
    if kind in ("frame_id", "upload_id") and box is None:
        raise ValueError(f"a {kind} query needs box [x1, y1, x2, y2] (pixels)")
    return value


def _query_kind(value) -> Optional[str]:
    """The union's tag of a query: its one id key (None: refused)."""
    if isinstance(value, dict):
        given = _given(value)
        return given[0] if len(given) == 1 else None
    if isinstance(value, _Query):
        return next(k for k in QUERY_KINDS if getattr(value, k) is not None)
    return None


# exactly one of detection_id, track_id, frame_id + box, upload_id + box (a oneOf in the schema)
QuerySpec = TypeAliasType(
    "QuerySpec",
    Annotated[
        Union[
            Annotated[DetectionQuery, Tag("detection_id")],
            Annotated[TrackQuery, Tag("track_id")],
            Annotated[FrameQuery, Tag("frame_id")],
            Annotated[UploadQuery, Tag("upload_id")],
        ],
        Discriminator(_query_kind, custom_error_type="query_kind", custom_error_message=_ONE_QUERY),
        BeforeValidator(_check_query),
    ],
)


class FilterSpec(BaseModel):
    sources: Optional[List[str]] = None
    time_min: Optional[float] = None
    time_max: Optional[float] = None
    min_score: Optional[float] = None
    min_similarity: Optional[float] = None


class SearchRequest(BaseModel):
    query: QuerySpec
    filters: FilterSpec = Field(default_factory=FilterSpec)
    top_k: int = Field(20, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)
    group: Literal["none", "source_window", "tracks"] = "none"
    rank_by: Literal["best", "mean"] = "best"
    window_s: float = Field(10.0, ge=0.0, allow_inf_nan=False)


class JobRequest(BaseModel):
    root: int = Field(0, ge=0)
    paths: List[str] = Field(min_length=1, max_length=10_000)


class SessionRequest(BaseModel):
    token: str = Field(max_length=4096)
