"""On-disk gallery index: a manifest, Parquet shards of detections, and faiss vector indexes.

Layout of an index folder::

    INDEX/manifest.json                  what built it: model fingerprint, settings, format
    INDEX/shards/r000-000001.parquet     detections of a batch of items (rank 0, 1st shard)
    INDEX/shards/r001-000001.parquet     ... (rank 1), one file per committed batch
    INDEX/vectors/flat.faiss             faiss index over every stored embedding
    INDEX/vectors/flat.json              which shards it covers, in which order (row ids)

Shards are the source of truth; vector indexes are derived from them and rebuilt or extended
when shards are added. With a Milvus vector store (``index --vector-store milvus...``, recorded
in the manifest) the vectors live in Milvus instead of ``vectors/`` (:mod:`.store_sync`). A shard is written to a temporary file and renamed: a shard file is
complete or absent, so an interrupted run loses at most the batch it was working on, and
``--resume`` skips every item of every committed shard.

Shard columns (one row per stored detection; readable with pandas / pyarrow alone):

=============  ==========================  ==============================================
column         type                        content
=============  ==========================  ==============================================
source         string                      absolute path of the image or video file
frame          int32                       frame number in the video (-1: still image)
time_s         float64                     timestamp in seconds (NaN: still image)
image_width    int32                       width of the image / frame
image_height   int32                       height
x1, y1, x2, y2 float32                     the detection box, pixels (XYXY)
score          float32                     detection score
embedding      fixed_size_list<float32>[D]  L2-normalised identity embedding
=============  ==========================  ==============================================

The Parquet key-value metadata ``ian_d2.items`` lists every item (source, frame, time, width,
height) the shard covers, including items without any detection.

Modules: :mod:`.fingerprint` (what identifies the model), :mod:`.manifest` (``manifest.json``
and the folder layout), :mod:`.shards` (the Parquet shards); this module keeps the vector
indexes up to date with the shards, and re-exports the names of the others (their import path
before they were split from it).
"""

import json
import logging
import os
from typing import List, Optional, Tuple

from ..utils.io import atomic_write
from ..utils.fingerprint import model_config_yaml, model_fingerprint
from .manifest import FORMAT_VERSION, MANIFEST, SHARDS, VECTORS, IndexManifest
from .shards import (
    META_COLUMNS,
    ShardWriter,
    committed_keys,
    list_shards,
    read_embeddings,
    read_shard_items,
    read_table,
    remove_partial_shards,
)
from .vector_index import (
    VectorIndexParams,
    add_vectors,
    build_vector_index,
    load_vector_index,
    save_vector_index,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "META_COLUMNS",
    "SHARDS",
    "VECTORS",
    "IndexManifest",
    "ShardWriter",
    "committed_keys",
    "list_shards",
    "model_config_yaml",
    "model_fingerprint",
    "read_embeddings",
    "read_shard_items",
    "read_table",
    "remove_partial_shards",
    "update_vector_index",
    "vector_paths",
]

logger = logging.getLogger(__name__)


def vector_paths(index_dir: str, kind: str) -> Tuple[str, str]:
    """(faiss file, state file) of the ``kind`` vector index of an index folder."""
    base = os.path.join(index_dir, VECTORS, kind)
    return base + ".faiss", base + ".json"


def update_vector_index(
    index_dir: str, manifest: IndexManifest, params: Optional[VectorIndexParams] = None
):
    """
    The faiss index of ``params.kind`` (default: the manifest's) over every committed shard,
    brought up to date and saved: extended with the shards added since it was saved (their rows
    get the next ids), or rebuilt when a shard it covered is gone.

    Returns:
        (faiss.Index, list[str]): the index and the shards its row ids follow, in order.
    """
    params = params or manifest.vector_params
    faiss_path, state_path = vector_paths(index_dir, params.kind)
    shards = list_shards(index_dir)
    names = [os.path.basename(s) for s in shards]
    covered: List[str] = []
    index = None
    if os.path.isfile(faiss_path) and os.path.isfile(state_path):
        with open(state_path) as f:
            state = json.load(f)
        covered = state["shards"]
        if set(covered) <= set(names):
            index = load_vector_index(faiss_path, params)
            if index.ntotal != state.get("ntotal"):  # interrupted between the two writes
                logger.warning("%s does not match its state file: rebuilding it", faiss_path)
                index, covered = None, []
        else:
            logger.warning("A shard covered by %s is gone: rebuilding it", faiss_path)
            covered = []
    new = [n for n in names if n not in set(covered)]
    order = covered + new
    paths = [os.path.join(index_dir, SHARDS, n) for n in order]
    if index is not None and not new:
        return index, paths
    if index is None:
        x = read_embeddings(paths, manifest.embed_dim)
        if params.kind == "ivf" and len(x) < 39:  # too few vectors to train cells: exact
            logger.warning("Only %d vectors: an exact (flat) index stands in for IVF", len(x))
            params = VectorIndexParams(**{**params.to_dict(), "kind": "flat"})
        index = build_vector_index(x, params)
    else:
        add_vectors(index, read_embeddings(paths[len(covered) :], manifest.embed_dim))
    save_vector_index(index, faiss_path)
    state = json.dumps({"shards": order, "ntotal": index.ntotal}).encode()
    atomic_write(state_path, lambda f: f.write(state))
    logger.info("Vector index %s: %d vectors from %d shards", faiss_path, index.ntotal, len(order))
    return index, paths
