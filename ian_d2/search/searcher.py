"""Query a gallery index: embed the GIVEN query box, rank every stored detection.

:class:`GallerySearcher` opens an index, rebuilds the model that built it (its stored config,
its checkpoint, checked by hash), and ranks the stored detections by cosine similarity to the
query box's embedding with the index's vector store (:mod:`ian_d2.search.vector_store`: the
faiss index of the folder, or a Milvus collection checked against the shards at start).
Filters (:class:`~ian_d2.search.vector_store.SearchFilter`: sources, time range, minimum
score) and one hit per track apply in the store, before the top-k. The query embedding goes through
``extract_query_embeddings``, the path of the evaluator's queries: the given box, pooled and
embedded exactly as a gallery box.

With ``group="tracks"`` (:meth:`GallerySearcher.search_tracks`), the ranking has one match per
track (:mod:`ian_d2.search.tracks`): exact, over every stored embedding (loaded on first use).

:func:`write_ranking` draws the query and its matches with Detectron2's ``Visualizer`` (video
matches labelled with their time) and writes ``ranking.jpg`` and ``ranking.json``.
"""

import json
import logging
import math
import os
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.utils.visualizer import Visualizer

from ..config import add_ian_config
from ..modeling import extract_query_embeddings
from ..utils.fingerprint import DEFAULT_VARIANT, inference_variant, model_fingerprint
from .indexer import ImageToInput, load_search_model
from .manifest import IndexManifest
from .shards import list_shards, read_embeddings, read_table, shard_number
from .sources import read_image, read_video_frames
from .store import update_vector_index
from .store_sync import DEFAULT_TIMEOUT, check_vector_store, open_vector_store, row_fields
from .vector_index import VectorIndexParams, search_vectors
from .vector_store import FAISS, FaissStore, SearchFilter, split_row_key

__all__ = ["GallerySearcher", "check_query_box", "embed_boxes", "write_ranking"]

logger = logging.getLogger(__name__)


def check_query_box(box: Sequence[float], shape, image: str = "the query image") -> np.ndarray:
    """An XYXY box inside an image of shape (H, W, ...); a ValueError saying what is expected."""
    h, w = shape[:2]
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.size != 4 or not (0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h):
        raise ValueError(
            f"query box {b.tolist()} (x1 y1 x2 y2) must satisfy 0 <= x1 < x2 <= {w} and "
            f"0 <= y1 < y2 <= {h} ({image} is {w}x{h})"
        )
    return b


def embed_boxes(model, to_input: ImageToInput, device: str, image_bgr: np.ndarray, boxes):
    """
    Embeddings of given boxes of an image, computed as the gallery path computes a detection's
    (``extract_query_embeddings``).

    Args:
        model: the index's model (eval mode).
        to_input: the model's :class:`ImageToInput`.
        device: the model's device.
        image_bgr: [H, W, 3] uint8 BGR image.
        boxes: [n, 4] XYXY boxes in the image's pixels.

    Returns:
        np.ndarray: [n, D] float32, L2-normalised.
    """
    inp = to_input(image_bgr)
    inp["image"] = inp["image"].to(device)
    with torch.no_grad():
        emb = extract_query_embeddings(model, [inp], [np.asarray(boxes, np.float32)])
    return emb.float().cpu().numpy()


def index_config(manifest: IndexManifest, weights: Optional[str] = None, device: str = "cpu"):
    """The config of the model that built an index (its weights: ``weights`` or the stored
    path), checked against the index's fingerprint."""
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_other_cfg(CfgNode.load_cfg(manifest.model["config_yaml"]))
    cfg.MODEL.WEIGHTS = weights or str(manifest.model["weights"])
    cfg.MODEL.DEVICE = device
    # not in the fingerprint's config: the index's variant says which boxes it embedded
    cfg.MODEL.ROI_HEADS.EMBED_BOXES = manifest.variant.get(
        "embed_boxes", DEFAULT_VARIANT["embed_boxes"]
    )
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise ValueError(
            f"the index's model weights '{cfg.MODEL.WEIGHTS}' do not exist: pass --weights with "
            "the same checkpoint at its new place"
        )
    return cfg


class GallerySearcher:
    """
    Args:
        index_dir: an index built by ``python -m ian_d2.search index``.
        weights: the index's checkpoint at another path (checked by hash).
        device: "cpu" or "cuda".
        vector_params: another vector index kind / parameters (built if absent; faiss).
        model: an already built model of the index (tests); None builds it.
        milvus_token_file: a file with the Milvus server's token (else
            ``$IAN_D2_MILVUS_TOKEN``).
        store_timeout: seconds to wait for the Milvus server.
        allow_variant_mismatch: query an index built with another precision (an int8 or bf16
            export) with this float32 model; refused otherwise.

    Raises:
        ValueError: a Milvus store that is unreachable, of another model, or that disagrees
            with the shards (naming how; ``reindex-vectors`` repairs it).
    """

    def __init__(
        self,
        index_dir: str,
        *,
        weights: Optional[str] = None,
        device: Optional[str] = None,
        vector_params: Optional[VectorIndexParams] = None,
        model=None,
        milvus_token_file: Optional[str] = None,
        store_timeout: float = DEFAULT_TIMEOUT,
        allow_variant_mismatch: bool = False,
    ):
        self.index_dir = index_dir
        self.manifest = IndexManifest.load(index_dir)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.cfg = index_config(self.manifest, weights, device)
        self.manifest.check_model(model_fingerprint(self.cfg), index_dir)
        self.manifest.check_variant(inference_variant(self.cfg), index_dir, allow_variant_mismatch)
        self.model = model if model is not None else load_search_model(self.cfg)
        self.to_input = ImageToInput(self.cfg)
        params = vector_params or self.manifest.vector_params
        self.store_uri = self.manifest.store_uri
        self.milvus = None
        if self.store_uri == FAISS:
            self.vectors, shards = update_vector_index(index_dir, self.manifest, params)
        else:
            self.vectors, shards = None, list_shards(index_dir)
            self.milvus = open_vector_store(self.manifest, milvus_token_file, store_timeout)
            check = check_vector_store(self.milvus, row_fields(index_dir, shards))
            if not check.ok:
                self.milvus.close()
                raise ValueError(
                    check.describe(self.milvus.where)
                    + f". Repair it with `python -m ian_d2.search reindex-vectors {index_dir}`"
                )
        self.shards = shards
        self._tracks = None
        self._track_ids = None
        table = read_table(shards)
        # columns as arrays; the few distinct sources as a dictionary + one index per row
        self.table = {c: table.column(c).to_numpy() for c in table.column_names if c != "source"}
        sources = table.column("source").combine_chunks().dictionary_encode()
        self.sources = sources.dictionary.to_pylist()
        self.source_index = sources.indices.to_numpy(zero_copy_only=False)
        counts = [pq.read_metadata(p).num_rows for p in shards]
        # [S + 1] the rows of shard s are _offsets[s]:[s + 1]
        self._offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        if self.vectors is not None:
            if len(self.table["score"]) != self.vectors.ntotal:
                raise ValueError(
                    f"index '{index_dir}': {self.vectors.ntotal} vectors but "
                    f"{len(self.table['score'])} detection rows; delete '{index_dir}/vectors' "
                    "to rebuild the vector index"
                )
            self.store = FaissStore(
                self.vectors,
                self.sources,
                self.source_index,
                self.table["time_s"],
                self.table["score"],
            )
        else:
            self.store = self.milvus
            self._shard_of = {shard_number(p): s for s, p in enumerate(shards)}

    def close(self) -> None:
        """Close the Milvus client (a Milvus Lite file is then free for another process)."""
        if self.milvus is not None:
            self.milvus.close()

    @property
    def num_detections(self) -> int:
        return int(len(self.table["score"]))

    def rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """[n] rows (in :attr:`shards` order) of a Milvus store's row keys (-1: unknown)."""
        rank, seq, row = split_row_key(keys)
        out = np.full(len(rank), -1, np.int64)
        for j, (r, q, w) in enumerate(zip(rank.tolist(), seq.tolist(), row.tolist())):
            s = self._shard_of.get((r, q))
            if s is not None and w < self._offsets[s + 1] - self._offsets[s]:
                out[j] = self._offsets[s] + w
        return out

    def store_search(
        self,
        embeddings: np.ndarray,
        top_k: int,
        filters: Optional[SearchFilter] = None,
        one_per_track: bool = False,
    ):
        """
        The store's top-k rows per query embedding, ``filters`` and the grouping applied in the
        store (before the top-k).

        Returns:
            (sims, rows): per query [K'] float32 similarities and [K'] int64 rows, best first.
        """
        if one_per_track and self.vectors is not None and self.store.track is None:
            self.store.set_tracks(self.tracks()[0].track_of_row)
        sims, ids = self.store.search(embeddings, top_k, filters, one_per_track)
        if self.vectors is None:
            ids = [self.rows_of_keys(i) for i in ids]
            if any((i < 0).any() for i in ids):
                raise ValueError(
                    f"the vector store ({self.milvus.where}) returned rows of shards the index "
                    f"does not have: run `python -m ian_d2.search reindex-vectors "
                    f"{self.index_dir}`"
                )
        return sims, ids

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[n, D] embeddings of given boxes [n, 4] (original image coordinates)."""
        return embed_boxes(self.model, self.to_input, self.cfg.MODEL.DEVICE, image_bgr, boxes)

    def match(self, row: int, similarity: float) -> Dict[str, object]:
        t = self.table
        frame = int(t["frame"][row])
        time_s = float(t["time_s"][row])
        return {
            "source": self.sources[int(self.source_index[row])],
            "frame": frame if frame >= 0 else None,
            "time_s": None if math.isnan(time_s) else round(time_s, 3),
            "box": [round(float(t[k][row]), 2) for k in ("x1", "y1", "x2", "y2")],
            "score": round(float(t["score"][row]), 4),
            "similarity": float(similarity),
        }

    def search(
        self,
        embeddings: np.ndarray,
        top_k: int,
        filters: Optional[SearchFilter] = None,
        one_per_track: bool = False,
    ) -> List[Dict[str, object]]:
        """
        Rank the stored detections for each query embedding.

        Args:
            embeddings: [Q, D] query embeddings.
            top_k: matches per query.
            filters: conditions applied in the store before the top-k.
            one_per_track: at most one match (the most similar detection) per track; each
                match then carries its ``track`` (as :meth:`track_match`).

        Returns:
            list[dict]: per query, ``matches`` (best first) and ``search_ms`` (the vector search
            time of the whole batch of queries, divided by Q).
        """
        filters = filters if filters is not None and not filters.empty else None
        t0 = time.perf_counter()
        if self.vectors is not None and filters is None and not one_per_track:
            sims, ids = search_vectors(self.vectors, embeddings, top_k)
        else:
            sims, ids = self.store_search(embeddings, top_k, filters, one_per_track)
        ms = (time.perf_counter() - t0) * 1000.0 / max(len(embeddings), 1)
        out = []
        lookup = self.tracks()[0] if one_per_track else None
        for s_row, i_row in zip(sims, ids):
            if lookup is not None:
                matches = [
                    self.track_match(int(lookup.track_of_row[i]), int(i), float(s))
                    for s, i in zip(s_row, i_row)
                    if i >= 0
                ]
            else:
                matches = [self.match(int(i), float(s)) for s, i in zip(s_row, i_row) if i >= 0]
            out.append({"matches": matches, "search_ms": ms})
        return out

    def tracks(self):
        """``(TrackLookup, [N, D] embeddings)`` of the index's rows (loaded on first use)."""
        if self._tracks is None:
            from .tracks import track_lookup

            emb = read_embeddings(self.shards, self.manifest.embed_dim)
            lookup = track_lookup(
                self.index_dir,
                [os.path.basename(p) for p in self.shards],
                self._offsets,
                self.table["frame"],
                self.table["time_s"],
                self.table["score"],
                emb,
            )
            if lookup.untracked_video_rows:
                logger.warning(
                    "%d video detections of '%s' are in no track (each is its own): run "
                    "`python -m ian_d2.search tracks %s`",
                    lookup.untracked_video_rows,
                    self.index_dir,
                    self.index_dir,
                )
            self._tracks = (lookup, emb)
        return self._tracks

    def detection_id(self, row: int) -> str:
        """``<shard stem>.<row in the shard>`` of a row (as the search service names it)."""
        s = int(np.searchsorted(self._offsets, row, side="right")) - 1
        stem = os.path.splitext(os.path.basename(self.shards[s]))[0]
        return f"{stem}.{row - int(self._offsets[s])}"

    def track_id(self, track: int) -> str:
        """``<source id>.t<number>`` of a track of a video (as the search service names it),
        the detection id of a single detection."""
        from .tracks import source_key

        lookup, _ = self.tracks()
        if lookup.tracked[track]:
            return f"{source_key(lookup.source[track])}.t{int(lookup.number[track])}"
        return self.detection_id(int(lookup.best_row[track]))

    def track_of_id(self, track_id: str) -> int:
        """The track of a track id (:meth:`track_id`); a ValueError naming it if unknown."""
        lookup, _ = self.tracks()
        if self._track_ids is None:
            self._track_ids = {
                self.track_id(t): t for t in range(lookup.num_tracks) if lookup.tracked[t]
            }
        if track_id in self._track_ids:
            return self._track_ids[track_id]
        stem, _, row = str(track_id).rpartition(".")
        names = [os.path.splitext(os.path.basename(p))[0] for p in self.shards]
        if stem in names and row.isdigit():
            s = names.index(stem)
            if int(row) < self._offsets[s + 1] - self._offsets[s]:
                t = int(lookup.track_of_row[self._offsets[s] + int(row)])
                if not lookup.tracked[t]:
                    return t
        raise ValueError(
            f"track '{track_id}' is not a track of index '{self.index_dir}' (a track id is "
            "<source id>.t<number>, as in ranking.json with --group tracks)"
        )

    def query_track(
        self,
        track_id: str,
        top_k: int = 10,
        group: str = "tracks",
        rank_by: str = "best",
        filters: Optional[SearchFilter] = None,
    ) -> Dict[str, object]:
        """Search with a track's mean embedding (a track of one detection: its embedding)."""
        lookup, emb = self.tracks()
        t = self.track_of_id(track_id)
        q = lookup.emb[t][None]
        result = self._ranked(q, top_k, group, rank_by, filters)
        best = self.match(int(lookup.best_row[t]), 1.0)
        result["query"] = {
            "track": track_id,
            "source": best["source"],
            "frame": best["frame"],
            "box": best["box"],
            "num_detections": int(lookup.num_detections[t]),
        }
        result["index"] = os.path.abspath(self.index_dir)
        result["stored_detections"] = self.num_detections
        return result

    def track_match(self, track: int, row: int, similarity: float) -> Dict[str, object]:
        """:meth:`match` of a track's hit row, with the track: ``kind`` "track" (a tracked
        video appearance), "image" (a still image: a track of one detection) or "untracked" (a
        video detection outside the index's tracks), its time span and detections."""
        lookup, _ = self.tracks()
        m = self.match(row, similarity)
        if lookup.tracked[track]:
            kind = "track"
        else:
            kind = "image" if m["frame"] is None else "untracked"
        first, last = float(lookup.first_time[track]), float(lookup.last_time[track])
        m["track"] = {
            "id": self.track_id(track),
            "kind": kind,
            "number": int(lookup.number[track]) if lookup.tracked[track] else None,
            "first_frame": int(lookup.first_frame[track]) if kind != "image" else None,
            "last_frame": int(lookup.last_frame[track]) if kind != "image" else None,
            "first_time_s": None if math.isnan(first) else round(first, 3),
            "last_time_s": None if math.isnan(last) else round(last, 3),
            "num_detections": int(lookup.num_detections[track]),
        }
        return m

    def search_tracks(
        self, embeddings: np.ndarray, top_k: int, rank_by: str = "best"
    ) -> List[Dict[str, object]]:
        """
        Rank the tracks for each query embedding: one match per track (exact search; see
        :mod:`ian_d2.search.tracks.rank`).

        Args:
            embeddings: [Q, D] query embeddings.
            top_k: tracks per query.
            rank_by: "best" (the most similar detection of a track) or "mean" (its mean
                embedding).

        Returns:
            list[dict]: per query, ``matches`` (best first, each with its ``track``) and
            ``search_ms``.
        """
        from .tracks import rank_tracks

        lookup, emb = self.tracks()
        out = []
        for q in np.asarray(embeddings, np.float32).reshape(len(embeddings), -1):
            t0 = time.perf_counter()
            ranking = rank_tracks(lookup, emb, q, rank_by=rank_by, top_k=top_k)
            ms = (time.perf_counter() - t0) * 1000.0
            matches = [
                self.track_match(int(t), int(r), float(s))
                for t, r, s in zip(ranking.tracks, ranking.rows, ranking.similarities)
            ]
            out.append({"matches": matches, "search_ms": ms, "total_tracks": ranking.total})
        return out

    def _ranked(self, q, top_k, group, rank_by, filters) -> Dict[str, object]:
        """The result of one query embedding ``q`` [1, D]: per detection, or per track (in the
        store when it filters or is not faiss; else exact, :meth:`search_tracks`)."""
        filters = filters if filters is not None and not filters.empty else None
        if group != "tracks":
            return self.search(q, top_k, filters)[0]
        if filters is None and self.vectors is not None:
            result = self.search_tracks(q, top_k, rank_by)[0]
        elif rank_by != "best":
            raise ValueError(
                "--rank-by mean ranks every track's mean embedding in-process: it works with "
                "the faiss store and no filter; in the store a track ranks by its best detection"
            )
        else:
            result = self.search(q, top_k, filters, one_per_track=True)[0]
        result["group"] = {"by": "tracks", "rank_by": rank_by}
        return result

    def query(
        self,
        image: str,
        box: Sequence[float],
        top_k: int = 10,
        group: str = "none",
        rank_by: str = "best",
        filters: Optional[SearchFilter] = None,
    ) -> Dict[str, object]:
        """Search for the person in ``box`` of the image file ``image``; ``group`` "tracks":
        one match per track, ranked by ``rank_by`` (:meth:`search_tracks`); ``filters``
        applied in the store before the top-k."""
        if group not in ("none", "tracks"):
            raise ValueError(f"group must be 'none' or 'tracks', not {group!r}")
        img = read_image(image)
        b = check_query_box(box, img.shape, f"query image '{image}'")
        emb = self.embed(img, b[None])
        result = self._ranked(emb, top_k, group, rank_by, filters)
        result["query"] = {"image": os.path.abspath(image), "box": [float(v) for v in b]}
        result["index"] = os.path.abspath(self.index_dir)
        result["stored_detections"] = self.num_detections
        return result


def _draw(image_bgr: np.ndarray, box, label: str, color: str) -> np.ndarray:
    vis = Visualizer(image_bgr[:, :, ::-1])
    vis.draw_box(box, edge_color=color, line_style="-")
    vis.draw_text(label, (box[0], max(box[1] - 2, 0)), color=color, horizontal_alignment="left")
    return vis.get_output().get_image()[:, :, ::-1]


def _strip(images: List[np.ndarray], height: int = 240) -> np.ndarray:
    resized = [
        cv2.resize(im, (max(1, im.shape[1] * height // im.shape[0]), height)) for im in images
    ]
    sep = np.full((height, 6, 3), 255, np.uint8)
    out = [resized[0]]
    for im in resized[1:]:
        out += [sep, im]
    return np.concatenate(out, axis=1)


def _match_images(matches: Sequence[Dict[str, object]]) -> List[np.ndarray]:
    """The image of each match (video frames decoded once per video)."""
    frames = defaultdict(set)
    for m in matches:
        if m["frame"] is not None:
            frames[m["source"]].add(m["frame"])
    decoded = {src: read_video_frames(src, fr) for src, fr in frames.items()}
    return [
        decoded[m["source"]][m["frame"]] if m["frame"] is not None else read_image(m["source"])
        for m in matches
    ]


def write_ranking(result: Dict[str, object], out_dir: str, draw: bool = True) -> Dict[str, str]:
    """
    Write ``ranking.json`` and (``draw``) ``ranking.jpg`` (the query, yellow, then the matches,
    green, labelled with rank, similarity and, for video frames, time) to ``out_dir``.

    Returns:
        dict: the written files.
    """
    os.makedirs(out_dir, exist_ok=True)
    files = {"json": os.path.join(out_dir, "ranking.json")}
    with open(files["json"], "w") as f:
        json.dump(result, f, indent=1)
    if draw:
        q = result["query"]
        if "image" in q:
            query_image = read_image(q["image"])
        elif q["frame"] is None:  # a track query: its best detection
            query_image = read_image(q["source"])
        else:
            query_image = read_video_frames(q["source"], [q["frame"]])[q["frame"]]
        panels = [_draw(query_image, q["box"], "query", "yellow")]
        for rank, (m, img) in enumerate(
            zip(result["matches"], _match_images(result["matches"])), start=1
        ):
            label = f"#{rank} {m['similarity']:.2f}"
            if m.get("track") and m["track"]["kind"] == "track":
                tr = m["track"]
                label += (
                    f" {tr['first_time_s']:.1f}-{tr['last_time_s']:.1f}s"
                    f" ({tr['num_detections']} det)"
                )
            elif m["time_s"] is not None:
                label += f" t={m['time_s']:.1f}s"
            panels.append(_draw(img, m["box"], label, "lime"))
        files["image"] = os.path.join(out_dir, "ranking.jpg")
        cv2.imwrite(files["image"], _strip(panels))
    return files
