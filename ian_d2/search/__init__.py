"""Search your own footage: a persistent gallery index of images and videos, and queries on it.

``python -m ian_d2.search index`` runs the model once over a gallery and stores every detection
(source, frame, time, box, score, embedding) in Parquet shards plus a faiss vector index;
``python -m ian_d2.search query`` embeds a given query box and ranks the whole index in
milliseconds. See ``store`` for the on-disk format.
"""

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from .indexer import index_gallery, load_search_model
from .searcher import GallerySearcher, check_query_box, write_ranking
from .sources import GalleryItem, GallerySource, expand_gallery
from .store import IndexManifest
from .vector_index import INDEX_KINDS, VectorIndexParams

__all__ = [
    "INDEX_KINDS",
    "GalleryItem",
    "GallerySearcher",
    "GallerySource",
    "IndexManifest",
    "VectorIndexParams",
    "check_query_box",
    "expand_gallery",
    "index_gallery",
    "load_search_model",
    "write_ranking",
]
