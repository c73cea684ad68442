"""The files of an export folder: the traced models (TorchScript, ONNX), each carrying the
export's id, and the copy of the standalone runtime."""

import json
import os
import shutil
from typing import Dict, Iterable, List

import torch

import ian_d2

from . import runtime as rt
from .checks import FORMATS
from .trace import collect_tracer_warnings

__all__ = [
    "ONNX_OPSET",
    "ROLES",
    "copy_runtime",
    "file_meta",
    "model_path",
    "remove_stale_models",
    "write_model",
]

ONNX_OPSET = 17
_SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
ROLES = ("gallery", "query")


def model_path(out_dir: str, role: str, fmt: str) -> str:
    """The file of the ``role`` model ("gallery", "query") in format ``fmt`` in ``out_dir``."""
    return os.path.join(out_dir, role + _SUFFIX[fmt])


def file_meta(export_id: str, role: str) -> str:
    """The JSON that each model file carries (:data:`runtime.FILE_META_KEY`): format, format
    version, ian_d2 version, export id and role."""
    return json.dumps(
        {
            "format": rt.FORMAT,
            "format_version": rt.FORMAT_VERSION,
            "ian_d2_version": ian_d2.__version__,
            "export_id": export_id,
            "role": role,
        }
    )


def write_model(
    fmt: str, adapter, args: tuple, role: str, path: str, meta: str, tracer_warnings: List[str]
) -> None:
    """
    Trace ``adapter`` on ``args`` into ``path`` (written to a temporary file, then renamed).

    Args:
        fmt: "torchscript" or "onnx".
        adapter: a :class:`detectron2.export.TracingAdapter` of the ``role`` model.
        args: its example inputs (image [3, h, w], and boxes [k, 4] for the query model).
        role: "gallery" or "query" (the ONNX input and output names).
        path: the model file.
        meta: :func:`file_meta` of the file.
        tracer_warnings: the tracer's warnings are appended here.
    """
    if fmt == "torchscript":
        _write_torchscript(adapter, args, path, meta, tracer_warnings)
    else:
        _write_onnx(adapter, args, role, path, meta, tracer_warnings)


def _write_torchscript(adapter, args, path: str, meta: str, tracer_warnings: List[str]) -> None:
    with collect_tracer_warnings(tracer_warnings), torch.no_grad():
        traced = torch.jit.trace(adapter, args, check_trace=False)
    tmp = path + ".tmp"
    torch.jit.save(traced, tmp, _extra_files={rt.FILE_META_KEY: meta})
    os.replace(tmp, path)


def _onnx_signature(role: str):
    """Input names, output names and dynamic axes of the ``role`` model's ONNX graph."""
    if role == "gallery":
        inputs, outputs = ["image"], ["boxes", "scores", "embeddings"]
        dynamic: Dict[str, Dict[int, str]] = {"image": {1: "height", 2: "width"}}
        dynamic.update({name: {0: "detections"} for name in outputs})
    else:
        inputs, outputs = ["image", "boxes"], ["embeddings"]
        dynamic = {
            "image": {1: "height", 2: "width"},
            "boxes": {0: "boxes"},
            "embeddings": {0: "boxes"},
        }
    return inputs, outputs, dynamic


def _write_onnx(adapter, args, role: str, path: str, meta: str, tracer_warnings) -> None:
    import onnx

    inputs, outputs, dynamic = _onnx_signature(role)
    tmp = path + ".tmp"
    with collect_tracer_warnings(tracer_warnings), torch.no_grad():
        torch.onnx.export(
            adapter,
            args,
            tmp,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
        )
    proto = onnx.load(tmp)
    entry = proto.metadata_props.add()
    entry.key, entry.value = rt.FILE_META_KEY, meta
    onnx.save(proto, tmp)
    os.replace(tmp, path)


def remove_stale_models(out_dir: str, kept_formats: Iterable[str]) -> None:
    """Delete the model files of the formats not in ``kept_formats`` (an earlier export's, no
    longer valid)."""
    kept = set(kept_formats)
    for fmt in FORMATS:
        for role in ROLES:
            stale = model_path(out_dir, role, fmt)
            if fmt not in kept and os.path.isfile(stale):
                os.remove(stale)


def copy_runtime(out_dir: str) -> None:
    """Copy the standalone runtime (:mod:`ian_d2.export.runtime`) to ``out_dir/runtime.py``."""
    shutil.copyfile(rt.__file__, os.path.join(out_dir, "runtime.py"))
