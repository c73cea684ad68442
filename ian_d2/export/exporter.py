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
"""

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import traceback
import uuid
import warnings
from typing import Dict, List, Sequence, Tuple

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.export import TracingAdapter
from detectron2.export.torchscript_patch import patch_builtin_len
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

import ian_d2

from .. import modeling as _modeling  # noqa: F401  (registers the meta-architecture and heads)
from ..utils.io import atomic_write
from . import runtime as rt
from .parity import compare_detections

__all__ = [
    "FORMATS",
    "ExportError",
    "check_exportable",
    "export_model",
    "gallery_inference",
    "query_inference",
    "verify_export",
]

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17
_SUFFIX = {"torchscript": ".ts", "onnx": ".onnx"}
# Modules whose builtin len() is made trace-friendly (Detectron2's own are always patched).
_LEN_PATCHED_MODULES = ["ian_d2.modeling.roi_heads"]
# Parity an export must reach on the check images.
TOLERANCE = {"min_iou": 0.99, "max_score_diff": 1e-3, "min_cosine": 0.999}


class ExportError(ValueError):
    """A model that cannot be exported, or whose export does not reproduce it; says why."""


# ---------------------------------------------------------------------------------------------- #
# What can be exported
# ---------------------------------------------------------------------------------------------- #
def check_exportable(cfg) -> None:
    """
    Refuse the configurations whose model cannot be exported, naming each feature.

    Raises:
        ExportError: listing every problem found.
    """
    from detectron2.modeling import ROI_HEADS_REGISTRY

    from ..modeling import PersonSearchROIHeads

    m = cfg.MODEL
    problems = []
    if m.META_ARCHITECTURE not in ("PersonSearchRCNN", "GeneralizedRCNN"):
        problems.append(
            f"MODEL.META_ARCHITECTURE {m.META_ARCHITECTURE!r}: only the person-search detector "
            "(PersonSearchRCNN) is exported (the step-1 CropClassifier has no detector: export "
            "the step-2/3 model)"
        )
    try:
        heads = ROI_HEADS_REGISTRY.get(m.ROI_HEADS.NAME)
    except KeyError:
        heads = None
    if heads is None or not issubclass(heads, PersonSearchROIHeads):
        problems.append(
            f"MODEL.ROI_HEADS.NAME {m.ROI_HEADS.NAME!r}: the exported models need "
            "PersonSearchROIHeads (or a subclass) for the embeddings"
        )
    if m.PROPOSAL_GENERATOR.NAME != "RPN" or m.LOAD_PROPOSALS:
        problems.append(
            "precomputed proposals (MODEL.LOAD_PROPOSALS) or a proposal generator other than "
            f"RPN ({m.PROPOSAL_GENERATOR.NAME!r}): the exported model computes its proposals"
        )
    if m.MASK_ON or m.KEYPOINT_ON:
        problems.append("MODEL.MASK_ON / MODEL.KEYPOINT_ON: mask and keypoint heads")
    if any(m.RESNETS.DEFORM_ON_PER_STAGE):
        problems.append(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolution is an op of Detectron2's "
            "compiled extension, which neither traces into TorchScript nor exports to ONNX"
        )
    if cfg.TEST.AUG.ENABLED:
        problems.append(
            "TEST.AUG.ENABLED: test-time augmentation runs the model several times outside the "
            "model; it is not part of an exported model"
        )
    if cfg.INPUT.FORMAT not in ("BGR", "RGB"):
        problems.append(f"INPUT.FORMAT {cfg.INPUT.FORMAT!r}: the runtime feeds BGR or RGB images")
    if len(m.PIXEL_MEAN) != 3 or len(m.PIXEL_STD) != 3:
        problems.append("MODEL.PIXEL_MEAN / PIXEL_STD: 3 channels expected")
    if problems:
        raise ExportError("this model cannot be exported:\n  - " + "\n  - ".join(problems))


# ---------------------------------------------------------------------------------------------- #
# Reduced precision (TorchScript): the convolution trunks in bfloat16
# ---------------------------------------------------------------------------------------------- #
PRECISIONS = ("fp32", "bf16")
# The convolution trunks that ``precision="bf16"`` runs in bfloat16 (almost all the FLOPs).
BF16_TRUNKS = ("backbone", "proposal_generator.rpn_head", "roi_heads.res5")


def _map_float_tensors(x, fn):
    """``fn`` applied to every floating-point tensor in ``x`` (nested lists, tuples, dicts)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_map_float_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: _map_float_tensors(v, fn) for k, v in x.items()}
    return x


def _bf16_tensor(t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.bfloat16)
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _to_bf16(x):
    return _map_float_tensors(x, _bf16_tensor)


def _to_fp32(x):
    return _map_float_tensors(x, lambda t: t.float().contiguous())


def bf16_trunks(model):
    """
    A copy of ``model`` whose convolution trunks (:data:`BF16_TRUNKS`: backbone, RPN head conv,
    res5 of the ROI heads) hold bfloat16 weights in channels-last layout and run in bfloat16
    (inputs cast on entry, outputs cast back to float32 on exit); anchors, box decoding, NMS,
    ROIAlign, the box predictor and the embedding head stay float32. On CPUs with AMX or
    AVX-512 BF16, oneDNN runs these convolutions several times faster than in float32. Results
    differ from float32 by bfloat16 rounding (8 bits of mantissa): see the benchmark's parity.
    """
    import copy

    model = copy.deepcopy(model)
    for name in BF16_TRUNKS:
        module = model.get_submodule(name)
        module.to(torch.bfloat16).to(memory_format=torch.channels_last)
        module.register_forward_pre_hook(lambda m, args: _to_bf16(args))
        module.register_forward_hook(lambda m, args, out: _to_fp32(out))
    return model.eval()


# ---------------------------------------------------------------------------------------------- #
# The two traced functions
# ---------------------------------------------------------------------------------------------- #
def gallery_inference(model, image: torch.Tensor):
    """
    The eager gallery model on one resized image: what the gallery export computes.

    Args:
        model: a PersonSearchRCNN in eval mode.
        image: [3, h, w] float32 (0-255, the model's channel order).

    Returns:
        (Tensor, Tensor, Tensor): boxes [n, 4] (resized image pixels), scores [n],
        embeddings [n, D].
    """
    with patch_builtin_len(_LEN_PATCHED_MODULES):
        inst = model.inference([{"image": image}], do_postprocess=False)[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_embeds


def query_inference(model, image: torch.Tensor, boxes: torch.Tensor):
    """
    The eager query model: embeddings [k, D] of ``boxes`` [k, 4] (resized image pixels) of one
    resized image, exactly as ``extract_query_embeddings`` computes them.
    """
    with patch_builtin_len(_LEN_PATCHED_MODULES):
        inst = Instances(tuple(image.shape[-2:]))
        inst.pred_boxes = Boxes(boxes)
        inst.pred_classes = torch.zeros(boxes.shape[0], dtype=torch.int64)
        res = model.inference([{"image": image}], detected_instances=[inst], do_postprocess=False)
    return res[0].pred_embeds


def _example_inputs(cfg, portrait: bool = False, seed: int = 0):
    """A random image at the config's test size (landscape, or ``portrait`` at another aspect
    ratio) and a few boxes inside it."""
    lo, hi = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    h, w = (lo, min(hi, int(lo * 4 / 3))) if not portrait else (min(hi, int(lo * 1.25)), lo)
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g) * 255
    k = 3 if not portrait else 5
    x0 = torch.rand(k, generator=g) * w * 0.7
    y0 = torch.rand(k, generator=g) * h * 0.4
    boxes = torch.stack(
        [x0, y0, x0 + w * (0.1 + 0.1 * torch.rand(k, generator=g)), y0 + h * 0.4], dim=1
    )
    return image, boxes


@contextlib.contextmanager
def _collect_tracer_warnings(sink: List[str]):
    """Record the tracer's warnings (with their source lines) instead of printing them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        yield
    seen = set()
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            where = f"{os.path.relpath(w.filename)}:{w.lineno}"
            if where not in seen:
                seen.add(where)
                sink.append(f"{where}: {str(w.message).splitlines()[0][:160]}")


def _failure(what: str, e: BaseException) -> ExportError:
    """An ExportError naming the step and the innermost model source line that raised."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "torch/" not in f.filename]
    where = (
        f" (at {os.path.relpath(frames[-1].filename)}:{frames[-1].lineno}, in "
        f"{frames[-1].name})"
        if frames
        else ""
    )
    return ExportError(f"{what} failed: {type(e).__name__}: {str(e).strip()[:600]}{where}")


def _adapters(model, cfg) -> Dict[str, Tuple[TracingAdapter, tuple]]:
    image, boxes = _example_inputs(cfg)
    return {
        "gallery": (TracingAdapter(model, (image,), gallery_inference).eval(), (image,)),
        "query": (TracingAdapter(model, (image, boxes), query_inference).eval(), (image, boxes)),
    }


# ---------------------------------------------------------------------------------------------- #
# Writing the files
# ---------------------------------------------------------------------------------------------- #
def _file_meta(export_id: str, role: str) -> str:
    return json.dumps(
        {
            "format": rt.FORMAT,
            "format_version": rt.FORMAT_VERSION,
            "ian_d2_version": ian_d2.__version__,
            "export_id": export_id,
            "role": role,
        }
    )


def _export_torchscript(adapter, args, path: str, meta: str, tracer_warnings: List[str]) -> None:
    with _collect_tracer_warnings(tracer_warnings), torch.no_grad():
        traced = torch.jit.trace(adapter, args, check_trace=False)
    tmp = path + ".tmp"
    torch.jit.save(traced, tmp, _extra_files={rt.FILE_META_KEY: meta})
    os.replace(tmp, path)


def _export_onnx(adapter, args, role: str, path: str, meta: str, tracer_warnings) -> None:
    import onnx

    if role == "gallery":
        inputs, outputs = ["image"], ["boxes", "scores", "embeddings"]
        dynamic = {"image": {1: "height", 2: "width"}}
        dynamic.update({name: {0: "detections"} for name in outputs})
    else:
        inputs, outputs = ["image", "boxes"], ["embeddings"]
        dynamic = {
            "image": {1: "height", 2: "width"},
            "boxes": {0: "boxes"},
            "embeddings": {0: "boxes"},
        }
    tmp = path + ".tmp"
    with _collect_tracer_warnings(tracer_warnings), torch.no_grad():
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


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _model_description(cfg) -> Dict:
    """The search index's model fingerprint (config and weights hashes) where the weights are a
    local file; else the config hash only (random weights)."""
    from ..search.store import _canonical_json, model_config_yaml, model_fingerprint

    if cfg.MODEL.WEIGHTS and os.path.isfile(cfg.MODEL.WEIGHTS):
        return model_fingerprint(cfg)
    yaml = model_config_yaml(cfg)
    return {
        "config_sha256": hashlib.sha256(_canonical_json(yaml).encode()).hexdigest(),
        "weights": cfg.MODEL.WEIGHTS,
        "weights_sha256": None,
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "config_yaml": yaml,
    }


def _manifest(cfg, model, export_id: str) -> Dict:
    import detectron2

    rh = model.roi_heads
    rpn = model.proposal_generator
    return {
        "format": rt.FORMAT,
        "format_version": rt.FORMAT_VERSION,
        "export_id": export_id,
        "ian_d2_version": ian_d2.__version__,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "exported_with": {
            "torch": torch.__version__,
            "detectron2": detectron2.__version__,
            "onnx_opset": ONNX_OPSET,
        },
        "models": {},
        "input": {
            "format": cfg.INPUT.FORMAT,
            "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
            "resize": "shortest edge to min_size_test, longest <= max_size_test, bilinear "
            "(Pillow, as Detectron2's ResizeShortestEdge on uint8 images)",
            "layout": "[3, h, w] float32, 0-255, channel order of 'format', resized",
            "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
            "normalisation": "inside the graph: (image - pixel_mean) / pixel_std",
        },
        "gallery": {
            "inputs": ["image"],
            "outputs": ["boxes", "scores", "embeddings"],
            "score_thresh": float(rh.box_predictor.test_score_thresh),
            "nms_thresh": float(rh.box_predictor.test_nms_thresh),
            "detections_per_image": int(rh.box_predictor.test_topk_per_image),
            "rpn": {
                "pre_nms_topk": int(rpn.pre_nms_topk[False]),
                "post_nms_topk": int(rpn.post_nms_topk[False]),
                "nms_thresh": float(rpn.nms_thresh),
            },
            "in_graph": "normalisation, backbone, RPN (proposals, NMS, top-k), ROIAlign, res5 "
            "on every proposal, box and embedding heads, score threshold, NMS, top-k",
            "in_runtime": "resize; boxes rescaled to the original image, clipped, empty ones "
            "dropped (detector_postprocess)",
            "boxes": "XYXY in the resized input's pixels (the runtime rescales them)",
        },
        "query": {
            "inputs": ["image", "boxes"],
            "outputs": ["embeddings"],
            "boxes": "XYXY in the resized input's pixels (the runtime scales the given boxes)",
        },
        "embed_dim": int(cfg.MODEL.REID.EMBED_DIM),
        "model": _model_description(cfg),
    }


# ---------------------------------------------------------------------------------------------- #
# Checking an export
# ---------------------------------------------------------------------------------------------- #
def _run_file(backend: str, path: str, *args: torch.Tensor) -> List[np.ndarray]:
    if backend == "onnx":
        net = rt._OnnxBackend(path)
    else:
        net = rt._TorchScriptBackend(path, optimize=False)
    return net(*[a.numpy() for a in args])


def verify_export(model, cfg, out_dir: str, manifest: Dict, backend: str) -> List[Dict]:
    """
    Run the exported files of ``backend`` on the tracing image and on an image of another shape
    (and other boxes), and compare with the eager model.

    Returns:
        list[dict]: per check image, :func:`compare_detections` of the gallery outputs and the
        minimum cosine of the query embeddings.

    Raises:
        ExportError: a check image whose outputs differ beyond :data:`TOLERANCE`.
    """
    files = manifest["models"][backend]
    reports = []
    for portrait in (False, True):
        image, boxes = _example_inputs(cfg, portrait=portrait, seed=int(portrait))
        with torch.no_grad():
            ref = [t.numpy() for t in gallery_inference(model, image)]
            ref_q = query_inference(model, image, boxes).numpy()
        out = _run_file(backend, os.path.join(out_dir, files["gallery"]["file"]), image)
        (out_q,) = _run_file(backend, os.path.join(out_dir, files["query"]["file"]), image, boxes)
        names = ("boxes", "scores", "embeddings")
        stats = compare_detections(dict(zip(names, ref)), dict(zip(names, out)))
        stats["image_size"] = list(image.shape[1:])
        stats["query_boxes"] = int(len(boxes))
        if out_q.shape != ref_q.shape:
            stats["query_min_cosine"] = -1.0
        else:
            stats["query_min_cosine"] = float((out_q * ref_q).sum(1).min()) if len(ref_q) else 1.0
        reports.append(stats)
    return reports


def _check_reports(reports: List[Dict], backend: str, tracer_warnings: List[str]) -> None:
    bad = []
    for r in reports:
        t = TOLERANCE
        if (
            r["n_ref"] != r["n_out"]
            or r["min_iou"] < t["min_iou"]
            or r["max_score_diff"] > t["max_score_diff"]
            or r["min_cosine"] < t["min_cosine"]
            or r["query_min_cosine"] < t["min_cosine"]
        ):
            bad.append(r)
    if not bad:
        return
    raise ExportError(
        f"the exported {backend} model does not reproduce the eager model on an image of "
        f"size {bad[0]['image_size']} ({json.dumps(bad[0])}): {_NOT_TRACED}"
        + _tracer_hint(tracer_warnings)
    )


_NOT_TRACED = (
    "some part of the model does not trace (Python control flow on tensor values, conversions "
    "of tensors to Python numbers, lists or numpy, shapes that tracing fixed)"
)


def _tracer_hint(tracer_warnings: List[str]) -> str:
    if not tracer_warnings:
        return ""
    # the project's own code first: the library's (Detectron2's asserts) are mostly harmless
    unique = list(dict.fromkeys(tracer_warnings))
    own = [w for w in unique if "site-packages" not in w]
    ordered = own + [w for w in unique if "site-packages" in w]
    return (
        "\n  tracer warnings (model code whose behaviour tracing froze; outside the installed "
        "libraries first):\n    " + "\n    ".join(ordered[:12])
    )


# ---------------------------------------------------------------------------------------------- #
# Entry point
# ---------------------------------------------------------------------------------------------- #
def load_export_model(cfg):
    """``build_model(cfg)`` in eval mode, with ``MODEL.WEIGHTS`` loaded when set."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        if not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise ExportError(f"MODEL.WEIGHTS '{cfg.MODEL.WEIGHTS}' does not exist")
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting randomly initialised weights")
    return model.eval()


def export_model(
    cfg,
    out_dir: str,
    formats: Sequence[str] = ("torchscript",),
    *,
    model=None,
    verify: bool = True,
    precision: str = "fp32",
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
            see :func:`bf16_trunks`; checked against the eager model converted the same way.

    Returns:
        dict: the manifest written to ``out_dir/ian_d2_export.json`` (plus ``checks``: the
        verification reports per format).

    Raises:
        ExportError: a model that cannot be exported (naming the feature), a failed trace or
            ONNX conversion (naming the step and source line), or an export that does not
            reproduce the eager model.
    """
    formats = list(dict.fromkeys(formats))
    for f in formats:
        if f not in FORMATS:
            raise ExportError(f"unknown export format {f!r}; choose from {', '.join(FORMATS)}")
    check_exportable(cfg)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "bf16" and "onnx" in formats:
        raise ExportError(
            "precision bf16 is a TorchScript option: ONNX Runtime's CPU provider has no "
            "bfloat16 convolution (export ONNX in fp32)"
        )
    if cfg.MODEL.DEVICE != "cpu":
        raise ExportError("export on the CPU (MODEL.DEVICE cpu); the exported files run anywhere")
    if model is None:
        model = load_export_model(cfg)
    model.eval()
    if precision == "bf16":
        model = bf16_trunks(model)
    os.makedirs(out_dir, exist_ok=True)
    export_id = uuid.uuid4().hex
    manifest = _manifest(cfg, model, export_id)
    manifest["precision"] = precision
    if precision == "bf16":
        manifest["precision_detail"] = (
            f"{', '.join(BF16_TRUNKS)} in bfloat16 (channels-last); anchors, box decoding, "
            "NMS, ROIAlign, box predictor and embedding head in float32"
        )
    checks = {}
    for fmt in formats:
        adapters = _adapters(model, cfg)
        tracer_warnings: List[str] = []
        entry = {}
        for role, (adapter, args) in adapters.items():
            path = os.path.join(out_dir, role + _SUFFIX[fmt])
            meta = _file_meta(export_id, role)
            what = f"{'tracing' if fmt == 'torchscript' else 'ONNX export of'} the {role} model"
            try:
                if fmt == "torchscript":
                    _export_torchscript(adapter, args, path, meta, tracer_warnings)
                else:
                    _export_onnx(adapter, args, role, path, meta, tracer_warnings)
            except ExportError:
                raise
            except Exception as e:
                raise _failure(what, e) from e
            entry[role] = {
                "file": os.path.basename(path),
                "sha256": _sha256(path),
                "bytes": os.path.getsize(path),
            }
            logger.info("Exported the %s model to %s", role, path)
        manifest["models"][fmt] = entry
        if verify:
            try:
                reports = verify_export(model, cfg, out_dir, manifest, fmt)
            except Exception as e:
                error = _failure(f"running the exported {fmt} model on another image", e)
                raise ExportError(f"{error}\n  {_NOT_TRACED}{_tracer_hint(tracer_warnings)}") from e
            _check_reports(reports, fmt, tracer_warnings)
            checks[fmt] = reports
            logger.info("Checked the %s export against the eager model: %s", fmt, reports)
    for fmt in FORMATS:  # files of an earlier export in another format: no longer valid
        for role in ("gallery", "query"):
            stale = os.path.join(out_dir, role + _SUFFIX[fmt])
            if fmt not in manifest["models"] and os.path.isfile(stale):
                os.remove(stale)
    data = json.dumps(manifest, indent=1).encode()
    atomic_write(os.path.join(out_dir, rt.MANIFEST_NAME), lambda f: f.write(data))
    shutil.copyfile(rt.__file__, os.path.join(out_dir, "runtime.py"))
    manifest = dict(manifest)
    manifest["checks"] = checks
    return manifest
