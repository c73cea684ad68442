"""The search service (``python -m ian_d2.search serve``) under concurrent load, while an indexing
job appends to the index; prints JSON.

Setup: an index of ``--rows`` (10^5) stored detections, written directly with ``ShardWriter``:
stand-in random L2-normalised embeddings of the model's size (256) under a manifest created by
the indexer's own ``_open_manifest`` with the fingerprint of a small randomly initialised model
(the search tests' R-18-GN at 96x128, ``ian_d2.utils.testing.SMALL_OPTS``), so that the server
loads that model for "upload + box" queries. The stand-in rows belong to ``--videos`` fake video paths (25 fps,
sampled at the index's ``--fps``, plausible frame numbers and times) and a share of fake still
images, 0-7 detections per item, 256 items per shard (``index``'s default); the media endpoints,
which would read those files, are not benchmarked. ``--index DIR`` keeps this index in DIR (built
there when DIR holds none, reused otherwise); every run serves a fresh copy of it.

The REAL server runs as a subprocess on 127.0.0.1 (a free port) with ``--footage-root`` holding
the synthetic two-camera video (``generate_video``, ``--video-size``); it is always killed at the
end. Load, for each kind and each number of concurrent clients (``--clients``, threads of this
process, one ``httpx.Client`` each, kept-alive connections), ``--duration`` seconds (at most
``--max-requests`` per client) after ``--warmup`` untimed requests per client:

* ``find_similar``: ``POST /api/search`` by a random stored detection id (the stored embedding:
  no model call);
* ``upload_box``: ``POST /api/uploads`` once per client (a frame of the synthetic video), then
  ``POST /api/search`` with that upload id and a person's box (one model call each).

A share ``--filtered`` of the searches carries filters (two random video sources and a random
time window, or a minimum score), top ``--top-k`` hits. Recorded per (kind, clients): p50 / p99 /
mean latency (client wall clock, request sent to response body read), throughput, errors
(non-2xx, exceptions, responses without hits), the medians of the server's own ``embed_ms`` and
``search_ms``, the CPU seconds of the server and of this client process, and the share of the
phase during which the job was running. ``model_ms``: the embedder's work alone in this process
(``embed_boxes`` with the server's model, image and box; median of ``--model-calls``), in its
main thread, the only one running torch here (see ``ian_d2.search.serve.embedder`` on why that
matters); ``overhead_ms`` = upload+box p50 at the fewest clients (1) minus ``model_ms``: the
service's own cost of such a query (upload decoding, validation, ranking, JSON, HTTP).

The job: ``POST /api/index/jobs`` with the two videos, submitted when the load starts (shards of
``--job-shard-size`` items, so it commits several shards while the load runs). After the load the
benchmark waits for it (at most ``--job-timeout`` s) and checks the index: every row counted once
(stand-in rows + the rows of a reference index built directly with ``index_gallery`` on the same
videos and model in a temporary folder), the job's detections equal to the reference's, each
(source, frame) item once in the shards' items, and the server's ``/api/index`` count.
``--no-job``: no job, no integrity check (the load alone).

Goals (issue 20): find-similar p50 <= 20 ms and p99 <= 100 ms at 16 clients, upload+box overhead
<= 30 ms, no error. ``--quick``: 10^4 rows, the tiny video, one-second phases (tests).

Usage::

    python -m benchmarks.bench_serve --output benchmarks/serve_cpu.json
    python -m benchmarks.bench_serve --quick --clients 1 4

from the repository root.
"""

import argparse
import json
import logging
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from ian_d2.utils.testing import save_small_model, small_cfg  # first: silences a D2 warning

import cv2
import httpx
import numpy as np
import pyarrow.parquet as pq
import torch

from benchmarks.machine import cpu_model, load_avg, other_processes, write_json
from ian_d2.data.synthetic import generate_video
from ian_d2.search.fingerprint import inference_variant, model_fingerprint
from ian_d2.search.indexer import ImageToInput, _open_manifest, index_gallery, load_search_model
from ian_d2.search.manifest import IndexManifest
from ian_d2.search.searcher import embed_boxes, index_config
from ian_d2.search.serve.uploads import decode_image
from ian_d2.search.shards import ShardWriter, list_shards, read_shard_items, read_table
from ian_d2.search.sources import GalleryItem, read_video_frames
from ian_d2.search.store import update_vector_index
from ian_d2.search.vector_index import INDEX_KINDS, VectorIndexParams

__all__ = ["KINDS", "build_stand_in_index", "main", "parse_args", "percentile"]

logger = logging.getLogger("bench_serve")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KINDS = ("find_similar", "upload_box")
FULL = dict(rows=100_000, duration=8.0, max_requests=2000, warmup=3, model_calls=30,
            video_size="small", job_shard_size=8)  # fmt: skip
QUICK = dict(rows=10_000, duration=1.0, max_requests=200, warmup=1, model_calls=5,
             video_size="tiny", job_shard_size=4)  # fmt: skip
FAKE_ROOT = "/stand-in/footage"  # the stand-in rows' sources (no such files)
VIDEO_FPS = 25.0
STAND_IN_SHARD_ITEMS = 256  # items per shard, as ``index`` writes them by default
START_TIMEOUT = 180.0  # seconds for the server to load the model and answer
POLL_S = 0.25  # job state polling
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# machine -------------------------------------------------------------------------------------
def _code_version() -> Dict:
    """The repository's commit and its uncommitted paths (what was measured)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        return {}
    return {"commit": commit or None, "uncommitted": [line[3:] for line in status]}


def _proc_cpu_s(pid: int) -> Optional[float]:
    """User + system CPU seconds of a process (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The ``q``-th percentile (numpy's linear interpolation); None for no value."""
    return float(np.percentile(values, q)) if len(values) else None


def _r(x: Optional[float], digits: int = 2) -> Optional[float]:
    return None if x is None else round(float(x), digits)


# model and index -------------------------------------------------------------------------------
def _stand_in_items(
    rows: int, videos: int, image_share: float, rng: np.random.Generator, fps: float
) -> Tuple[List[GalleryItem], np.ndarray, List[Tuple[int, int]]]:
    """Items (fake videos' sampled frames in order, then fake still images), their detection
    counts (0-7, summing to ``rows``) and their (width, height)."""
    n = int(rows / 3.5 * 1.2) + 16
    counts = rng.integers(0, 8, n)
    cum = np.cumsum(counts)
    last = int(np.searchsorted(cum, rows))  # the item that reaches ``rows``
    counts = counts[: last + 1].copy()
    counts[-1] -= int(cum[last] - rows)
    n = len(counts)
    n_images = int(round(n * image_share))
    n_video = n - n_images
    step = VIDEO_FPS / fps if 0 < fps < VIDEO_FPS else 1.0
    items, sizes = [], []
    per_video = np.full(videos, n_video // videos)
    per_video[: n_video % videos] += 1
    for v, k in enumerate(per_video):
        path = f"{FAKE_ROOT}/cam{v + 1:02d}.mp4"
        for j in range(int(k)):
            frame = int(np.ceil(j * step - 1e-9))
            items.append(GalleryItem(path, frame, frame / VIDEO_FPS))
            sizes.append((1280, 720))
    for i in range(n_images):
        items.append(GalleryItem(f"{FAKE_ROOT}/photos/img{i + 1:05d}.jpg"))
        sizes.append((800, 600))
    return items, counts, sizes


def build_stand_in_index(
    index_dir: str,
    cfg,
    rows: int,
    *,
    fps: float = 5.0,
    videos: int = 8,
    image_share: float = 0.05,
    vector_kind: str = "flat",
    seed: int = 0,
) -> Dict:
    """
    An index of ``rows`` stand-in detections of the model of ``cfg`` (see the module docstring),
    created in ``index_dir`` (an empty or missing folder) as ``index`` would: the manifest of
    ``_open_manifest``, shards of ``ShardWriter``, the vector index of ``update_vector_index``.

    Returns:
        dict: rows, items, sources, shards, seconds.
    """
    t0 = time.perf_counter()
    manifest = _open_manifest(
        index_dir,
        model_fingerprint(cfg),
        inference_variant(cfg),
        allow_variant_mismatch=False,
        fps=fps,
        score_thresh=0.0,  # the small random model's scores are low: keep every detection
        vector_params=VectorIndexParams(kind=vector_kind),
        resume=False,
        append=False,
    )
    manifest.save(index_dir)
    dim = manifest.embed_dim
    rng = np.random.default_rng(seed)
    items, counts, sizes = _stand_in_items(rows, videos, image_share, rng, fps)
    writer = ShardWriter(index_dir, 0, dim)
    for a in range(0, len(items), STAND_IN_SHARD_ITEMS):
        b = min(a + STAND_IN_SHARD_ITEMS, len(items))
        dets = []
        for item_counts, (w, h) in zip(counts[a:b], sizes[a:b]):
            k = int(item_counts)
            bw = rng.uniform(0.04, 0.2, k) * w
            bh = np.minimum(bw * rng.uniform(1.8, 3.0, k), h * 0.95)
            x1 = rng.uniform(0, 1, k) * (w - bw)
            y1 = rng.uniform(0, 1, k) * (h - bh)
            emb = rng.standard_normal((k, dim), dtype=np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            dets.append(
                {
                    "boxes": np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32),
                    "scores": rng.uniform(0.05, 1.0, k).astype(np.float32),
                    "embeds": emb,
                }
            )
        writer.write(items[a:b], sizes[a:b], dets)
    update_vector_index(index_dir, manifest)
    return {
        "rows": int(counts.sum()),
        "items": len(items),
        "sources": len({it.source for it in items}),
        "shards": len(writer.written),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _shard_rows(index_dir: str) -> List[Tuple[str, int]]:
    """(shard stem, rows) of every committed shard."""
    return [
        (os.path.basename(p)[: -len(".parquet")], pq.read_metadata(p).num_rows)
        for p in list_shards(index_dir)
    ]


def _copy_index(src: str, dst: str) -> None:
    """The index of ``src`` (manifest, shards, vectors) copied to the new folder ``dst``."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("jobs", "media", "*.tmp.*"))


# the server --------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m ian_d2.search serve`` as a subprocess on 127.0.0.1 (its output to a log)."""

    def __init__(self, index_dir: str, footage_root: str, log_path: str, args):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.cmd = [
            sys.executable, "-m", "ian_d2.search", "serve", index_dir,
            "--host", "127.0.0.1", "--port", str(self.port), "--footage-root", footage_root,
            "--device", "cpu", "--job-shard-size", str(args.job_shard_size),
            "--job-batch-size", str(args.job_batch_size),
        ]  # fmt: skip
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def start(self) -> float:
        """Start it and wait for ``/api/index``; returns the seconds it took."""
        t0 = time.perf_counter()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        with httpx.Client(base_url=self.url, timeout=5.0, trust_env=False) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server ended:\n{self.log_tail()}")
                if time.perf_counter() - t0 > START_TIMEOUT:
                    raise RuntimeError(f"the server never answered:\n{self.log_tail()}")
                try:
                    if client.get("/api/index").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                time.sleep(0.2)

    def cpu_s(self) -> Optional[float]:
        return _proc_cpu_s(self.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None


# load ---------------------------------------------------------------------------------------------
class JobMonitor(threading.Thread):
    """Polls ``GET /api/index/jobs/{id}`` until the job ends: when it was seen running."""

    def __init__(self, url: str, job_id: str):
        super().__init__(name="job-monitor", daemon=True)
        self.url, self.job_id = url, job_id
        self.submitted = time.perf_counter()
        self.ended: Optional[float] = None
        self.last: Dict = {}
        self.stop = threading.Event()
        self.poll_errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0, trust_env=False) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(f"/api/index/jobs/{self.job_id}")
                    r.raise_for_status()
                    self.last = r.json()
                except (httpx.HTTPError, ValueError):
                    self.poll_errors += 1
                if self.last.get("state") in ("done", "failed"):
                    self.ended = time.perf_counter()
                    return
                self.stop.wait(POLL_S)

    def active_share(self, t0: float, t1: float) -> float:
        """The share of [t0, t1] during which the job was queued or running."""
        end = self.ended if self.ended is not None else time.perf_counter()
        overlap = max(0.0, min(t1, end) - max(t0, self.submitted))
        return overlap / max(t1 - t0, 1e-9)


class Workload:
    """What the clients send: request bodies of each kind (seeded)."""

    def __init__(self, args, detection_ids: List[str], sources: List[Dict], upload, box):
        self.args = args
        self.detection_ids = detection_ids
        self.sources = sources  # the stand-in videos ({"id", "duration_s"} of /api/sources)
        self.upload_bytes = upload
        self.box = [float(v) for v in box]

    def filters(self, rng: random.Random) -> Optional[Dict]:
        if rng.random() >= self.args.filtered:
            return None
        if rng.random() < 0.5:
            return {"min_score": round(rng.uniform(0.2, 0.8), 2)}
        chosen = rng.sample(self.sources, min(2, len(self.sources)))
        length = max(min(s["duration_s"] or 0.0 for s in chosen), 1.0)
        t0 = rng.uniform(0, length * 0.8)
        return {
            "sources": [s["id"] for s in chosen],
            "time_min": round(t0, 1),
            "time_max": round(t0 + rng.uniform(0.05, 0.5) * length, 1),
        }

    def body(self, kind: str, rng: random.Random, upload_id: Optional[str]) -> Dict:
        if kind == "find_similar":
            query = {"detection_id": rng.choice(self.detection_ids)}
        else:
            query = {"upload_id": upload_id, "box": self.box}
        body = {"query": query, "top_k": self.args.top_k}
        f = self.filters(rng)
        if f is not None:
            body["filters"] = f
        return body


def _client_worker(
    url: str,
    kind: str,
    work: Workload,
    seed: int,
    barrier: threading.Barrier,
    clock: Dict,
    out: Dict,
) -> None:
    """One client: (upload), warm-up, then timed searches until the phase's deadline."""
    args = work.args
    rng = random.Random(seed)
    lat, embed_ms, search_ms, errors = [], [], [], []
    empty = 0  # searches without a hit (filters that leave no row)
    upload_id = None
    with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as client:
        ready = True
        try:
            if kind == "upload_box":
                t0 = time.perf_counter()
                r = client.post(
                    "/api/uploads", files={"file": ("query.jpg", work.upload_bytes, "image/jpeg")}
                )
                out["upload_ms"] = (time.perf_counter() - t0) * 1000.0
                if r.status_code // 100 != 2:
                    raise RuntimeError(f"upload: HTTP {r.status_code} {r.text[:200]}")
                upload_id = r.json()["id"]
            for _ in range(args.warmup):
                client.post("/api/search", json=work.body(kind, rng, upload_id))
        except Exception as e:  # noqa: BLE001  (counted as an error of the phase)
            errors.append(f"setup: {type(e).__name__}: {e}"[:300])
            ready = False
        try:
            barrier.wait(timeout=300)
        except threading.BrokenBarrierError:
            ready = False
        if ready:
            deadline = clock["t0"] + args.duration
            while len(lat) < args.max_requests and time.perf_counter() < deadline:
                body = work.body(kind, rng, upload_id)
                t0 = time.perf_counter()
                try:
                    r = client.post("/api/search", json=body)
                    dt = (time.perf_counter() - t0) * 1000.0
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{type(e).__name__}: {e}"[:300])
                    continue
                lat.append(dt)
                if r.status_code // 100 != 2:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    continue
                try:
                    data = r.json()
                    timings = data["timings"]
                    hits = data["hits"]
                    q = body["query"]
                    # unfiltered by id: the query's own detection first (similarity 1)
                    if "detection_id" in q and "filters" not in body:
                        if not hits or hits[0]["detection_id"] != q["detection_id"]:
                            raise ValueError("the query detection is not the first hit")
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    errors.append(f"bad response: {e}"[:300])
                    continue
                empty += not hits
                embed_ms.append(timings["embed_ms"])
                search_ms.append(timings["search_ms"])
    out.update(lat=lat, embed_ms=embed_ms, search_ms=search_ms, errors=errors, empty=empty,
               end=time.perf_counter())  # fmt: skip


def run_phase(
    url: str, kind: str, clients: int, work: Workload, server: Server, seed: int
) -> Tuple[Dict, float, float]:
    """``clients`` concurrent clients of ``kind``; returns (record, start, end)."""
    clock: Dict = {}
    barrier = threading.Barrier(clients, action=lambda: clock.update(t0=time.perf_counter()))
    outs = [dict() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=_client_worker,
            args=(url, kind, work, seed * 1000 + i, barrier, clock, outs[i]),
            name=f"client-{i}",
        )
        for i in range(clients)
    ]
    cpu0, server0 = time.process_time(), server.cpu_s()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t0 = clock.get("t0", time.perf_counter())
    t1 = max([o.get("end", t0) for o in outs] + [t0])
    cpu1, server1 = time.process_time(), server.cpu_s()
    lat = [v for o in outs for v in o.get("lat", [])]
    errors = [e for o in outs for e in o.get("errors", [])]
    wall = max(t1 - t0, 1e-9)
    embed = [v for o in outs for v in o.get("embed_ms", [])]
    search = [v for o in outs for v in o.get("search_ms", [])]
    rec = {
        "requests": len(lat),
        "errors": len(errors),
        "empty_results": sum(o.get("empty", 0) for o in outs),
        "p50_ms": _r(percentile(lat, 50)),
        "p99_ms": _r(percentile(lat, 99)),
        "mean_ms": _r(float(np.mean(lat)) if lat else None),
        "max_ms": _r(max(lat) if lat else None),
        "throughput_rps": _r(len(lat) / wall, 1),
        "seconds": _r(wall),
        "server_embed_ms_median": _r(percentile(embed, 50), 3),
        "server_search_ms_median": _r(percentile(search, 50), 3),
        "server_search_ms_p99": _r(percentile(search, 99), 3),
        # CPU seconds over the phase (warm-up and uploads included) vs the cores' wall seconds
        "server_cpu_s": _r(server1 - server0) if None not in (server0, server1) else None,
        "client_cpu_s": _r(cpu1 - cpu0),
    }
    if kind == "upload_box":
        ups = [o["upload_ms"] for o in outs if "upload_ms" in o]
        rec["upload_ms_median"] = _r(percentile(ups, 50))
    if errors:
        rec["error_examples"] = list(dict.fromkeys(errors))[:5]
    return rec, t0, t1


# model time, job, integrity ----------------------------------------------------------------------
def _query_image(footage: str, video_size: str) -> Tuple[bytes, np.ndarray, List[float]]:
    """A frame of cam1 as JPEG bytes, the image the server decodes from them, and the box of
    the largest person in it (the first frame with one of at least 40 px height)."""
    with open(os.path.join(footage, "annotations.json")) as f:
        ann = json.load(f)["cameras"]["cam1"]
    best = None
    for i, persons in enumerate(ann["frames"]):
        boxes = [p["box"] for p in persons if p["box"][3] - p["box"][1] >= 40]
        if boxes:
            best = (i, max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))
            break
    if best is None:
        raise RuntimeError(f"no person in the synthetic video ({video_size})")
    frame, box = best
    image = read_video_frames(os.path.join(footage, ann["file"]), [frame])[frame]
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError("could not encode the query image")
    data = buf.tobytes()
    return data, decode_image(data), [float(v) for v in box]


def measure_model(cfg, model, image: np.ndarray, box: Sequence[float], calls: int) -> Dict:
    """The embedder's work alone (``embed_boxes``, what ``EagerEmbedder.embed`` runs on its
    model thread), in this thread: median (and p90) ms of ``calls`` calls after 3 warm-up
    calls."""
    to_input = ImageToInput(cfg)
    boxes = np.asarray([box], np.float32)
    for _ in range(3):
        embed_boxes(model, to_input, cfg.MODEL.DEVICE, image, boxes)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        embed_boxes(model, to_input, cfg.MODEL.DEVICE, image, boxes)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {
        "model_ms": _r(percentile(times, 50), 3),
        "model_ms_p90": _r(percentile(times, 90), 3),
        "model_calls": calls,
    }


def _wait_job(monitor: JobMonitor, args, paths: Sequence[str]) -> Dict:
    """Waits for the job (at most ``--job-timeout`` s); its state, items and time."""
    monitor.join(args.job_timeout)
    monitor.stop.set()
    job = monitor.last
    return {
        "paths": list(paths),
        "state": job.get("state"),
        "items": job.get("items_done"),
        "items_total": job.get("items_total"),
        "seconds": _r(monitor.ended - monitor.submitted) if monitor.ended else None,
        "shard_size": args.job_shard_size,
        "errors": job.get("errors"),
        "poll_errors": monitor.poll_errors,
    }


def _job_rows(index_dir: str, names: Sequence[str]) -> np.ndarray:
    """[n, 7] (file, frame, x1, y1, x2, y2, score) of the rows whose source file is one of
    ``names`` (basenames; file = its position in ``names``), sorted."""
    cols = ["source", "frame", "x1", "y1", "x2", "y2", "score"]
    t = read_table(list_shards(index_dir), cols)
    src = [os.path.basename(s) for s in t.column("source").to_pylist()]
    keep = np.asarray([s in names for s in src], bool)
    if not keep.any():
        return np.zeros((0, 7))
    file = np.asarray([names.index(s) for s, k in zip(src, keep) if k], np.float64)
    rest = [np.asarray(t.column(c).to_numpy(), np.float64)[keep] for c in cols[1:]]
    rows = np.stack([file] + rest, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def check_integrity(
    served: str, reference: str, stand_in_rows: int, names: Sequence[str], server_rows
) -> Dict:
    """Every row once: the served index vs stand-in rows + the reference index of the job's
    files (see the module docstring)."""
    rows = sum(n for _, n in _shard_rows(served))
    keys = Counter(it.key for p in list_shards(served) for it in read_shard_items(p))
    duplicates = sum(c - 1 for c in keys.values() if c > 1)
    ref_keys = {(os.path.basename(s), f) for p in list_shards(reference)
                for s, f in (it.key for it in read_shard_items(p))}  # fmt: skip
    job_keys = {(os.path.basename(s), f) for s, f in keys if os.path.basename(s) in names}
    got, ref = _job_rows(served, list(names)), _job_rows(reference, list(names))
    same = got.shape == ref.shape and bool(np.allclose(got, ref, atol=1e-3))
    expected = stand_in_rows + len(ref)
    out = {
        "rows": int(rows),
        "expected_rows": int(expected),
        "stand_in_rows": int(stand_in_rows),
        "job_rows": int(len(got)),
        "reference_rows": int(len(ref)),
        "items": len(keys),
        "job_items": len(job_keys),
        "reference_items": len(ref_keys),
        "duplicates": int(duplicates),
        "missing_items": len(ref_keys - job_keys),
        "extra_items": len(job_keys - ref_keys),
        "job_detections_match_reference": same,
        "server_detections": server_rows,
    }
    out["ok"] = bool(
        rows == expected
        and duplicates == 0
        and job_keys == ref_keys
        and same
        and server_rows == rows
    )
    return out


# main ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_serve", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="10^4 rows, tiny video, short phases")
    p.add_argument("--rows", type=int, help="stand-in detections (10^5; quick 10^4)")
    p.add_argument("--index", metavar="DIR", help="keep / reuse the stand-in index here")
    p.add_argument("--workdir", metavar="DIR", help="keep the run's files here (default: temp)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--duration", type=float, help="seconds per phase (8; quick 1)")
    p.add_argument("--max-requests", type=int, help="timed requests per client and phase")
    p.add_argument("--warmup", type=int, help="untimed requests per client first (3; quick 1)")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--filtered", type=float, default=0.25, help="share of searches with filters")
    p.add_argument("--model-calls", type=int, help="embedder calls timed in-process (30)")
    p.add_argument("--fps", type=float, default=5.0, help="the index's video sampling rate")
    p.add_argument("--videos", type=int, default=8, help="stand-in video sources")
    p.add_argument("--vector-index", choices=INDEX_KINDS, default="flat")
    p.add_argument("--video-size", choices=("tiny", "small", "default"),
                   help="the job's synthetic video (small; quick tiny)")  # fmt: skip
    p.add_argument("--job-shard-size", type=int, help="the server's items per job shard (8)")
    p.add_argument("--job-batch-size", type=int, default=4, help="the server's job batch")
    p.add_argument("--job-timeout", type=float, default=300.0)
    p.add_argument("--no-job", action="store_true", help="no indexing job (and no integrity check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.rows < 100 or args.duration <= 0 or args.max_requests < 1 or args.warmup < 0:
        p.error("--rows >= 100, --duration > 0, --max-requests >= 1, --warmup >= 0")
    return args


def _settings(args) -> Dict:
    keys = ("quick", "rows", "clients", "kinds", "duration", "max_requests", "warmup", "top_k",
            "filtered", "model_calls", "fps", "videos", "vector_index", "video_size",
            "job_shard_size", "job_batch_size", "job_timeout", "no_job", "seed")  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def _stand_in(args, work: str) -> Tuple[str, Dict]:
    """The stand-in index (built or reused) and its description."""
    index_dir = args.index or os.path.join(work, "stand_in")
    if IndexManifest.exists(index_dir):
        rows = sum(n for _, n in _shard_rows(index_dir))
        logger.info("Reusing the stand-in index %s (%d rows)", index_dir, rows)
        return index_dir, {"rows": rows, "reused": True}
    model_path = os.path.abspath(index_dir.rstrip("/\\")) + ".model.pth"
    cfg = small_cfg(save_small_model(os.path.abspath(model_path), args.seed))
    logger.info("Building a stand-in index of %d rows in %s", args.rows, index_dir)
    desc = build_stand_in_index(
        index_dir, cfg, args.rows, fps=args.fps, videos=args.videos,
        vector_kind=args.vector_index, seed=args.seed,
    )  # fmt: skip
    desc["reused"] = False
    return index_dir, desc


def run(args, work: str) -> Dict:
    stand_in, index_desc = _stand_in(args, work)
    served = os.path.join(work, "served")
    _copy_index(stand_in, served)
    manifest = IndexManifest.load(served)
    stand_in_rows = index_desc["rows"]
    shard_rows = _shard_rows(served)
    detection_ids = [f"{stem}.{r}" for stem, n in shard_rows for r in range(n)]
    index_desc.update(path=os.path.abspath(stand_in), shards=len(shard_rows),
                      embed_dim=manifest.embed_dim, fps=manifest.fps,
                      vector_index=manifest.vector_index)  # fmt: skip
    footage = os.path.join(work, "footage")
    video = generate_video(footage, size=args.video_size, seed=args.seed)
    job_paths = [n for n in video["files"] if n.endswith(".avi")]
    upload, image, box = _query_image(footage, args.video_size)

    result: Dict = {"index": index_desc}
    server = Server(served, footage, os.path.join(work, "server.log"), args)
    try:
        startup = server.start()
        result["server"] = {"startup_s": _r(startup),
                            # what it inherited (``serve`` sets OPENBLAS_NUM_THREADS=1 if unset)
                            "thread_env": {v: os.environ.get(v) for v in THREAD_VARS},
                            "command": " ".join(server.cmd[1:]).replace(work, "WORK")}  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as c:
            sources = c.get("/api/sources").json()["sources"]
        videos = [s for s in sources if s["kind"] == "video"]
        work_load = Workload(args, detection_ids, videos, upload, box)

        # the model alone, in this process (this thread: the only one running torch here, see
        # ian_d2.search.serve.embedder), while the server is idle; the server's config
        cfg = index_config(manifest, device="cpu")
        model = load_search_model(cfg)
        result.update(measure_model(cfg, model, image, box, args.model_calls))
        result["query_box"] = box
        result["query_image_size"] = [int(image.shape[1]), int(image.shape[0])]

        monitor = None
        if not args.no_job:
            with httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as c:
                r = c.post("/api/index/jobs", json={"paths": job_paths})
            if r.status_code != 202:
                raise RuntimeError(f"job submission: HTTP {r.status_code} {r.text[:300]}")
            monitor = JobMonitor(server.url, r.json()["id"])
            monitor.start()
        load: Dict[str, Dict[str, Dict]] = {}
        for kind in args.kinds:
            for clients in args.clients:
                logger.info("%s, %d client(s)", kind, clients)
                rec, t0, t1 = run_phase(server.url, kind, clients, work_load, server, args.seed)
                rec["job_active_share"] = _r(monitor.active_share(t0, t1)) if monitor else 0.0
                if kind == "upload_box" and rec["p50_ms"] is not None:
                    rec["p50_minus_model_ms"] = _r(rec["p50_ms"] - result["model_ms"])
                load.setdefault(kind, {})[str(clients)] = rec
                logger.info("%s", rec)
        result["load"] = load
        ub1 = load.get("upload_box", {}).get(str(min(args.clients)), {})
        result["overhead_ms"] = ub1.get("p50_minus_model_ms")
        result["overhead_at_clients"] = min(args.clients) if ub1 else None

        if monitor is not None:
            result["job"] = _wait_job(monitor, args, job_paths)
        with httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as c:
            server_rows = c.get("/api/index").json()["detections"]
    finally:
        server.stop()
        result.setdefault("server", {})["log_lines"] = server.log_tail(10**9).count("\n")

    if args.no_job:
        result["job"] = result["integrity"] = None
        return result
    # the reference: the job's files indexed directly, with the model the server rebuilt
    reference = os.path.join(work, "reference")
    files = [os.path.realpath(os.path.join(footage, p)) for p in job_paths]
    t0 = time.perf_counter()
    stats = index_gallery(
        cfg, files, reference, fps=manifest.fps, score_thresh=manifest.score_thresh,
        batch_size=args.job_batch_size, num_workers=0, progress=False, model=model,
    )  # fmt: skip
    result["reference"] = {"items": stats["items"], "detections": stats["detections"],
                           "seconds": _r(time.perf_counter() - t0)}  # fmt: skip
    integrity = check_integrity(served, reference, stand_in_rows, job_paths, server_rows)
    result["job"]["detections"] = integrity["job_rows"]
    result["integrity"] = integrity
    return result


def _goals(out: Dict) -> Dict:
    fs16 = out.get("load", {}).get("find_similar", {}).get("16")
    phases = [r for k in out.get("load", {}).values() for r in k.values()]
    overhead = out.get("overhead_ms")
    return {
        "find_similar_p50_le_20ms_at_16": None if fs16 is None else fs16["p50_ms"] <= 20.0,
        "find_similar_p99_le_100ms_at_16": None if fs16 is None else fs16["p99_ms"] <= 100.0,
        "upload_box_overhead_le_30ms": None if overhead is None else overhead <= 30.0,
        "zero_errors": bool(phases) and all(r["errors"] == 0 for r in phases),
    }


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    import fastapi
    import uvicorn

    out: Dict = {
        "benchmark": "serve",
        "what": "the search service as a subprocess on 127.0.0.1 under concurrent HTTP clients "
        "(threads of the benchmark process, on the same machine), an indexing job appending "
        "meanwhile",
        "settings": _settings(args),
        "code": _code_version(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_before": load_avg(),
            "busy_processes_before": other_processes(),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "fastapi": fastapi.__version__,
                "uvicorn": uvicorn.__version__,
                "httpx": httpx.__version__,
            },
        },
    }
    t0 = time.perf_counter()
    if args.workdir:
        for name in ("served", "reference", "footage", "server.log"):  # a previous run's
            path = os.path.join(args.workdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        os.makedirs(args.workdir, exist_ok=True)
        out.update(run(args, os.path.abspath(args.workdir)))
    else:
        with tempfile.TemporaryDirectory(prefix="bench_serve_") as work:
            out.update(run(args, work))
    out["seconds"] = _r(time.perf_counter() - t0, 1)
    out["machine"]["load_avg_after"] = load_avg()
    out["machine"]["busy_processes_after"] = other_processes()
    out["goals"] = _goals(out)
    if args.output:
        write_json(out, args.output)
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
