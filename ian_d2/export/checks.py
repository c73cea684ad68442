"""What can be exported: the configurations and export options that an export refuses, each
problem named."""

from typing import List, Sequence

from .errors import ExportError
from .precision import PRECISIONS

__all__ = ["FORMATS", "ExportError", "check_exportable", "check_export_options"]

FORMATS = ("torchscript", "onnx")


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


def check_export_options(cfg, formats: Sequence[str], precision: str) -> List[str]:
    """
    Check an export request: the formats, the model (:func:`check_exportable`), the precision
    and the device, in that order.

    Args:
        cfg: the model's config.
        formats: "torchscript" and/or "onnx" (repeats allowed).
        precision: one of :data:`ian_d2.export.precision.PRECISIONS`.

    Returns:
        list[str]: ``formats`` without repeats, in order.

    Raises:
        ExportError: the first kind of problem found, named.
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
    if precision == "int8" and formats != ["onnx"]:
        raise ExportError(
            "precision int8 is an ONNX option (ONNX Runtime's static quantization): export "
            "--format onnx alone"
        )
    if cfg.MODEL.DEVICE != "cpu":
        raise ExportError("export on the CPU (MODEL.DEVICE cpu); the exported files run anywhere")
    return formats
