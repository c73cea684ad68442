"""Load generation of ``bench_serve``: the request bodies (:class:`Workload`: find-similar by a
stored detection id, upload + box, a share with filters), one client thread
(:func:`_client_worker`: upload, warm-up, timed searches until the phase's deadline), a phase of
concurrent clients with its record (:func:`run_phase`: percentiles, throughput, errors, CPU
seconds), the query image and the embedder's work alone in this process (:func:`measure_model`).
"""

import json
import os
import random
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import httpx
import numpy as np

from benchmarks.serve.server import Server
from ian_d2 import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from ian_d2.search.indexer import ImageToInput
from ian_d2.search.searcher import embed_boxes
from ian_d2.search.serve.uploads import decode_image
from ian_d2.search.sources import read_video_frames

__all__ = [
    "KINDS",
    "Workload",
    "measure_model",
    "percentile",
    "query_image",
    "rounded",
    "run_phase",
]

KINDS = ("find_similar", "upload_box")


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The ``q``-th percentile (numpy's linear interpolation); None for no value."""
    return float(np.percentile(values, q)) if len(values) else None


def rounded(x: Optional[float], digits: int = 2) -> Optional[float]:
    """``x`` rounded to ``digits`` decimals as a float (None stays None)."""
    return None if x is None else round(float(x), digits)


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
        "p50_ms": rounded(percentile(lat, 50)),
        "p99_ms": rounded(percentile(lat, 99)),
        "mean_ms": rounded(float(np.mean(lat)) if lat else None),
        "max_ms": rounded(max(lat) if lat else None),
        "throughput_rps": rounded(len(lat) / wall, 1),
        "seconds": rounded(wall),
        "server_embed_ms_median": rounded(percentile(embed, 50), 3),
        "server_search_ms_median": rounded(percentile(search, 50), 3),
        "server_search_ms_p99": rounded(percentile(search, 99), 3),
        # CPU seconds over the phase (warm-up and uploads included) vs the cores' wall seconds
        "server_cpu_s": rounded(server1 - server0) if None not in (server0, server1) else None,
        "client_cpu_s": rounded(cpu1 - cpu0),
    }
    if kind == "upload_box":
        ups = [o["upload_ms"] for o in outs if "upload_ms" in o]
        rec["upload_ms_median"] = rounded(percentile(ups, 50))
    if errors:
        rec["error_examples"] = list(dict.fromkeys(errors))[:5]
    return rec, t0, t1


def query_image(footage: str, video_size: str) -> Tuple[bytes, np.ndarray, List[float]]:
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
        "model_ms": rounded(percentile(times, 50), 3),
        "model_ms_p90": rounded(percentile(times, 90), 3),
        "model_calls": calls,
    }
