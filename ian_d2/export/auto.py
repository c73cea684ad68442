"""``--precision auto``: the inference variant for the CPU at hand, and the guard that keeps
bfloat16 off CPUs without native bfloat16 kernels.

Which variant is fastest depends on the CPU (issue 29, R-50 at 900x1500, seconds per image):
on an Intel Xeon with AMX and AVX-512 BF16 / VNNI, eager fp32 5.46, ONNX fp32 2.42, TorchScript
bf16 1.54, ONNX int8 1.12; on an AMD EPYC Zen 3 (AVX2 + FMA only) eager fp32 14.43, ONNX fp32
8.63, TorchScript bf16 **55.26** (3.8x slower than fp32: oneDNN emulates bfloat16), ONNX int8
4.50. So the choice is made in two steps:

1. **capabilities** (:mod:`ian_d2.utils.cpu`): bf16 is a candidate only where the CPU has
   ``avx512_bf16`` or ``amx_bf16`` (``bf16`` on Arm);
2. **a short measurement** of the remaining candidates (:func:`time_passes`: one untimed pass
   (two for TorchScript), then up to :data:`MEASURE_MAX_PASSES` timed ones, stopping once :data:`MEASURE_BUDGET_S`
   seconds are spent) on a random image of the model's input size, scaled down to at most
   :data:`MEASURE_MAX_PIXELS` pixels (an R-50 pass at 900x1500 takes 5-15 s: the full size would
   not fit in a few seconds); the fastest wins, a bf16 / int8 one only when at least
   :data:`MIN_GAIN` times faster than fp32 (it changes the results; a near tie is noise).

int8 needs calibration images (ONNX Runtime's static quantization), which ``auto`` does not
choose: an export with ``--precision auto`` considers fp32 and bf16 only and says so (pick int8
explicitly: ``--precision int8 --calibration-images DIR_OR_LIST``); ``index`` / ``serve`` with
``--precision auto`` consider an int8 export when one of the given export folders holds it (it
was calibrated when exported).

The measurement is a callable (``measure(candidate) -> seconds per image``): tests inject one
that times nothing, and a :class:`~ian_d2.utils.cpu.CpuInfo` with the flags they need.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..utils.cpu import BF16_FLAGS, CpuInfo, cpu_info

__all__ = [
    "AUTO",
    "FORCE_FLAG",
    "MEASURE_BUDGET_S",
    "MEASURE_MAX_PASSES",
    "MEASURE_MAX_PIXELS",
    "MIN_GAIN",
    "Candidate",
    "VariantChoice",
    "bf16_cost",
    "check_bf16",
    "choose_export_precision",
    "choose_variant",
    "eager_measure",
    "measure_eager",
    "measure_exported",
    "measurement_size",
    "time_passes",
]

logger = logging.getLogger(__name__)

AUTO = "auto"
#: The command-line flag that runs bf16 on a CPU without native bf16 anyway.
FORCE_FLAG = "--force-precision"
#: The measurement image: the model's input size scaled down to at most this many pixels
#: (300x400, the demo model's size).
MEASURE_MAX_PIXELS = 300 * 400
#: Timed passes of one candidate stop once they took this long (at least one is timed).
MEASURE_BUDGET_S = 2.0
MEASURE_MAX_PASSES = 3
#: A bf16 / int8 candidate is picked over fp32 only when at least this much faster (its results
#: differ from fp32's by rounding; a near tie is within the measurement's noise).
MIN_GAIN = 1.1
#: What bf16 costs without native kernels, measured on issue 29's machine.
ISSUE_BF16_COST = (
    "on an AMD EPYC Zen 3 (AVX2 + FMA, no AVX-512 BF16 / AMX) TorchScript bf16 took 55.3 s per "
    "image where eager fp32 took 14.4 s (R-50, 900x1500; issue 29)"
)


@dataclass(frozen=True)
class Candidate:
    """
    One inference variant that ``auto`` may pick.

    Args:
        precision: "fp32", "bf16" or "int8".
        runtime: "torchscript", "onnx" (exports) or "eager".
        folder: the export folder holding it (``index`` / ``serve``); None for an export to be.
    """

    precision: str
    runtime: str
    folder: Optional[str] = None

    @property
    def name(self) -> str:
        base = f"{self.runtime} {self.precision}"
        return f"{base} ({self.folder})" if self.folder else base


@dataclass
class VariantChoice:
    """
    What ``auto`` picked and why.

    Attributes:
        chosen: the picked candidate.
        reason: why, in words.
        measured: {candidate name: seconds per image} (empty: nothing to measure).
        size: (h, w) of the measurement image (None: nothing measured).
        left_out: {candidate name or precision: why it was not considered}.
        cpu: the CPU the choice was made for.
    """

    chosen: Candidate
    reason: str
    measured: Dict[str, float] = field(default_factory=dict)
    size: Optional[Tuple[int, int]] = None
    left_out: Dict[str, str] = field(default_factory=dict)
    cpu: Optional[CpuInfo] = None

    def record(self) -> Dict[str, object]:
        """The JSON record (an export's manifest keeps it as ``precision_auto``)."""
        return {
            "chosen": {"precision": self.chosen.precision, "runtime": self.chosen.runtime},
            "reason": self.reason,
            "measured_sec_per_image": {k: round(v, 4) for k, v in self.measured.items()},
            "measure_size": list(self.size) if self.size else None,
            "left_out": dict(self.left_out),
            "cpu": self.cpu.record() if self.cpu else None,
        }

    def message(self) -> str:
        """One log line: the pick, the CPU, the measured seconds and what was left out."""
        parts = [f"precision auto: picked {self.chosen.name}: {self.reason}"]
        if self.cpu is not None:
            parts.append(self.cpu.summary())
        if self.measured:
            h, w = self.size or (0, 0)
            times = ", ".join(f"{k} {v:.3f}" for k, v in self.measured.items())
            parts.append(f"measured s/image at {h}x{w}: {times}")
        for k, why in self.left_out.items():
            parts.append(f"not considered: {k} ({why})")
        return "; ".join(parts)


def measurement_size(
    min_size: int, max_size: int, max_pixels: int = MEASURE_MAX_PIXELS
) -> Tuple[int, int]:
    """
    (h, w) of the measurement image: the model's input size (``min_size`` x ``max_size``, a
    landscape frame) scaled down to at most ``max_pixels`` pixels, aspect kept.

    Raises:
        ValueError: a size or pixel budget < 1.
    """
    if min(min_size, max_size, max_pixels) < 1:
        raise ValueError(
            f"measurement size: min_size {min_size}, max_size {max_size} and max_pixels "
            f"{max_pixels} must be >= 1"
        )
    h, w = int(min_size), int(max_size)
    scale = min(1.0, (max_pixels / float(h * w)) ** 0.5)
    return max(32, int(round(h * scale))), max(32, int(round(w * scale)))


def time_passes(
    fn: Callable[[], object],
    budget_s: float = MEASURE_BUDGET_S,
    max_passes: int = MEASURE_MAX_PASSES,
    clock: Callable[[], float] = time.perf_counter,
    warmup: int = 1,
) -> float:
    """
    Seconds per call of ``fn``: ``warmup`` untimed calls, then timed calls until
    ``max_passes`` or until they took ``budget_s`` together (at least one); their mean.
    """
    for _ in range(warmup):
        fn()
    times: List[float] = []
    while len(times) < max(1, max_passes):
        t = clock()
        fn()
        times.append(clock() - t)
        if sum(times) >= budget_s:
            break
    return sum(times) / len(times)


def _random_image(size: Tuple[int, int]):
    """A reproducible [3, h, w] float32 image of values 0-255 (numpy)."""
    import numpy as np

    h, w = size
    return np.random.RandomState(0).uniform(0, 255, (3, h, w)).astype(np.float32)


def measure_eager(model, size: Tuple[int, int], **timing) -> float:
    """Seconds per image of an eager model (float32, or with :func:`~.precision.bf16_trunks`)
    on a random image of ``size``: its gallery path, what the gallery export computes."""
    import torch

    from .trace import gallery_inference

    x = torch.from_numpy(_random_image(size))

    def run():
        with torch.no_grad():
            gallery_inference(model, x)

    return time_passes(run, **timing)


def measure_exported(candidate: Candidate, size: Tuple[int, int], **timing) -> float:
    """Seconds per image of the export ``candidate.folder`` run by ``candidate.runtime`` on a
    random image of ``size`` (loading the runtime is not timed; TorchScript gets two warm-up
    passes: its profiling executor optimises the graph on the second call)."""
    from . import runtime as rt

    model = rt.PersonSearchModel(candidate.folder, candidate.runtime)
    h, w = size
    inp = {"image": _random_image(size), "height": h, "width": w}
    timing.setdefault("warmup", 2 if candidate.runtime == "torchscript" else 1)
    return time_passes(lambda: model.detect_preprocessed(inp), **timing)


def _no_native_bf16(cpu: CpuInfo) -> str:
    return f"no native bfloat16 on {cpu.summary()}: none of {', '.join(BF16_FLAGS)}"


def choose_variant(
    candidates: Sequence[Candidate],
    measure: Callable[[Candidate], float],
    *,
    cpu: Optional[CpuInfo] = None,
    size: Optional[Tuple[int, int]] = None,
    left_out: Optional[Dict[str, str]] = None,
    native_only: bool = True,
) -> VariantChoice:
    """
    Pick the fastest of ``candidates`` that the CPU runs natively (a bf16 / int8 one only when
    :data:`MIN_GAIN` times faster than the fastest fp32 one), and log why.

    Args:
        candidates: the variants available (at least one).
        measure: seconds per image of a candidate (:func:`measure_eager` /
            :func:`measure_exported` bound to the model; tests inject their own). Called only
            when two or more candidates remain.
        cpu: the CPU's capabilities (default: this machine's, :func:`~ian_d2.utils.cpu.cpu_info`).
        size: the measurement image's (h, w), for the record.
        left_out: variants already ruled out by the caller, with why (kept in the record).
        native_only: rule out bf16 on a CPU without native bfloat16 (False: the caller asked
            for bf16 and :func:`check_bf16` let it through).

    Returns:
        VariantChoice: logged at INFO.

    Raises:
        ValueError: no candidate, or none left once bf16 without native kernels is ruled out.
    """
    cpu = cpu or cpu_info()
    left_out = dict(left_out or {})
    if not candidates:
        raise ValueError("precision auto: no inference variant to choose from")
    kept = []
    for c in candidates:
        if native_only and c.precision == "bf16" and not cpu.native_bf16:
            left_out[c.name] = _no_native_bf16(cpu) + " (oneDNN emulates it: slower than fp32)"
        else:
            kept.append(c)
    if not kept:
        raise ValueError(
            "precision auto: every candidate is bf16 and this CPU has no native bfloat16 ("
            f"{_no_native_bf16(cpu)}); give an fp32 or int8 export, or --precision bf16 "
            f"{FORCE_FLAG}"
        )
    if len(kept) == 1:
        choice = VariantChoice(kept[0], "the only candidate left", {}, None, left_out, cpu)
    else:
        measured = {c.name: float(measure(c)) for c in kept}
        best = min(kept, key=lambda c: measured[c.name])
        reason = "the fastest measured"
        if best.precision == "bf16" and cpu.native_bf16:
            reason += " (native bfloat16)"
        fp32 = [c for c in kept if c.precision == "fp32"]
        if best.precision != "fp32" and fp32:
            ref = min(fp32, key=lambda c: measured[c.name])
            if measured[best.name] * MIN_GAIN > measured[ref.name]:
                reason = (
                    f"fp32 kept: {best.name} measured less than {MIN_GAIN:.2f}x faster, and "
                    "reduced precision changes the results"
                )
                best = ref
        choice = VariantChoice(best, reason, measured, size, left_out, cpu)
    logger.info(choice.message())
    return choice


def check_bf16(
    cpu: Optional[CpuInfo],
    force: bool,
    what: str,
    measure_cost: Optional[Callable[[], Tuple[float, Optional[float], Tuple[int, int]]]] = None,
    error: type = ValueError,
) -> Optional[Dict[str, float]]:
    """
    Refuse bf16 on a CPU without native bfloat16 unless ``force``; when forced, warn with the
    measured cost.

    Args:
        cpu: the CPU (default: this machine's).
        force: run it anyway (``--force-precision``).
        what: what runs in bf16, for the messages ("export", "export folder 'x'").
        measure_cost: () -> (bf16 seconds, fp32 seconds or None, (h, w)) per image, called
            only when forced on a CPU without native bf16 (None: the warning quotes issue 29's
            figures; fp32 None: no fp32 variant at hand to compare, issue 29's quoted).
        error: the exception type raised (``ExportError`` for the export).

    Returns:
        None on a CPU with native bf16; else (forced) {"bf16_s", "fp32_s"} measured, or {}.

    Raises:
        error: a CPU without native bf16 and not ``force``, naming the flags and the cost.
    """
    cpu = cpu or cpu_info()
    if cpu.native_bf16:
        return None
    if not force:
        raise error(
            f"precision bf16 ({what}) on a CPU without native bfloat16: {_no_native_bf16(cpu)}. "
            f"oneDNN emulates it, slower than fp32: {ISSUE_BF16_COST}. Use --precision fp32 "
            f"or auto, or {FORCE_FLAG} to run bf16 anyway"
        )
    if measure_cost is None:
        logger.warning(
            "precision bf16 (%s) forced on a CPU without native bfloat16 (%s): expect it slower "
            "than fp32; %s",
            what,
            _no_native_bf16(cpu),
            ISSUE_BF16_COST,
        )
        return {}
    bf16_s, fp32_s, (h, w) = measure_cost()
    if fp32_s is None:
        logger.warning(
            "precision bf16 (%s) forced on a CPU without native bfloat16 (%s): measured here "
            "%.3f s per image at %dx%d (no fp32 variant given to compare; %s)",
            what,
            _no_native_bf16(cpu),
            bf16_s,
            h,
            w,
            ISSUE_BF16_COST,
        )
        return {"bf16_s": bf16_s}
    logger.warning(
        "precision bf16 (%s) forced on a CPU without native bfloat16 (%s): measured here "
        "%.3f s per image in bf16 vs %.3f s in fp32 at %dx%d (%.2fx the fp32 time)",
        what,
        _no_native_bf16(cpu),
        bf16_s,
        fp32_s,
        h,
        w,
        bf16_s / max(fp32_s, 1e-9),
    )
    return {"bf16_s": bf16_s, "fp32_s": fp32_s}


def choose_export_precision(
    formats: Sequence[str],
    model,
    size: Tuple[int, int],
    *,
    cpu: Optional[CpuInfo] = None,
    measure: Optional[Callable[[Candidate], float]] = None,
) -> VariantChoice:
    """
    ``python -m ian_d2.export --precision auto``: fp32, or bf16 where the export is TorchScript
    alone and the CPU has native bfloat16 and bf16 measures faster. int8 is never picked (it
    needs calibration images, see the module docstring).

    Args:
        formats: the export's formats, without repeats.
        model: the eval-mode float32 model to export (measured as is and with its trunks in
            bfloat16: the kernels its TorchScript export runs).
        size: the measurement image's (h, w) (:func:`measurement_size`).
        cpu: the CPU (default: this machine's).
        measure: seconds per image of a candidate (default :func:`measure_eager`).
    """
    cpu = cpu or cpu_info()
    runtime = "+".join(formats)
    left_out = {
        "int8": "needs calibration images, which auto does not choose: give --precision int8 "
        "--calibration-images DIR_OR_LIST (ONNX only)"
        + ("; this CPU has int8 dot-product instructions" if cpu.int8_dot else "")
    }
    candidates = [Candidate("fp32", runtime)]
    if list(formats) == ["torchscript"]:
        candidates.append(Candidate("bf16", "torchscript"))
    else:
        left_out["bf16"] = "a TorchScript option, and this export includes ONNX"
    if measure is None:
        measure = eager_measure(model, size)
    return choose_variant(candidates, measure, cpu=cpu, size=size, left_out=left_out)


def eager_measure(model, size: Tuple[int, int]) -> Callable[[Candidate], float]:
    """``measure(candidate)`` of an export to be: the eager model in the candidate's precision."""

    def measure(candidate: Candidate) -> float:
        from .precision import bf16_trunks

        m = bf16_trunks(model) if candidate.precision == "bf16" else model
        return measure_eager(m, size)

    return measure


def bf16_cost(
    measure: Callable[[Candidate], float], size: Tuple[int, int], runtime: str = "torchscript"
) -> Tuple[float, float, Tuple[int, int]]:
    """(bf16 seconds, fp32 seconds, size) per image with ``measure``: :func:`check_bf16`'s
    ``measure_cost``."""
    bf16 = measure(Candidate("bf16", runtime))
    return bf16, measure(Candidate("fp32", runtime)), size
