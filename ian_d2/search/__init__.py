"""Search your own footage: a persistent gallery index of images and videos, and queries on it.

``python -m ian_d2.search index`` runs the model once over a gallery and stores every detection
(source, frame, time, box, score, embedding) in Parquet shards plus a vector store (a faiss
index in the folder, or Milvus: :mod:`.vector_store`);
``python -m ian_d2.search query`` embeds a given query box and ranks the whole index in
milliseconds. See ``store`` for the on-disk format.

The names below load their module on first use: indexing with an exported model
(``--backend onnx``, :class:`ExportedBackend`) imports no Detectron2; the eager model
(``load_search_model``, ``GallerySearcher``) does.
"""

from .._lazy import lazy_names

_MODULE_OF = {
    "INDEX_KINDS": ".vector_index",
    "VectorIndexParams": ".vector_index",
    "GalleryItem": ".sources",
    "GallerySource": ".sources",
    "expand_gallery": ".sources",
    "IndexManifest": ".manifest",
    "index_gallery": ".indexer",
    "load_search_model": ".indexer",
    "EagerBackend": ".indexer",
    "ExportedBackend": ".indexer",
    "GallerySearcher": ".searcher",
    "check_query_box": ".searcher",
    "write_ranking": ".searcher",
    "SearchFilter": ".vector_store",
    "VectorStore": ".vector_store",
    "reindex_vectors": ".store_sync",
    "reembed_index": ".reembed",
}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
