"""The ``manifest.json`` of a search index (what built it) and the index folder's layout.

An index folder holds :data:`MANIFEST`, the Parquet shards under :data:`SHARDS` (see
:mod:`.shards`) and the faiss vector indexes under :data:`VECTORS` (see :mod:`.store`).
"""

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional

from ..utils.io import atomic_write
from ..utils.fingerprint import DEFAULT_VARIANT, check_variant
from .vector_index import VectorIndexParams
from .vector_store import FAISS

__all__ = ["FORMAT_VERSION", "MANIFEST", "SHARDS", "VECTORS", "IndexManifest"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
VECTORS = "vectors"


@dataclass
class IndexManifest:
    """
    The ``manifest.json`` of an index.

    Attributes:
        model: :func:`ian_d2.utils.fingerprint.model_fingerprint` of the model that built it.
        score_thresh: detections with ``score >= score_thresh`` are stored.
        fps: sampling rate of videos (frames per second of video time).
        vector_index: :class:`VectorIndexParams` of the default vector index.
        vector_store: where the vectors live: ``{"uri": "faiss"}`` (the index folder) or
            ``{"uri": "milvus-lite://PATH.db" | "milvus://HOST:PORT[/DB]", "collection": NAME}``
            (:mod:`.vector_store`; never a token).
        created: creation time (ISO 8601).
        format_version: :data:`FORMAT_VERSION`.
        variant: how the embeddings were computed (``embed_boxes``, ``precision``; see
            :func:`ian_d2.utils.fingerprint.inference_variant`); an index written before the
            record existed reads as :data:`~ian_d2.utils.fingerprint.DEFAULT_VARIANT`.
        reembedded_from: an index made by ``reembed`` (:mod:`.reembed`): the index whose
            detections it holds (``index``, its model's ``weights``, ``config_sha256`` and
            ``weights_sha256``, the ``time`` the re-embedding started, ``redetect``); None
            (not written) for an index built by ``index``.
    """

    model: Dict[str, object]
    score_thresh: float
    fps: float
    vector_index: Dict[str, object] = field(default_factory=lambda: VectorIndexParams().to_dict())
    vector_store: Dict[str, object] = field(default_factory=lambda: {"uri": FAISS})
    created: str = ""
    format_version: int = FORMAT_VERSION
    variant: Dict[str, str] = field(default_factory=lambda: dict(DEFAULT_VARIANT))
    reembedded_from: Optional[Dict[str, object]] = None

    @property
    def embed_dim(self) -> int:
        return int(self.model["embed_dim"])

    @property
    def store_uri(self) -> str:
        return str(self.vector_store.get("uri", FAISS))

    @property
    def vector_params(self) -> VectorIndexParams:
        return VectorIndexParams(**self.vector_index)

    def save(self, index_dir: str) -> None:
        """Write the manifest (atomically), creating the index's folders."""
        os.makedirs(os.path.join(index_dir, SHARDS), exist_ok=True)
        os.makedirs(os.path.join(index_dir, VECTORS), exist_ok=True)
        if not self.created:
            self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        record = asdict(self)
        if record["reembedded_from"] is None:
            del record["reembedded_from"]
        data = json.dumps(record, indent=1).encode()
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

    def check_variant(self, variant: Dict[str, str], index_dir: str, allow: bool = False) -> None:
        """
        Raises:
            ValueError: ``variant`` (of the model about to embed) differs from the index's,
                unless ``allow`` (see :func:`ian_d2.utils.fingerprint.check_variant`).
        """
        check_variant(self.variant, variant, f"index '{index_dir}'", allow)
