"""On-disk gallery index: a manifest, Parquet shards of detections, and faiss vector indexes.

Layout of an index folder::

    INDEX/manifest.json                  what built it: model fingerprint, settings, format
    INDEX/shards/r000-000001.parquet     detections of a batch of items (rank 0, 1st shard)
    INDEX/shards/r001-000001.parquet     ... (rank 1), one file per committed batch
    INDEX/vectors/flat.faiss             faiss index over every stored embedding
    INDEX/vectors/flat.json              which shards it covers, in which order (row ids)

Shards are the source of truth; vector indexes are derived from them and rebuilt or extended
when shards are added. A shard is written to a temporary file and renamed: a shard file is
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
"""

import functools
import glob
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..utils.io import atomic_write
from .sources import GalleryItem
from .vector_index import (
    VectorIndexParams,
    add_vectors,
    build_vector_index,
    load_vector_index,
    save_vector_index,
)

__all__ = [
    "FORMAT_VERSION",
    "IndexManifest",
    "model_fingerprint",
    "ShardWriter",
    "list_shards",
    "read_shard_items",
    "committed_keys",
    "read_table",
    "read_embeddings",
    "update_vector_index",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
VECTORS = "vectors"
_SHARD_RE = re.compile(r"^r(\d{3})-(\d{6})\.parquet$")
_ITEMS_KEY = b"ian_d2.items"
META_COLUMNS = (
    "source",
    "frame",
    "time_s",
    "image_width",
    "image_height",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
)


def _sha256(path: str) -> str:
    """SHA-256 of a file, computed once per process for a given path, size and mtime (indexing
    and querying in one process, as demo.py does, hash the weights once)."""
    st = os.stat(path)
    return _sha256_of(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def model_config_yaml(cfg) -> str:
    """The part of a config that decides what the model outputs for an image: ``MODEL`` (less
    its weights path and device) and the test-time ``INPUT`` settings, as YAML."""
    c = cfg.clone()
    c.defrost()
    c.MODEL.WEIGHTS = ""
    c.MODEL.DEVICE = "cpu"
    keep = {"MODEL": c.MODEL, "INPUT": c.INPUT}
    from detectron2.config import CfgNode

    node = CfgNode(keep)
    node.INPUT.pop("MIN_SIZE_TRAIN", None)
    node.INPUT.pop("MAX_SIZE_TRAIN", None)
    node.INPUT.pop("MIN_SIZE_TRAIN_SAMPLING", None)
    node.INPUT.pop("RANDOM_FLIP", None)
    node.INPUT.pop("CROP", None)
    return node.dump()


def _canonical_json(yaml_text: str) -> str:
    """A config's YAML as sorted JSON, so that equal configs hash equally (YAML dumps may share
    anchors or order keys differently)."""
    import yaml

    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return json.dumps(plain(yaml.safe_load(yaml_text)), sort_keys=True)


def model_fingerprint(cfg) -> Dict[str, object]:
    """
    What identifies the model that produced the embeddings of an index.

    Raises:
        ValueError: ``MODEL.WEIGHTS`` is empty or not a local file (an index of a randomly
            initialised model would be meaningless, and could not be queried again).
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.WEIGHTS is empty: a search index needs a trained model (a .pth checkpoint)"
        )
    if not os.path.isfile(weights):
        raise ValueError(f"MODEL.WEIGHTS '{weights}' does not exist (a local .pth/.pkl file)")
    yaml = model_config_yaml(cfg)
    return {
        "config_sha256": hashlib.sha256(_canonical_json(yaml).encode()).hexdigest(),
        "weights": os.path.abspath(weights),
        "weights_sha256": _sha256(weights),
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "config_yaml": yaml,
    }


@dataclass
class IndexManifest:
    """
    The ``manifest.json`` of an index.

    Attributes:
        model: :func:`model_fingerprint` of the model that built it.
        score_thresh: detections with ``score >= score_thresh`` are stored.
        fps: sampling rate of videos (frames per second of video time).
        vector_index: :class:`VectorIndexParams` of the default vector index.
        created: creation time (ISO 8601).
        format_version: :data:`FORMAT_VERSION`.
    """

    model: Dict[str, object]
    score_thresh: float
    fps: float
    vector_index: Dict[str, object] = field(default_factory=lambda: VectorIndexParams().to_dict())
    created: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def embed_dim(self) -> int:
        return int(self.model["embed_dim"])

    @property
    def vector_params(self) -> VectorIndexParams:
        return VectorIndexParams(**self.vector_index)

    def save(self, index_dir: str) -> None:
        os.makedirs(os.path.join(index_dir, SHARDS), exist_ok=True)
        os.makedirs(os.path.join(index_dir, VECTORS), exist_ok=True)
        if not self.created:
            self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = json.dumps(asdict(self), indent=1).encode()
        atomic_write(os.path.join(index_dir, MANIFEST), lambda f: f.write(data))

    @staticmethod
    def exists(index_dir: str) -> bool:
        return os.path.isfile(os.path.join(index_dir, MANIFEST))

    @classmethod
    def load(cls, index_dir: str) -> "IndexManifest":
        """
        Raises:
            ValueError: no such folder, no manifest, an unreadable manifest or another format.
        """
        if not os.path.isdir(index_dir):
            raise ValueError(f"index folder '{index_dir}' does not exist")
        path = os.path.join(index_dir, MANIFEST)
        if not os.path.isfile(path):
            raise ValueError(
                f"'{index_dir}' is not a search index: it has no {MANIFEST} (build one with "
                "`python -m ian_d2.search index`)"
            )
        try:
            with open(path) as f:
                data = json.load(f)
            manifest = cls(**data)
        except Exception as e:
            raise ValueError(f"index manifest '{path}' is not readable ({e})") from e
        if manifest.format_version != FORMAT_VERSION:
            raise ValueError(
                f"index '{index_dir}' has format version {manifest.format_version}; this code "
                f"reads version {FORMAT_VERSION}"
            )
        return manifest

    def check_model(self, fingerprint: Dict[str, object], index_dir: str) -> None:
        """
        Raises:
            ValueError: ``fingerprint`` is not the model that built the index (naming what
                differs: embedding size, weights, configuration).
        """
        mine = self.model
        problems = []
        if int(fingerprint["embed_dim"]) != int(mine["embed_dim"]):
            problems.append(
                f"embedding size {fingerprint['embed_dim']} vs the index's {mine['embed_dim']}"
            )
        if fingerprint["weights_sha256"] != mine["weights_sha256"]:
            problems.append(
                f"weights '{fingerprint['weights']}' (sha256 {fingerprint['weights_sha256'][:12]}) "
                f"vs the index's '{mine['weights']}' (sha256 {str(mine['weights_sha256'])[:12]})"
            )
        if fingerprint["config_sha256"] != mine["config_sha256"]:
            problems.append("a different model configuration (MODEL.* or test INPUT.*)")
        if problems:
            raise ValueError(
                f"index '{index_dir}' was built with another model: "
                + "; ".join(problems)
                + ". Query or append with the index's own model, or build a new index."
            )


def list_shards(index_dir: str) -> List[str]:
    """Committed shard files, sorted by (rank, sequence); temporary files are ignored."""
    names = [n for n in os.listdir(os.path.join(index_dir, SHARDS)) if _SHARD_RE.match(n)]
    return [os.path.join(index_dir, SHARDS, n) for n in sorted(names)]


def remove_partial_shards(index_dir: str) -> int:
    """Delete the temporary files that an interrupted run left; returns how many."""
    tmp = glob.glob(os.path.join(index_dir, SHARDS, "*.parquet.tmp.*"))
    for t in tmp:
        os.remove(t)
    return len(tmp)


def _shard_error(path: str, e: Exception) -> ValueError:
    return ValueError(
        f"index shard '{path}' is corrupt or not an ian_d2 shard ({type(e).__name__}: {e}). "
        "Delete it and run `python -m ian_d2.search index ... --resume`: its items are indexed "
        "again."
    )


def read_shard_items(path: str) -> List[GalleryItem]:
    """The items a shard covers (from its Parquet metadata, without reading the rows)."""
    try:
        meta = pq.read_metadata(path).metadata or {}
        items = json.loads(meta[_ITEMS_KEY])
        return [GalleryItem(str(s), int(fr), float(t)) for s, fr, t, _, _ in items]
    except Exception as e:
        raise _shard_error(path, e) from e


def committed_keys(index_dir: str) -> Set[Tuple[str, int]]:
    """``(source, frame)`` of every item of every committed shard."""
    keys = set()
    for path in list_shards(index_dir):
        keys.update(item.key for item in read_shard_items(path))
    return keys


class ShardWriter:
    """
    Writes the shards of one process (``rank``): ``r<rank>-<seq>.parquet``, the sequence number
    continuing after the process's existing shards (resume, append).
    """

    def __init__(self, index_dir: str, rank: int, embed_dim: int):
        self.dir = os.path.join(index_dir, SHARDS)
        self.rank = rank
        self.embed_dim = embed_dim
        seqs = [
            int(m.group(2))
            for m in (_SHARD_RE.match(n) for n in os.listdir(self.dir))
            if m and int(m.group(1)) == rank
        ]
        self.next_seq = max(seqs, default=0) + 1
        self.written: List[str] = []

    def write(
        self,
        items: Sequence[GalleryItem],
        sizes: Sequence[Tuple[int, int]],
        detections: Sequence[Dict[str, np.ndarray]],
    ) -> str:
        """
        Commit one shard.

        Args:
            items: the items of the batch (every one, with or without detection).
            sizes: (width, height) of each item's image.
            detections: per item, ``boxes`` [n, 4], ``scores`` [n], ``embeds`` [n, D].

        Returns:
            str: the path of the committed shard.
        """
        d = self.embed_dim
        cols: Dict[str, list] = {k: [] for k in META_COLUMNS}
        embeds = []
        for item, (w, h), det in zip(items, sizes, detections):
            n = len(det["scores"])
            cols["source"] += [item.source] * n
            cols["frame"] += [item.frame] * n
            cols["time_s"] += [item.time] * n
            cols["image_width"] += [w] * n
            cols["image_height"] += [h] * n
            b = np.asarray(det["boxes"], np.float32).reshape(n, 4)
            for k, name in enumerate(("x1", "y1", "x2", "y2")):
                cols[name] += b[:, k].tolist()
            cols["score"] += np.asarray(det["scores"], np.float32).reshape(n).tolist()
            embeds.append(np.asarray(det["embeds"], np.float32).reshape(n, d))
        emb = np.concatenate(embeds + [np.zeros((0, d), np.float32)])
        types = {
            "source": pa.string(),
            "frame": pa.int32(),
            "time_s": pa.float64(),
            "image_width": pa.int32(),
            "image_height": pa.int32(),
            "score": pa.float32(),
        }
        arrays = [pa.array(cols[k], type=types.get(k, pa.float32())) for k in META_COLUMNS]
        flat = pa.array(emb.reshape(-1), type=pa.float32())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, d))
        item_list = [[it.source, it.frame, it.time, w, h] for it, (w, h) in zip(items, sizes)]
        metadata = {
            _ITEMS_KEY: json.dumps(item_list).encode(),
            b"ian_d2.format_version": str(FORMAT_VERSION).encode(),
        }
        table = pa.Table.from_arrays(arrays, names=list(META_COLUMNS) + ["embedding"])
        table = table.replace_schema_metadata(metadata)
        path = os.path.join(self.dir, f"r{self.rank:03d}-{self.next_seq:06d}.parquet")
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        atomic_write(path, lambda f: f.write(sink.getvalue().to_pybytes()))
        self.next_seq += 1
        self.written.append(path)
        return path


def read_table(shards: Sequence[str], columns: Sequence[str] = META_COLUMNS) -> pa.Table:
    """The rows of ``shards`` (in that order) for ``columns``, one table."""
    tables = []
    for path in shards:
        try:
            tables.append(pq.read_table(path, columns=list(columns)))
        except Exception as e:
            raise _shard_error(path, e) from e
    if not tables:
        return pa.table({c: pa.array([], type=pa.float32()) for c in columns})
    return pa.concat_tables(tables)


def read_embeddings(shards: Sequence[str], embed_dim: int) -> np.ndarray:
    """[N, D] float32 embeddings of ``shards`` in order."""
    parts = []
    for path in shards:
        try:
            col = pq.read_table(path, columns=["embedding"]).column("embedding")
        except Exception as e:
            raise _shard_error(path, e) from e
        for chunk in col.chunks:
            values = chunk.values.to_numpy(zero_copy_only=False)
            if chunk.type.list_size != embed_dim:
                raise _shard_error(
                    path,
                    ValueError(f"embeddings of size {chunk.type.list_size}, expected {embed_dim}"),
                )
            parts.append(values.reshape(-1, embed_dim))
    return np.concatenate(parts + [np.zeros((0, embed_dim), np.float32)]).astype(np.float32)


def _vector_paths(index_dir: str, kind: str) -> Tuple[str, str]:
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
    faiss_path, state_path = _vector_paths(index_dir, params.kind)
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
