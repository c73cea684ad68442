"""The server side of ``bench_serve``: the REAL search service (``python -m ian_d2.search
serve``) as a subprocess on 127.0.0.1 at a free port, its CPU time, and the monitor of the
indexing job submitted to it while the load runs.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, Optional, Sequence

import httpx

__all__ = [
    "JobMonitor",
    "SERVER_SETTINGS",
    "Server",
    "THREAD_VARS",
    "free_port",
    "proc_cpu_s",
    "wait_job",
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

START_TIMEOUT = 180.0  # seconds for the server to load the model and answer
POLL_S = 0.25  # job state polling
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# ``serve`` options the benchmark passes on when given (docs/SEARCH.md#serving-settings)
SERVER_SETTINGS = ("served_vectors", "rerank", "batch_window_ms", "batch_max", "model_batch_max")


def free_port() -> int:
    """A TCP port of 127.0.0.1 free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> Optional[float]:
    """User + system CPU seconds of a process (Linux /proc), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Server:
    """``python -m ian_d2.search serve`` as a subprocess on 127.0.0.1 (its output to a log)."""

    def __init__(self, index_dir: str, footage_root: str, log_path: str, args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.cmd = [
            sys.executable, "-m", "ian_d2.search", "serve", index_dir,
            "--host", "127.0.0.1", "--port", str(self.port), "--footage-root", footage_root,
            "--device", "cpu", "--job-shard-size", str(args.job_shard_size),
            "--job-batch-size", str(args.job_batch_size),
        ]  # fmt: skip
        for name in SERVER_SETTINGS:  # given: passed on (else the server's defaults)
            if getattr(args, name, None) is not None:
                self.cmd += ["--" + name.replace("_", "-"), str(getattr(args, name))]
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
        return proc_cpu_s(self.proc.pid) if self.proc is not None else None

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


def wait_job(monitor: JobMonitor, args, paths: Sequence[str]) -> Dict:
    """Waits for the job (at most ``--job-timeout`` s); its state, items and time."""
    monitor.join(args.job_timeout)
    monitor.stop.set()
    job = monitor.last
    return {
        "paths": list(paths),
        "state": job.get("state"),
        "items": job.get("items_done"),
        "items_total": job.get("items_total"),
        "seconds": round(monitor.ended - monitor.submitted, 2) if monitor.ended else None,
        "shard_size": args.job_shard_size,
        "errors": job.get("errors"),
        "poll_errors": monitor.poll_errors,
    }
