"""``--precision`` of ``index`` and ``serve``: which of the given export folders (and runtime)
runs the model on this CPU.

``--exported-model`` takes one or several export folders of the same model (e.g. an fp32 export
in both formats, a bf16 TorchScript one and an int8 ONNX one). ``--precision fp32|bf16|int8``
runs the folder of that precision; ``--precision auto`` picks among all of them with
:func:`ian_d2.export.auto.choose_variant` (bf16 only on a CPU with native bfloat16; the rest
measured by a few passes on a random image of the model's input size, scaled down; the fastest
wins; int8 counts when an int8 export is given, calibrated when it was exported). ``--backend
onnx`` / ``torchscript`` restricts the runtimes; without ``--backend`` and with ``--precision``,
both are considered. An index's variant (``serve``, ``index --resume`` / ``--append``) restricts
the candidates to that precision unless ``--allow-variant-mismatch``.

A bf16 export on a CPU without native bfloat16 is refused unless ``--force-precision`` (then a
warning gives its measured cost): never silently slower (:func:`ian_d2.export.auto.check_bf16`).
"""

import argparse
import logging
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["EXPORTED", "PRECISION_CHOICES", "resolve_backend", "resolve_exported", "variant_args"]

logger = logging.getLogger("ian_d2.search")

PRECISION_CHOICES = ("fp32", "bf16", "int8", "auto")
#: ``args.backend`` when ``--precision`` chooses among exported models in any runtime.
EXPORTED = "exported"
RUNTIMES = ("onnx", "torchscript")


def variant_args(p: argparse.ArgumentParser) -> None:
    """Add ``--precision`` and ``--force-precision`` (with ``--exported-model DIR [DIR ...]``)."""
    p.add_argument(
        "--precision", choices=PRECISION_CHOICES, default=None,
        help="with --exported-model: run the export of this precision; auto: the fastest on "
        "this CPU (its flags, then a few timed passes; bf16 only with native bfloat16)",
    )  # fmt: skip
    p.add_argument(
        "--force-precision", action="store_true",
        help="run a bf16 export on a CPU without native bfloat16 (slower than fp32; a warning "
        "gives the measured cost)",
    )  # fmt: skip


def resolve_backend(args) -> str:
    """``args.backend`` with its default filled in: "pytorch", unless ``--precision`` picks
    among ``--exported-model`` folders (then :data:`EXPORTED`: any runtime).

    Raises:
        ValueError: ``--precision`` with the Detectron2 model.
    """
    backend = args.backend
    precision = getattr(args, "precision", None)
    if backend is None:
        backend = EXPORTED if precision and args.exported_model else "pytorch"
    if precision and backend == "pytorch":
        raise ValueError(
            f"--precision {precision} picks among exported models: give --exported-model DIR "
            "[DIR ...] (the Detectron2 model of --backend pytorch runs in fp32)"
        )
    args.backend = backend
    return backend


def _read(folders: List[str]) -> Dict[str, Dict]:
    """{folder: its export manifest}, checked to be exports of one model."""
    from ...export.runtime import read_manifest

    manifests = {f: read_manifest(f) for f in folders}
    keys = {
        (m["model"].get("config_sha256"), m["model"].get("weights_sha256"))
        for m in manifests.values()
    }
    if len(keys) > 1:
        raise ValueError(
            f"--exported-model {' '.join(folders)}: these are exports of different models "
            "(config or weights hashes differ); give exports of one model"
        )
    return manifests


def _candidates(folders: List[str], backend: str, manifests: Dict[str, Dict]):
    """Every (precision, runtime, folder) of the folders that ``backend`` allows."""
    from ...export.auto import Candidate

    runtimes = RUNTIMES if backend == EXPORTED else (backend,)
    out = []
    for f in folders:
        m = manifests[f]
        for r in runtimes:
            if r in m.get("models", {}):
                out.append(Candidate(str(m.get("precision", "fp32")), r, f))
    return out


def resolve_exported(
    args,
    index_variant: Optional[Dict[str, str]] = None,
    *,
    cpu=None,
    measure: Optional[Callable] = None,
) -> Tuple[str, str]:
    """
    The (runtime, folder) that runs the exported model, from ``--exported-model``,
    ``--backend``, ``--precision`` and ``--force-precision``.

    Args:
        args: the command line (``exported_model``: a folder or a list; ``backend``: "onnx",
            "torchscript" or :data:`EXPORTED`; ``precision``; ``force_precision``;
            ``allow_variant_mismatch``).
        index_variant: the variant of the index the model will serve or extend (None: a new
            index): with several candidates, those of another precision or ``embed_boxes``
            are left out unless ``--allow-variant-mismatch``.
        cpu: the CPU (:class:`ian_d2.utils.cpu.CpuInfo`; default: this one's).
        measure: ``measure(candidate) -> seconds per image`` (default
            :func:`ian_d2.export.auto.measure_exported` at the model's input size, scaled
            down; tests inject one).

    Raises:
        ValueError: several folders without ``--precision``, no folder of the precision or
            runtime asked for, exports of different models, or bf16 without native bfloat16
            and without ``--force-precision``.
    """
    from ...export import auto
    from ...utils.fingerprint import exported_variant

    folders = args.exported_model
    folders = [folders] if isinstance(folders, str) else list(folders or [])
    precision = getattr(args, "precision", None)
    force = bool(getattr(args, "force_precision", False))
    backend = args.backend
    if not folders:
        raise ValueError(f"--backend {backend} needs --exported-model DIR")
    if precision is None and len(folders) > 1:
        raise ValueError(
            f"--exported-model got {len(folders)} folders: give --precision fp32|bf16|int8|auto "
            "to pick one"
        )
    manifests = _read(folders)
    candidates = _candidates(folders, backend, manifests)
    if not candidates:
        held = {f: sorted(m.get("models", {})) for f, m in manifests.items()}
        raise ValueError(f"--backend {backend}: no export of that runtime in {held}")
    if precision not in (None, auto.AUTO):
        candidates = [c for c in candidates if c.precision == precision]
        if not candidates:
            held = {f: m.get("precision", "fp32") for f, m in manifests.items()}
            raise ValueError(f"--precision {precision}: no export of that precision in {held}")
    left_out = {}
    allow = bool(getattr(args, "allow_variant_mismatch", False))
    if index_variant is not None and len(candidates) > 1 and not allow:
        wanted = {k: str(v) for k, v in index_variant.items()}
        same = [c for c in candidates if exported_variant(manifests[c.folder]) == wanted]
        for c in candidates:
            if c not in same:
                left_out[c.name] = f"another variant than the index's {wanted}"
        candidates = same or candidates  # none: the index's own check names the difference
    first = manifests[folders[0]]["input"]
    size = auto.measurement_size(int(first["min_size_test"]), int(first["max_size_test"]))
    if measure is None:

        def measure(c):
            return auto.measure_exported(c, size)

    if precision == auto.AUTO:
        choice = auto.choose_variant(candidates, measure, cpu=cpu, size=size, left_out=left_out)
        chosen = choice.chosen
    else:
        if any(c.precision == "bf16" for c in candidates):
            fp32 = [c for c in _candidates(folders, EXPORTED, manifests) if c.precision == "fp32"]

            def cost():  # measured only when forced on a CPU without native bfloat16
                return measure(candidates[0]), (measure(fp32[0]) if fp32 else None), size

            where = f"export folder '{candidates[0].folder}'"
            auto.check_bf16(cpu, force, where, cost)
        chosen = candidates[0]
        if len(candidates) > 1:  # one precision in both runtimes, or in several folders
            chosen = auto.choose_variant(
                candidates, measure, cpu=cpu, size=size, left_out=left_out, native_only=False
            ).chosen
    logger.info("Exported model: %s", chosen.name)
    return chosen.runtime, chosen.folder
