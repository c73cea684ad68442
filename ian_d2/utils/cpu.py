"""What the CPU can do for reduced precision: its model name and the instruction-set flags that
decide whether bfloat16 and int8 run on native kernels (no torch import).

* **native bfloat16**: ``avx512_bf16`` (AVX-512 BF16, e.g. AMD Zen 4, Intel Cooper Lake and
  later) or ``amx_bf16`` (Intel AMX, Sapphire Rapids and later), or ``bf16`` on Arm. Without
  them oneDNN emulates bfloat16 convolutions with float32 arithmetic plus conversions: slower
  than float32 (issue 29: a TorchScript bf16 R-50 at 900x1500 took 55.3 s per image where eager
  float32 took 14.4 s on an AMD EPYC Zen 3 with AVX2 + FMA only).
* **int8 dot products**: ``avx512_vnni``, ``avx_vnni`` or ``amx_int8``. ONNX Runtime's int8
  kernels run without them too (on AVX2), only with less gain.

The flags come from ``/proc/cpuinfo`` (Linux); elsewhere from PyTorch's CPU capability checks.
Tests inject a :class:`CpuInfo` (or monkeypatch :func:`cpu_info`) instead of reading the machine.
"""

import functools
import platform
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional

__all__ = [
    "BF16_FLAGS",
    "INT8_FLAGS",
    "RELEVANT_FLAGS",
    "CpuInfo",
    "cpu_info",
    "read_cpuinfo",
]

#: The flags recorded with every speed figure (``bench_variants``) and logged by the automatic
#: precision choice.
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
)
#: Any of these: bfloat16 convolutions run on native kernels (``bf16``: Arm's BF16 extension).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
#: Any of these: int8 dot-product instructions (VNNI or AMX).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    """
    A CPU's model name and flags.

    Args:
        model: the model name (``/proc/cpuinfo``'s ``model name``).
        flags: its instruction-set flags, lower case, as ``/proc/cpuinfo`` spells them.
        source: where they were read ("/proc/cpuinfo", "torch", "injected", ...).
    """

    model: str
    flags: FrozenSet[str] = field(default_factory=frozenset)
    source: str = "injected"

    @property
    def native_bf16(self) -> bool:
        """True when bfloat16 convolutions run on native kernels (:data:`BF16_FLAGS`)."""
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        """True when the CPU has int8 dot-product instructions (:data:`INT8_FLAGS`)."""
        return any(f in self.flags for f in INT8_FLAGS)

    def relevant_flags(self) -> Dict[str, bool]:
        """{flag: present} of :data:`RELEVANT_FLAGS`."""
        return {f: f in self.flags for f in RELEVANT_FLAGS}

    def summary(self) -> str:
        """One line for logs and messages: the model and the relevant flags it has."""
        have = [f for f in RELEVANT_FLAGS if f in self.flags]
        return f"CPU '{self.model}' ({', '.join(have) or 'none of ' + ', '.join(RELEVANT_FLAGS)})"

    def record(self) -> Dict[str, object]:
        """The JSON record of benchmarks and manifests: model, relevant flags, what they allow."""
        return {
            "model": self.model,
            "flags": self.relevant_flags(),
            "native_bf16": self.native_bf16,
            "int8_dot_product": self.int8_dot,
            "source": self.source,
        }


def read_cpuinfo(path: str = "/proc/cpuinfo") -> Optional[CpuInfo]:
    """
    The first processor of a ``/proc/cpuinfo``-format file.

    Args:
        path: the file (tests give their own).

    Returns:
        CpuInfo, or None when the file cannot be read or lists no flags.
    """
    model, flags = None, None
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    continue
                key = key.strip().lower()
                if key in ("model name", "cpu model", "hardware") and model is None:
                    model = value.strip()
                elif key in ("flags", "features") and flags is None:
                    flags = frozenset(value.lower().split())
                if model is not None and flags is not None:
                    break
    except OSError:
        return None
    if flags is None:
        return None
    return CpuInfo(model or platform.processor() or "unknown", flags, path)


def _torch_cpu_info() -> CpuInfo:
    """The flags PyTorch's CPU capability checks report (where ``/proc/cpuinfo`` is missing)."""
    flags = set()
    try:
        import torch

        checks = {
            "avx2": "_is_avx2_supported",
            "avx512f": "_is_avx512_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
            "avx512_vnni": "_is_vnni_supported",
            "amx_bf16": "_is_amx_tile_supported",
        }
        for flag, name in checks.items():
            fn = getattr(torch.cpu, name, None)
            if fn is not None and fn():
                flags.add(flag)
    except ImportError:
        pass
    return CpuInfo(
        platform.processor() or platform.machine() or "unknown", frozenset(flags), "torch"
    )


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (read once): ``/proc/cpuinfo``, else PyTorch's capability checks."""
    return read_cpuinfo() or _torch_cpu_info()
