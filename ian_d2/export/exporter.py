"""Export an IAN model to TorchScript and ONNX with Detectron2's export tooling.

Two models are exported from one eager model (:class:`ian_d2.modeling.PersonSearchRCNN` with
:class:`ian_d2.modeling.PersonSearchROIHeads`):

* the **gallery** model: a resized image [3, h, w] (float32, 0-255, the config's
  ``INPUT.FORMAT`` channel order) -> ``boxes`` [n, 4] (in the resized image), ``scores`` [n],
  ``embeddings`` [n, D]: normalisation, backbone, RPN (proposals, NMS, top-k), ROIAlign, res5
  on every proposal, box head, embedding head, score threshold, NMS and top-k, all inside;
* the **query** model: a resized image + given boxes [k, 4] (in the resized image) ->
  ``embeddings`` [k, D], the gallery path's embedding of those boxes.

Both are traced through :class:`detectron2.export.TracingAdapter` (which flattens the model's
dict/Instances inputs and outputs), with Detectron2's ``patch_builtin_len`` extended to
ian_d2's ROI heads so that per-image box counts stay symbolic: the traced graphs take any image
size and any number of boxes. TorchScript = ``torch.jit.trace`` of the adapter; ONNX = the
TorchScript-based ``torch.onnx.export`` (opset 17, dynamic image size and box count;
torchvision's ``nms`` and ``roi_align`` export as ``NonMaxSuppression`` and ``RoiAlign``).
Scripting (``torch.jit.script``) is not used: Detectron2's R-CNN does not script as a whole,
and tracing keeps the eager code path.

Each export is checked at once: the exported files are run on the tracing image and on an
image of another shape, and must reproduce the eager model (matched boxes IoU >= 0.99, scores
within 1e-3, embeddings cosine >= 0.999); a model part whose behaviour was frozen by tracing
(Python control flow on tensor values, conversions to Python numbers or numpy) fails this
check, and the error names the tracer's warnings with their source lines.

The export folder holds ``ian_d2_export.json`` (see :mod:`ian_d2.export.runtime`), the model
files (``{gallery,query}.ts`` / ``.onnx``) and a copy of ``runtime.py``, which runs them
without Detectron2 or ian_d2.

This module is the orchestration (:func:`export_model`); the steps live in :mod:`.checks` (what
can be exported), :mod:`.auto` (``--precision auto``, the bf16 guard), :mod:`.precision` (bf16
trunks), :mod:`.quantize` (int8 ONNX), :mod:`.trace`
(the traced functions and adapters), :mod:`.writers` (the files), :mod:`.manifest` and
:mod:`.verify`. Their public names
are re-exported here, the import path they had before the split.
"""

import logging
import os
import uuid
from typing import Dict, List, Optional, Sequence

from .. import register_all
from .auto import (
    AUTO,
    bf16_cost,
    check_bf16,
    choose_export_precision,
    eager_measure,
    measurement_size,
)
from .checks import FORMATS, ExportError, check_export_options, check_exportable
from .manifest import build_manifest, model_file_entry, write_manifest
from .precision import BF16_TRUNKS, PRECISIONS, bf16_trunks
from .quantize import INT8_TOLERANCE, calibration_record, quantize_export
from .quantize import calibration_images as list_calibration_images
from .trace import (
    NOT_TRACED,
    gallery_inference,
    query_inference,
    step_failure,
    tracer_hint,
    tracing_adapters,
)
from .verify import TOLERANCE, check_reports, verify_export
from .writers import (
    ONNX_OPSET,
    copy_runtime,
    file_meta,
    model_path,
    remove_stale_models,
    write_model,
)

__all__ = [
    "BF16_TRUNKS",
    "FORMATS",
    "INT8_TOLERANCE",
    "ONNX_OPSET",
    "PRECISIONS",
    "TOLERANCE",
    "ExportError",
    "bf16_trunks",
    "check_exportable",
    "export_model",
    "gallery_inference",
    "load_export_model",
    "query_inference",
    "verify_export",
]

logger = logging.getLogger(__name__)


def export_model(
    cfg,
    out_dir: str,
    formats: Sequence[str] = ("torchscript",),
    *,
    model=None,
    verify: bool = True,
    precision: str = "fp32",
    calibration_images: Optional[str] = None,
    calibration_count: Optional[int] = None,
    force_precision: bool = False,
    cpu=None,
    measure=None,
) -> Dict:
    """
    Export the gallery and query models of ``cfg`` to ``out_dir``.

    Args:
        cfg: the model's config (``MODEL.WEIGHTS`` loaded when ``model`` is None).
        out_dir: the export folder (created; files of an earlier export are replaced).
        formats: "torchscript" and/or "onnx".
        model: an already built eval-mode model of ``cfg`` (benchmarks, tests).
        verify: check the exported files against the eager model (see the module docstring).
        precision: "fp32", or "bf16" (TorchScript only): the convolution trunks in bfloat16,
            see :func:`bf16_trunks`; checked against the eager model converted the same way;
            or "int8" (ONNX only): the ONNX graphs quantized by ONNX Runtime (:mod:`.quantize`),
            checked against the float32 eager model within :data:`INT8_TOLERANCE`; or "auto":
            fp32 or bf16, whichever this CPU runs faster (:mod:`.auto`: bf16 only with native
            bfloat16 and TorchScript alone; never int8), recorded as ``precision_auto``.
        calibration_images: int8: a folder of images or a ``.txt`` list of image paths, like
            the gallery's (:func:`calibration_images`); required for int8, refused otherwise.
        calibration_count: int8: how many of them (default 32, every k-th in sorted order).
        force_precision: bf16 on a CPU without native bfloat16 (refused otherwise: oneDNN
            emulates it, slower than fp32), with a warning giving the measured cost.
        cpu: the CPU's capabilities (:class:`ian_d2.utils.cpu.CpuInfo`; default: this one's).
        measure: ``measure(candidate) -> seconds per image`` for "auto" and the forced-bf16
            warning (default: a few passes of the eager model, :mod:`.auto`; tests inject one).

    Returns:
        dict: the manifest written to ``out_dir/ian_d2_export.json`` (plus ``checks``: the
        verification reports per format).

    Raises:
        ExportError: a model that cannot be exported (naming the feature), a failed trace or
            ONNX conversion (naming the step and source line), an export that does not
            reproduce the eager model, or bf16 on a CPU without native bfloat16 (not forced).
    """
    loaded = {"model": model}

    def get_model():
        if loaded["model"] is None:
            loaded["model"] = load_export_model(cfg)
        return loaded["model"].eval()

    auto = None
    if precision in (AUTO, "bf16"):  # the measurement image, when something is measured
        size = measurement_size(int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST))
    if precision == AUTO:
        formats = check_export_options(cfg, formats, "fp32")
        if calibration_images or calibration_count:
            raise ExportError(
                "--precision auto does not calibrate (it picks fp32 or bf16): for int8 give "
                "--precision int8 with --calibration-images"
            )
        auto = choose_export_precision(formats, get_model(), size, cpu=cpu, measure=measure)
        precision = auto.chosen.precision
    formats = check_export_options(cfg, formats, precision)
    if precision == "bf16" and auto is None:

        def cost():  # measured only when forced on a CPU without native bfloat16
            return bf16_cost(measure or eager_measure(get_model(), size), size)

        check_bf16(cpu, force_precision, "export", cost, error=ExportError)
    images = None
    if precision == "int8":
        if not calibration_images:
            raise ExportError(
                "precision int8 needs --calibration-images DIR_OR_LIST (images like the "
                "gallery's, to calibrate the activation ranges)"
            )
        images = list_calibration_images(calibration_images, calibration_count)
    elif calibration_images or calibration_count:
        raise ExportError("--calibration-images / --calibration-count are int8 options")
    model = get_model()
    if precision == "bf16":
        model = bf16_trunks(model)
    os.makedirs(out_dir, exist_ok=True)
    export_id = uuid.uuid4().hex
    manifest = build_manifest(cfg, model, export_id, precision)
    if auto is not None:
        manifest["precision_auto"] = auto.record()
    checks = {}
    for fmt in formats:
        tracer_warnings: List[str] = []
        manifest["models"][fmt] = _write_format(
            model, cfg, fmt, out_dir, export_id, tracer_warnings
        )
        if images is not None:
            counts = quantize_export(out_dir, manifest, images)
            manifest["calibration"] = calibration_record(images, calibration_images, counts)
            manifest["models"][fmt] = {
                role: model_file_entry(os.path.join(out_dir, e["file"]))
                for role, e in manifest["models"][fmt].items()
            }
        if verify:
            checks[fmt] = _verify_format(model, cfg, fmt, out_dir, manifest, tracer_warnings)
    remove_stale_models(out_dir, manifest["models"])
    write_manifest(out_dir, manifest)
    copy_runtime(out_dir)
    manifest = dict(manifest)
    manifest["checks"] = checks
    return manifest


def load_export_model(cfg):
    """``build_model(cfg)`` in eval mode, with ``MODEL.WEIGHTS`` loaded when set."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    register_all()  # the meta-architecture and heads of the config
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        if not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise ExportError(f"MODEL.WEIGHTS '{cfg.MODEL.WEIGHTS}' does not exist")
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting randomly initialised weights")
    return model.eval()


def _write_format(
    model, cfg, fmt: str, out_dir: str, export_id: str, tracer_warnings: List[str]
) -> Dict[str, Dict]:
    """Trace the gallery and query models into ``fmt`` files; their manifest entries by role."""
    entry = {}
    for role, (adapter, args) in tracing_adapters(model, cfg).items():
        path = model_path(out_dir, role, fmt)
        what = f"{'tracing' if fmt == 'torchscript' else 'ONNX export of'} the {role} model"
        try:
            write_model(fmt, adapter, args, role, path, file_meta(export_id, role), tracer_warnings)
        except ExportError:
            raise
        except Exception as e:
            raise step_failure(what, e) from e
        entry[role] = model_file_entry(path)
        logger.info("Exported the %s model to %s", role, path)
    return entry


def _verify_format(
    model, cfg, fmt: str, out_dir: str, manifest: Dict, tracer_warnings: List[str]
) -> List[Dict]:
    """:func:`verify_export` of the ``fmt`` files, raising ExportError beyond tolerance."""
    try:
        reports = verify_export(model, cfg, out_dir, manifest, fmt)
    except Exception as e:
        error = step_failure(f"running the exported {fmt} model on another image", e)
        raise ExportError(f"{error}\n  {NOT_TRACED}{tracer_hint(tracer_warnings)}") from e
    check_reports(reports, fmt, tracer_warnings, manifest.get("precision", "fp32"))
    logger.info("Checked the %s export against the eager model: %s", fmt, reports)
    return reports
