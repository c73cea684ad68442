"""The ``/api`` routes of the search service (docs/SEARCH_API.md is their reference).

Handlers doing CPU work (ranking, decoding, the model) are plain functions: FastAPI runs them in
its thread pool. Unknown ids answer 404, bad requests 4xx, always ``{"detail": "message"}``
(:class:`.schemas.ErrorDetail`). The OpenAPI schema is the contract: each route lists in its
``responses`` every error status it can answer (:func:`errors`), and the media it returns
(``tests/search/test_serve_schema.py`` checks both, and runs schemathesis over every route).
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ..tracks import rank_tracks
from .jobs import JobManager
from .media import FrameReader, crop, draw_boxes, encode_jpeg, file_response, playable_video
from .query import Filters, filter_mask, rank
from .schemas import ErrorDetail, JobRequest, SearchRequest, SessionRequest
from .security import COOKIE, PathRefused, TokenAuth, confine_job_path
from .state import IndexSnapshot, IndexState, SourceEntry
from .tracks import ServedTracks, track_json
from .uploads import TooLarge, UploadStore, read_limited_form
from .views import detection_json, frame_json, hit_json, source_json

__all__ = ["ERROR_DESCRIPTIONS", "ServeContext", "build_router", "errors"]

logger = logging.getLogger(__name__)

JPEG_HEADERS = {"Cache-Control": "private, max-age=300"}

ERROR_DESCRIPTIONS = {
    400: "Refused: a body that cannot be parsed (not UTF-8, a broken multipart form), or a "
    "request that cannot be carried out (the detail says why)",
    401: "A token is needed, or the token is wrong (a server started with --token-file)",
    404: "Unknown id (or a file that cannot be read any more)",
    413: "The upload is larger than --max-upload-mb",
    416: "The range selects no byte of the video",
    422: "Invalid request: the detail names each field and what is wrong with it",
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_JPEG = {200: {"description": "The image as JPEG", "content": {"image/jpeg": _BINARY}}}
_CONTENT_RANGE = {"Content-Range": {"schema": {"type": "string"}}}
_VIDEO = {
    200: {
        "description": "The whole video",
        "content": {"video/mp4": _BINARY, "video/webm": _BINARY},
    },
    206: {
        "description": "The bytes of the range",
        "content": {"video/mp4": _BINARY, "video/webm": _BINARY},
        "headers": _CONTENT_RANGE,
    },
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the image (JPEG, PNG, WebP, BMP, TIFF, GIF...)",
                        }
                    },
                    "required": ["file"],
                    "additionalProperties": False,
                }
            }
        },
    }
}


def errors(*codes: int) -> Dict[int, Dict]:
    """The ``responses`` of a route's errors: ``codes`` and 401 (every ``/api`` route of a
    server with a token), each answered as :class:`.schemas.ErrorDetail`."""
    return {
        code: {"model": ErrorDetail, "description": ERROR_DESCRIPTIONS[code]}
        for code in sorted({401, *codes})
    }


@dataclass
class ServeContext:
    """What the routes share: the index, the model, uploads, frames, jobs, auth and limits."""

    index_dir: str
    state: IndexState
    embedder: object  # EagerEmbedder | ExportedEmbedder
    uploads: UploadStore
    frames: FrameReader
    auth: TokenAuth
    media_dir: str
    jobs: Optional[JobManager] = None
    footage_roots: List[str] = field(default_factory=list)
    max_upload_bytes: int = 20 << 20


def _jpeg(image) -> Response:
    return Response(encode_jpeg(image), media_type="image/jpeg", headers=JPEG_HEADERS)


def _source(snap: IndexSnapshot, source_id: str) -> SourceEntry:
    source = snap.source(source_id)
    if source is None:
        raise HTTPException(404, f"unknown source id '{source_id}'")
    return source


def _frame(snap: IndexSnapshot, frame_id: str):
    found = snap.parse_frame_id(frame_id)
    if found is None:
        raise HTTPException(404, f"unknown frame id '{frame_id}'")
    return found


def _row(snap: IndexSnapshot, detection_id: str) -> int:
    row = snap.row_of(detection_id)
    if row is None:
        raise HTTPException(404, f"unknown detection id '{detection_id}'")
    return row


def _check_box(box, width: int, height: int, what: str) -> np.ndarray:
    b = np.asarray(box, np.float64)
    if not (0 <= b[0] < b[2] <= width and 0 <= b[1] < b[3] <= height):
        raise HTTPException(
            422,
            f"box {b.tolist()} (x1 y1 x2 y2) must satisfy 0 <= x1 < x2 <= {width} and "
            f"0 <= y1 < y2 <= {height} ({what} is {width}x{height})",
        )
    return b


def build_router(ctx: ServeContext) -> APIRouter:
    """The ``/api`` routes over ``ctx``."""
    router = APIRouter(prefix="/api")
    tracks = ServedTracks(ctx.index_dir)

    def read_frame(source: SourceEntry, frame: int):
        try:
            return ctx.frames.read(source.path, frame)
        except ValueError:
            raise HTTPException(
                404, f"the file of source '{source.name}' ({source.id}) cannot be read any more"
            ) from None

    # index, sources, frames, detections -------------------------------------------------------
    @router.get("/index", responses=errors())
    def index_info():
        snap = ctx.state.current()
        m = ctx.state.manifest
        kinds = [s.kind for s in snap.sources]
        return {
            "detections": snap.num_rows,
            "sources": len(snap.sources),
            "images": kinds.count("image"),
            "videos": kinds.count("video"),
            "frames": int(sum(len(s.frames) for s in snap.sources)),
            "embed_dim": m.embed_dim,
            "model": {
                "weights_sha256": m.model.get("weights_sha256"),
                "config_sha256": m.model.get("config_sha256"),
                "weights": str(m.model.get("weights", "")).replace("\\", "/").rsplit("/", 1)[-1],
                "backend": getattr(ctx.embedder, "name", None),
            },
            "vector_index": {
                **m.vector_index,
                "search": "exact (numpy)" if ctx.state.vectors is None else "faiss",
            },
            "fps": m.fps,
            "score_thresh": m.score_thresh,
            "job": ctx.jobs.current() if ctx.jobs is not None else None,
        }

    @router.get("/sources", responses=errors())
    def sources():
        snap = ctx.state.current()
        fps = ctx.state.manifest.fps
        return {"sources": [source_json(snap, s, fps) for s in snap.sources]}

    @router.get("/sources/{source_id}/frames", responses=errors(404, 422))
    def source_frames(
        source_id: str, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)
    ):
        snap = ctx.state.current()
        source = _source(snap, source_id)
        frames = source.frames[offset : offset + limit]
        return {
            "total": int(len(source.frames)),
            "offset": offset,
            "frames": [frame_json(snap, source, int(f)) for f in frames],
        }

    video_responses = {**_VIDEO, **errors(404, 416, 422)}
    video_responses[416]["headers"] = _CONTENT_RANGE

    @router.get("/sources/{source_id}/video", response_class=Response, responses=video_responses)
    def source_video(
        source_id: str,
        request: Request,
        range_header: Optional[str] = Header(
            None, alias="range", description="bytes=a-b, bytes=a- or bytes=-n (one range): 206"
        ),
    ):
        snap = ctx.state.current()
        source = _source(snap, source_id)
        if source.kind != "video":
            raise HTTPException(404, f"source '{source.name}' ({source_id}) is an image")
        try:
            path, media_type = playable_video(source.path, source.id, ctx.media_dir)
        except ValueError:
            raise HTTPException(
                404, f"the video of source '{source.name}' ({source_id}) cannot be read"
            ) from None
        return file_response(path, media_type, range_header, head=request.method == "HEAD")

    router.head(
        "/sources/{source_id}/video",
        response_class=Response,
        responses=video_responses,
        name="source_video_head",
    )(source_video)

    @router.get(
        "/frames/{frame_id}.jpg", response_class=Response, responses={**_JPEG, **errors(404, 422)}
    )
    def frame_jpeg(frame_id: str, draw: bool = False):
        snap = ctx.state.current()
        source, frame = _frame(snap, frame_id)
        image = read_frame(source, frame)
        if draw:
            rows = snap.rows_of_item(source, frame)
            image = draw_boxes(image, snap.boxes[rows], snap.score[rows])
        return _jpeg(image)

    @router.get("/frames/{frame_id}", responses=errors(404, 422))
    def frame_info(frame_id: str):
        snap = ctx.state.current()
        source, frame = _frame(snap, frame_id)
        return frame_json(snap, source, frame, full=True)

    @router.get(
        "/detections/{detection_id}/crop.jpg",
        response_class=Response,
        responses={**_JPEG, **errors(404, 422)},
    )
    def detection_crop(detection_id: str):
        snap = ctx.state.current()
        row = _row(snap, detection_id)
        source = snap.sources[int(snap.src[row])]
        image = read_frame(source, int(snap.frame[row]))
        return _jpeg(crop(image, snap.boxes[row]))

    @router.get("/detections/{detection_id}", responses=errors(404, 422))
    def detection(detection_id: str):
        snap = ctx.state.current()
        return detection_json(snap, _row(snap, detection_id), full=True)

    # uploads -----------------------------------------------------------------------------------
    @router.post("/uploads", responses=errors(400, 413, 422), openapi_extra=_UPLOAD_BODY)
    async def upload(request: Request):
        limit_mb = ctx.max_upload_bytes / (1 << 20)
        too_large = HTTPException(413, f"the upload is larger than {limit_mb:g} MB")
        try:
            form = await read_limited_form(request, ctx.max_upload_bytes)
        except TooLarge:
            raise too_large from None
        try:
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise HTTPException(422, "send the image as the multipart field 'file'")
            others = [name for name, _ in form.multi_items() if name != "file"]
            if others or len(form.getlist("file")) > 1:
                raise HTTPException(
                    422,
                    f"send one multipart field 'file' and nothing else (got {others or 'file'})",
                )
            data = await file.read(ctx.max_upload_bytes + 1)
        finally:
            await form.close()
        if len(data) > ctx.max_upload_bytes:
            raise too_large
        try:
            item = await run_in_threadpool(ctx.uploads.add, data)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        return {"id": item.id, "width": item.width, "height": item.height}

    @router.get(
        "/uploads/{upload_id}.jpg", response_class=Response, responses={**_JPEG, **errors(404, 422)}
    )
    def upload_jpeg(upload_id: str):
        item = ctx.uploads.get(upload_id)
        if item is None:
            raise HTTPException(404, f"unknown upload id '{upload_id}' (uploads are kept a while)")
        return Response(item.jpeg, media_type="image/jpeg", headers=JPEG_HEADERS)

    # search ------------------------------------------------------------------------------------
    @router.post("/search", responses=errors(400, 404, 422))
    def search(req: SearchRequest):
        snap = ctx.state.current()
        q = req.query
        embed_ms = 0.0
        if q.detection_id is not None:
            embedding = snap.emb[_row(snap, q.detection_id)]
            how = "stored"
        elif q.track_id is not None:
            track = tracks.track_of_id(snap, q.track_id)
            if track is None:
                raise HTTPException(404, f"unknown track id '{q.track_id}'")
            embedding = tracks.lookup(snap).emb[track]
            how = "track"
        else:
            if q.frame_id is not None:
                source, frame = _frame(snap, q.frame_id)
                image = read_frame(source, frame)
                what = f"frame {q.frame_id}"
            else:
                item = ctx.uploads.get(q.upload_id)
                if item is None:
                    raise HTTPException(404, f"unknown upload id '{q.upload_id}'")
                image = item.image()
                what = f"upload {q.upload_id}"
            box = _check_box(q.box, image.shape[1], image.shape[0], what)
            t0 = time.perf_counter()
            embedding = ctx.embedder.embed(image, box[None])[0]
            embed_ms = (time.perf_counter() - t0) * 1000.0
            how = "model"
        f = req.filters
        sources = None
        if f.sources is not None:
            sources = [_source(snap, sid).index for sid in f.sources]
        filters = Filters(sources, f.time_min, f.time_max, f.min_score, f.min_similarity)
        t0 = time.perf_counter()
        if req.group == "tracks":
            lookup = tracks.lookup(snap)
            mask = filter_mask(snap.src, snap.time_s, snap.score, filters)
            ranked = rank_tracks(
                lookup, snap.emb, embedding, mask, rank_by=req.rank_by, top_k=req.top_k,
                offset=req.offset, min_similarity=f.min_similarity,
            )  # fmt: skip
            search_ms = (time.perf_counter() - t0) * 1000.0
            hits = [
                {**hit_json(snap, req.offset + i + 1, int(r), float(s)),
                 "track": track_json(snap, lookup, int(t))}
                for i, (t, r, s) in enumerate(zip(ranked.tracks, ranked.rows, ranked.similarities))
            ]  # fmt: skip
            return {
                "hits": hits,
                "total": ranked.total,
                "total_exact": True,
                "offset": req.offset,
                "top_k": req.top_k,
                "timings": {"embed_ms": round(embed_ms, 3), "search_ms": round(search_ms, 3)},
                "query": {**q.model_dump(exclude_none=True), "embedding": how},
            }
        ranking = rank(
            snap.emb, snap.src, snap.time_s, snap.score, embedding, filters,
            top_k=req.top_k, offset=req.offset, group=req.group, window_s=req.window_s,
            vectors=ctx.state.vectors, vectors_lock=ctx.state.vectors_lock,
        )  # fmt: skip
        search_ms = (time.perf_counter() - t0) * 1000.0
        hits = [
            hit_json(snap, req.offset + i + 1, int(r), float(s))
            for i, (r, s) in enumerate(zip(ranking.rows, ranking.similarities))
        ]
        return {
            "hits": hits,
            "total": ranking.total,
            "total_exact": ranking.total_exact,
            "offset": req.offset,
            "top_k": req.top_k,
            "timings": {"embed_ms": round(embed_ms, 3), "search_ms": round(search_ms, 3)},
            "query": {**q.model_dump(exclude_none=True), "embedding": how},
        }

    # jobs --------------------------------------------------------------------------------------
    @router.post("/index/jobs", status_code=202, responses=errors(400, 422))
    def submit_job(req: JobRequest):
        if ctx.jobs is None or not ctx.footage_roots:
            raise HTTPException(
                400, "this server indexes no footage: start it with --footage-root DIR"
            )
        if req.root >= len(ctx.footage_roots):
            raise HTTPException(
                400, f"root {req.root}: this server has {len(ctx.footage_roots)} footage root(s)"
            )
        files = []
        try:
            for rel in req.paths:
                files += confine_job_path(ctx.footage_roots[req.root], rel)
        except PathRefused as e:
            raise HTTPException(400, str(e)) from None
        files = list(dict.fromkeys(files))
        return ctx.jobs.submit(req.root, req.paths, files)

    @router.get("/index/jobs", responses=errors())
    def list_jobs():
        return {"jobs": ctx.jobs.list() if ctx.jobs is not None else []}

    @router.get("/index/jobs/{job_id}", responses=errors(404, 422))
    def get_job(job_id: str):
        job = ctx.jobs.get(job_id) if ctx.jobs is not None else None
        if job is None:
            raise HTTPException(404, f"unknown job id '{job_id}'")
        return job

    # session -----------------------------------------------------------------------------------
    @router.post("/session", responses=errors(400, 401, 422))
    def session(req: SessionRequest):
        if not ctx.auth.enabled:
            return {"auth": False}
        if not ctx.auth.token_matches(req.token):
            raise HTTPException(401, "wrong token")
        response = JSONResponse({"auth": True})
        response.set_cookie(
            COOKIE, ctx.auth.cookie_value, httponly=True, samesite="strict", path="/api"
        )
        return response

    return router
