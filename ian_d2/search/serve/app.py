"""The search service's FastAPI application: :func:`create_app`.

It loads the model and the index once, mounts the page (``/`` and ``/static/*`` from
``ian_d2/search/serve/static/``) and the ``/api`` routes (:mod:`.api`), starts the indexing job
worker (resuming unfinished jobs) and answers every error as ``{"detail": "message"}``:
validation errors 422 with a readable message, and any unexpected exception 500
``{"detail": "internal error"}`` (its traceback goes to the log, never to the client).
"""

import logging
import os
from contextlib import asynccontextmanager
from typing import Optional, Sequence

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .api import ServeContext, build_router
from .embedder import load_embedder
from .jobs import JobManager
from .matrix import ServeVectors, served_store_factory
from .media import FrameReader
from .schemas import QUERY_KINDS
from .security import TokenAuth, is_under
from .state import IndexState
from .uploads import UploadStore

__all__ = ["STATIC_DIR", "create_app"]

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MEDIA = "media"
_REQUEST_PARTS = ("body", "query", "path", "header", "cookie")


class InternalErrorMiddleware:
    """Any exception a route raises: logged with its traceback, answered 500
    ``{"detail": "internal error"}`` (if the response has not started)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:  # noqa: BLE001  (the one place that turns any failure into a 500)
            logger.exception("Internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = JSONResponse({"detail": "internal error"}, status_code=500)
                await response(scope, receive, send)


class AuthMiddleware:
    """With a token: every ``/api/*`` request but ``POST /api/session`` needs it (401)."""

    def __init__(self, app, auth: TokenAuth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and self.auth.enabled
            and (path == "/api" or path.startswith("/api/"))
            and path != "/api/session"
        ):
            request = Request(scope)
            if not self.auth.allows(request.headers, request.cookies):
                response = JSONResponse(
                    {"detail": "a token is needed: Authorization: Bearer <token>, or POST it to "
                     "/api/session"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    """One line per problem: ``field.path: message`` (without the request part, ``body``,
    ``query``..., and without the tag of the query's kind, :data:`.schemas.QUERY_KINDS`)."""
    lines = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if len(loc) > 3 and loc[:2] == ["body", "query"] and loc[2] in QUERY_KINDS:
            del loc[2]  # the union's tag: the field itself follows
        loc = [str(p) for p in loc if p not in _REQUEST_PARTS]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(lines) or "invalid request"


def _printable(detail) -> str:
    """An error's detail as text that encodes as UTF-8: a message that quotes the request (an
    unknown id, a refused path, a field name) may hold a lone surrogate (``"\\ud800"`` in JSON),
    written as that escape instead of failing the answer."""
    return str(detail).encode("utf-8", "backslashreplace").decode("utf-8")


def create_app(
    index_dir: str,
    *,
    backend: str = "pytorch",
    exported_model: Optional[str] = None,
    weights: Optional[str] = None,
    device: Optional[str] = None,
    model=None,
    embedder=None,
    allow_variant_mismatch: bool = False,
    footage_roots: Sequence[str] = (),
    token: Optional[str] = None,
    max_upload_mb: float = 20.0,
    job_shard_size: int = 256,
    job_batch_size: int = 4,
    start_jobs: bool = True,
    vectors: Optional[ServeVectors] = None,
    model_batch_max: Optional[int] = None,
) -> FastAPI:
    """
    The search service of an index.

    Args:
        index_dir: an index built by ``python -m ian_d2.search index``.
        backend: "pytorch" (the index's Detectron2 model) or "onnx" / "torchscript" (the model
            exported to ``exported_model`` by ``python -m ian_d2.export``).
        weights: pytorch: the index's checkpoint at another path (checked by hash).
        device: pytorch: "cpu" or "cuda" (default: cuda if available).
        model: pytorch: the index's already built model (tests).
        embedder: an already loaded :mod:`.embedder` model (tests; replaces the above).
        allow_variant_mismatch: accept a model of another inference variant (precision,
            ``EMBED_BOXES``) than the index's for queries (indexing jobs still refuse it).
        footage_roots: folders whose files jobs may index (none: no jobs).
        token: the API's secret (None: no check; only for a loopback service).
        max_upload_mb: the size limit of uploaded images.
        job_shard_size, job_batch_size: indexing jobs' items per shard and images per model
            call.
        start_jobs: start the job worker (resuming unfinished jobs).
        vectors: the served embeddings (compact codes, batching; default :class:`ServeVectors`).
        model_batch_max: pytorch: concurrent queries' images of one size per model call
            (None: 4 on a GPU, 1 on the CPU).

    Raises:
        ValueError: no index, another model than the index's, a footage root that is not a
            folder.
    """
    state = IndexState(index_dir, served_store_factory(vectors, index_dir))
    if embedder is None:
        embedder = load_embedder(
            index_dir, state.manifest, backend=backend, exported_model=exported_model,
            weights=weights, device=device, model=model,
            allow_variant_mismatch=allow_variant_mismatch, max_images=model_batch_max,
        )  # fmt: skip
    roots = []
    for root in footage_roots:
        if not os.path.isdir(root):
            raise ValueError(f"--footage-root '{root}' is not a folder")
        roots.append(os.path.realpath(root))
    jobs = JobManager(
        index_dir, embedder.backend, shard_size=job_shard_size, batch_size=job_batch_size
    )
    ctx = ServeContext(
        index_dir=index_dir,
        state=state,
        embedder=embedder,
        uploads=UploadStore(),
        frames=FrameReader(),
        auth=TokenAuth(token),
        media_dir=os.path.join(index_dir, MEDIA),
        jobs=jobs,
        footage_roots=roots,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
    )

    @asynccontextmanager
    async def lifespan(app):
        yield
        jobs.close()

    app = FastAPI(
        title="ian_d2 person search",
        description="Search an ian_d2 gallery index (docs/SEARCH_API.md)",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.ctx = ctx

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return JSONResponse({"detail": _printable(_validation_message(exc))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return JSONResponse(
            {"detail": _printable(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    app.include_router(build_router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    def page():
        index_html = os.path.join(STATIC_DIR, "index.html")
        if not os.path.isfile(index_html):
            return JSONResponse({"detail": "the page is not installed"}, status_code=404)
        return FileResponse(index_html, media_type="text/html")

    app.add_middleware(AuthMiddleware, auth=ctx.auth)
    app.add_middleware(InternalErrorMiddleware)
    if start_jobs:
        jobs.start(allowed=lambda path: any(is_under(os.path.realpath(path), r) for r in roots))
    return app
