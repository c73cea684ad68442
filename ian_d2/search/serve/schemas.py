"""Request bodies of the search service (pydantic): what ``POST /api/search``, ``/api/index/jobs``
and ``/api/session`` accept; anything else is answered 422 with a readable ``detail``."""

import math
from typing import List, Literal, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

__all__ = ["FilterSpec", "JobRequest", "QuerySpec", "SearchRequest", "SessionRequest"]


class QuerySpec(BaseModel):
    """Exactly one of ``detection_id``, ``track_id``, ``frame_id`` + ``box``, ``upload_id`` +
    ``box``."""

    detection_id: Optional[str] = None
    track_id: Optional[str] = None
    frame_id: Optional[str] = None
    upload_id: Optional[str] = None
    box: Optional[List[float]] = None

    @field_validator("box")
    @classmethod
    def _box(cls, box):
        if box is not None:
            if len(box) != 4:
                raise ValueError("box must be 4 numbers [x1, y1, x2, y2]")
            if not all(math.isfinite(v) for v in box):
                raise ValueError("box must be finite numbers")
        return box

    @model_validator(mode="after")
    def _one_query(self):
        keys = ("detection_id", "track_id", "frame_id", "upload_id")
        given = [k for k in keys if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of detection_id, track_id, frame_id (with box), upload_id "
                "(with box)"
            )
        if given[0] == "detection_id" and self.box is not None:
            raise ValueError("a detection_id query takes no box (the stored detection is the box)")
        if given[0] == "track_id" and self.box is not None:
            raise ValueError("a track_id query takes no box (the track's mean embedding is used)")
        if given[0] in ("frame_id", "upload_id") and self.box is None:
            raise ValueError(f"a {given[0]} query needs box [x1, y1, x2, y2] (pixels)")
        return self


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
