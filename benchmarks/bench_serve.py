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
``--served-vectors``, ``--rerank``, ``--batch-window-ms``, ``--batch-max``, ``--model-batch-max``
are passed to the server when given (docs/SEARCH.md#serving-settings; else its defaults).

This module is the command line and the run; the parts are in ``benchmarks/serve/``
(``stand_in``, ``server``, ``load``, ``report``).

Usage::

    python -m benchmarks.bench_serve --output benchmarks/serve_cpu.json
    python -m benchmarks.bench_serve --quick --clients 1 4

from the repository root.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Dict

import httpx

from benchmarks.machine import write_json
from benchmarks.serve.load import (
    KINDS,
    Workload,
    measure_model,
    percentile,
    query_image,
    rounded,
    run_phase,
)
from benchmarks.serve.report import check_integrity, finish, header
from benchmarks.serve.server import THREAD_VARS, JobMonitor, Server, wait_job
from benchmarks.serve.stand_in import build_stand_in_index, copy_index, shard_rows, stand_in_index
from ian_d2.data.synthetic import generate_video
from ian_d2.search.indexer import index_gallery, load_search_model
from ian_d2.search.manifest import IndexManifest
from ian_d2.search.searcher import index_config
from ian_d2.search.vector_index import INDEX_KINDS

__all__ = ["KINDS", "build_stand_in_index", "main", "parse_args", "percentile", "run"]

logger = logging.getLogger("bench_serve")

FULL = dict(rows=100_000, duration=8.0, max_requests=2000, warmup=3, model_calls=30,
            video_size="small", job_shard_size=8)  # fmt: skip
QUICK = dict(rows=10_000, duration=1.0, max_requests=200, warmup=1, model_calls=5,
             video_size="tiny", job_shard_size=4)  # fmt: skip


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
    p.add_argument("--served-vectors", choices=("int8", "fp16", "fp32"),
                   help="the server's --served-vectors (default: the server's)")  # fmt: skip
    p.add_argument("--rerank", type=int, help="the server's --rerank")
    p.add_argument("--batch-window-ms", type=float, help="the server's --batch-window-ms")
    p.add_argument("--batch-max", type=int, help="the server's --batch-max")
    p.add_argument("--model-batch-max", type=int, help="the server's --model-batch-max")
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


def run(args, work: str) -> Dict:
    """The benchmark in the folder ``work`` (see the module docstring): the JSON's keys after
    :func:`benchmarks.serve.report.header`'s."""
    stand_in, index_desc = stand_in_index(args, work)
    served = os.path.join(work, "served")
    copy_index(stand_in, served)
    manifest = IndexManifest.load(served)
    stand_in_rows = index_desc["rows"]
    shards = shard_rows(served)
    detection_ids = [f"{stem}.{r}" for stem, n in shards for r in range(n)]
    index_desc.update(path=os.path.abspath(stand_in), shards=len(shards),
                      embed_dim=manifest.embed_dim, fps=manifest.fps,
                      vector_index=manifest.vector_index)  # fmt: skip
    footage = os.path.join(work, "footage")
    video = generate_video(footage, size=args.video_size, seed=args.seed)
    job_paths = [n for n in video["files"] if n.endswith(".avi")]
    upload, image, box = query_image(footage, args.video_size)

    result: Dict = {"index": index_desc}
    server = Server(served, footage, os.path.join(work, "server.log"), args)
    try:
        startup = server.start()
        result["server"] = {"startup_s": rounded(startup),
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
                rec["job_active_share"] = rounded(monitor.active_share(t0, t1)) if monitor else 0.0
                if kind == "upload_box" and rec["p50_ms"] is not None:
                    rec["p50_minus_model_ms"] = rounded(rec["p50_ms"] - result["model_ms"])
                load.setdefault(kind, {})[str(clients)] = rec
                logger.info("%s", rec)
        result["load"] = load
        ub1 = load.get("upload_box", {}).get(str(min(args.clients)), {})
        result["overhead_ms"] = ub1.get("p50_minus_model_ms")
        result["overhead_at_clients"] = min(args.clients) if ub1 else None

        if monitor is not None:
            result["job"] = wait_job(monitor, args, job_paths)
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
                           "seconds": rounded(time.perf_counter() - t0)}  # fmt: skip
    integrity = check_integrity(served, reference, stand_in_rows, job_paths, server_rows)
    result["job"]["detections"] = integrity["job_rows"]
    result["integrity"] = integrity
    return result


def main(argv=None) -> Dict:
    args = parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    out = header(args)
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
    out["seconds"] = rounded(time.perf_counter() - t0, 1)
    finish(out)
    if args.output:
        write_json(out, args.output)
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
