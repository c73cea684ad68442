"""What the benchmarks record about the machine they ran on, and how they write their JSON.

A figure counts only with what else was busy (the guide's rule), so every benchmark records the
CPU model, the load average and the busiest other processes, with these functions; the variant
benchmarks also record the CPU's relevant flags (:func:`cpu_record`: bf16 and int8 speed depend
on them).
"""

import json
import os
import platform
import subprocess
from typing import Dict, List, Sequence

from ian_d2.utils.io import atomic_write

__all__ = ["cpu_model", "cpu_record", "load_avg", "other_processes", "write_json"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cpu_record() -> Dict[str, object]:
    """The CPU a speed figure was measured on: its model name and the instruction-set flags
    that decide the reduced-precision variants' speed (avx2, fma, avx512f, avx512_vnni,
    avx_vnni, avx512_bf16, amx_bf16, amx_int8), with what they allow
    (:meth:`ian_d2.utils.cpu.CpuInfo.record`)."""
    from ian_d2.utils.cpu import cpu_info

    return cpu_info().record()


def load_avg() -> List[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.01."""
    return [round(v, 2) for v in os.getloadavg()]


def other_processes(n: int = 6, exclude: Sequence[int] = ()) -> List[str]:
    """The busiest other processes (lifetime CPU %, state, command), from ``ps``.

    ``ps``'s CPU % is an average over the process's life, so a process paused for the
    measurement (state ``T``, e.g. ``kill -STOP``) still shows its past load: the state says it
    took no CPU during the run.

    Args:
        n: at most this many processes.
        exclude: process ids left out besides this one (e.g. a server the benchmark started).
    """
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,stat,args", "--sort=-pcpu"], capture_output=True, text=True
        ).stdout.splitlines()[1:]
    except OSError:
        return []
    rows = []
    for line in out:
        pid, cpu, stat, args = line.strip().split(None, 3)
        if int(pid) in (os.getpid(), *exclude) or args.startswith("ps "):
            continue
        paused = " (stopped)" if stat.startswith("T") else ""
        rows.append(f"{cpu}% {stat}{paused} {args[:110]}")
        if len(rows) == n:
            break
    return rows


def write_json(out: Dict, path: str) -> None:
    """``out`` as indented JSON at ``path`` (folders created; the file appears whole)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: json.dump(out, f, indent=1), "w")
