"""The search service: ``python -m ian_d2.search serve INDEX`` (a FastAPI application under
uvicorn; docs/SEARCH_API.md).

Modules: :mod:`.state` (the index in memory, refreshed with new shards), :mod:`.embedder` (the
model, loaded once), :mod:`.query` (filters, ranking, grouping, paging), :mod:`.media` (frames,
crops, playable videos, Range), :mod:`.uploads` (query images), :mod:`.jobs` (indexing jobs),
:mod:`.security` (token, host, footage paths), :mod:`.schemas` and :mod:`.views` (request and
response bodies), :mod:`.api` (the routes) and :mod:`.app` (:func:`create_app`).

Names load their module on first use: importing the package imports neither FastAPI nor the
model.
"""

from ..._lazy import lazy_names

_MODULE_OF = {
    "create_app": ".app",
    "IndexState": ".state",
    "rank": ".query",
    "Filters": ".query",
}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
