"""Indexing jobs of the search service: a queue, one worker thread, persisted, resumed.

A job indexes files under a footage root into the served index with the service's own model
(``index_gallery(..., append=True)``: items already committed are skipped), one job at a time.
Each job is a JSON file ``INDEX/jobs/<id>.json`` (written atomically at each state change and at
most once a second with its progress); a service restarted after a crash requeues the jobs that
were queued or running, and the indexer redoes nothing that was committed.

A job (the API's view, :meth:`JobManager.view`)::

    {"id", "state": "queued" | "running" | "done" | "failed", "root", "paths", "items_done",
     "items_total", "eta_s", "errors": [...], "created", "started", "finished"}
"""

import json
import logging
import os
import queue
import secrets
import threading
import time
from typing import Callable, Dict, List, Optional

from ...utils.io import atomic_write

__all__ = ["JOBS", "JobManager"]

logger = logging.getLogger(__name__)

JOBS = "jobs"
UNFINISHED = ("queued", "running")
PUBLIC = ("id", "state", "root", "paths", "items_done", "items_total", "eta_s", "errors",
          "created", "started", "finished")  # fmt: skip


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class JobManager:
    """
    Args:
        index_dir: the served index (jobs persisted under ``INDEX/jobs/``).
        backend: a callable returning the indexing backend (the service's loaded model).
        shard_size: items per committed shard of a job.
        batch_size: images per model call of a job.
        on_change: called after a job ends (e.g. to refresh the index state).
    """

    def __init__(
        self,
        index_dir: str,
        backend: Callable[[], object],
        *,
        shard_size: int = 256,
        batch_size: int = 4,
        on_change: Optional[Callable[[], None]] = None,
    ):
        self.index_dir = index_dir
        self.dir = os.path.join(index_dir, JOBS)
        self.backend = backend
        self.shard_size = int(shard_size)
        self.batch_size = int(batch_size)
        self.on_change = on_change
        self._jobs: Dict[str, Dict] = {}
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._load()

    # persistence -----------------------------------------------------------------------------
    def _load(self) -> None:
        if not os.path.isdir(self.dir):
            return
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    job = json.load(f)
                self._jobs[job["id"]] = job
            except (OSError, ValueError, KeyError) as e:
                logger.warning("Ignoring unreadable job file %s (%s)", name, e)

    def _save(self, job: Dict) -> None:
        os.makedirs(self.dir, exist_ok=True)
        data = json.dumps({k: v for k, v in job.items() if not k.startswith("_")}, indent=1)
        data = data.encode()
        atomic_write(os.path.join(self.dir, f"{job['id']}.json"), lambda f: f.write(data))
        job["_saved"] = time.monotonic()

    # API -------------------------------------------------------------------------------------
    @staticmethod
    def view(job: Dict) -> Dict:
        """The public fields of a job (no server paths)."""
        return {k: job.get(k) for k in PUBLIC}

    def submit(self, root: int, paths: List[str], files: List[str]) -> Dict:
        """
        Queue a job.

        Args:
            root: the footage root's number; paths: the paths as the client gave them.
            files: the real paths of the files to index (checked by the caller).
        """
        job = {
            "id": secrets.token_hex(8),
            "state": "queued",
            "root": int(root),
            "paths": list(paths),
            "files": list(files),
            "items_done": 0,
            "items_total": None,
            "eta_s": None,
            "errors": [],
            "created": _now(),
            "started": None,
            "finished": None,
        }
        with self._lock:
            self._jobs[job["id"]] = job
            self._save(job)
            queued = self.view(job)  # before the worker may start it
        self._queue.put(job["id"])
        logger.info("Job %s queued: %d file(s)", job["id"], len(files))
        return queued

    def get(self, job_id: str) -> Optional[Dict]:
        with self._lock:
            job = self._jobs.get(str(job_id))
            return None if job is None else self.view(job)

    def list(self) -> List[Dict]:
        """Every job, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j["created"], j["id"]), reverse=True)
            return [self.view(j) for j in jobs]

    def current(self) -> Optional[Dict]:
        """The running job, else the first queued, else the last created; None: no job."""
        jobs = self.list()
        for state in ("running", "queued"):
            mine = [j for j in jobs if j["state"] == state]
            if mine:
                return mine[-1]
        return jobs[0] if jobs else None

    # worker ----------------------------------------------------------------------------------
    def start(self, allowed: Callable[[str], bool] = lambda path: True) -> None:
        """
        Start the worker; requeue the jobs a previous run left queued or running.

        Args:
            allowed: whether a job's file may still be read (under a footage root of this
                run); a job with a file that may not fails instead of resuming.
        """
        with self._lock:
            unfinished = sorted(
                (j for j in self._jobs.values() if j["state"] in UNFINISHED),
                key=lambda j: (j["created"], j["id"]),
            )
            resumed = []
            for job in unfinished:
                if not all(allowed(f) for f in job.get("files", [])):
                    job["state"], job["finished"] = "failed", _now()
                    job["errors"] = list(job.get("errors", [])) + [
                        "not resumed: its files are not under a --footage-root of this server"
                    ]
                    logger.warning("Job %s not resumed: %s", job["id"], job["errors"][-1])
                else:
                    if job["state"] == "running":
                        logger.info("Job %s was interrupted: resuming it", job["id"])
                    job["state"] = "queued"
                    resumed.append(job)
                self._save(job)
        for job in resumed:
            self._queue.put(job["id"])
        self._thread = threading.Thread(target=self._work, name="ian_d2-index-jobs", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current batch of work (a running job stays resumable)."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is queued or running (tests); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(j["state"] in UNFINISHED for j in self._jobs.values()):
                    return True
            time.sleep(0.05)
        return False

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                break
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job["state"] != "queued":
                    continue
                job["state"] = "running"
                job["started"] = job["started"] or _now()
                self._save(job)
            try:
                self._run(job)
            except Exception as e:  # noqa: BLE001  (a job's failure must not end the worker)
                self._finish(job, "failed", e)
            else:
                self._finish(job, "done", None)

    def _finish(self, job: Dict, state: str, error: Optional[Exception]) -> None:
        if error is not None:
            if isinstance(error, ValueError):
                message = str(error)
                for f in job.get("files", []):  # name the files as the client did
                    message = message.replace(os.path.dirname(f) + os.sep, "")
                logger.warning("Job %s failed: %s", job["id"], message)
            else:
                message = f"internal error ({type(error).__name__})"
                logger.error("Job %s failed", job["id"], exc_info=error)
        with self._lock:
            job["state"] = state
            job["finished"] = _now()
            job["eta_s"] = 0.0 if state == "done" else None
            if error is not None:
                job["errors"] = list(job.get("errors", [])) + [message]
            self._save(job)
        logger.info("Job %s %s", job["id"], state)
        if self.on_change is not None:
            self.on_change()

    def _run(self, job: Dict) -> None:
        from ..indexer import index_gallery

        t0 = time.monotonic()
        first = [None]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if first[0] is None:
                first[0] = done
            rate = (done - first[0]) / max(now - t0, 1e-6)
            with self._lock:
                job["items_done"] = int(done)
                job["items_total"] = int(total)
                job["eta_s"] = round((total - done) / rate, 1) if rate > 0 else None
                if now - job.get("_saved", 0.0) >= 1.0:
                    self._save(job)

        stats = index_gallery(
            None,
            job["files"],
            self.index_dir,
            append=True,
            batch_size=self.batch_size,
            shard_size=self.shard_size,
            num_workers=0,
            progress=False,
            backend=self.backend(),
            progress_callback=progress,
        )
        with self._lock:
            job["items_total"] = job["items_done"]
        logger.info("Job %s indexed %d items (%d detections)", job["id"], stats["items"],
                    stats["detections"])  # fmt: skip
