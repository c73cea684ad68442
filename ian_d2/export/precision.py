"""Reduced precision of an export: the convolution trunks in bfloat16 (TorchScript); int8 (ONNX)
is a rewrite of the exported graph, see :mod:`.quantize` (the manifest asks each module for its
own ``*_detail``)."""

import copy
import torch

__all__ = ["BF16_TRUNKS", "PRECISIONS", "bf16_detail", "bf16_trunks"]

PRECISIONS = ("fp32", "bf16", "int8")
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
    """``t`` in bfloat16; [N, C, H, W] tensors in channels-last layout."""
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
    model = copy.deepcopy(model)
    for name in BF16_TRUNKS:
        module = model.get_submodule(name)
        module.to(torch.bfloat16).to(memory_format=torch.channels_last)
        module.register_forward_pre_hook(lambda m, args: _to_bf16(args))
        module.register_forward_hook(lambda m, args, out: _to_fp32(out))
    return model.eval()


def bf16_detail() -> str:
    """The manifest's ``precision_detail`` of a bf16 export: what runs in which precision."""
    return (
        f"{', '.join(BF16_TRUNKS)} in bfloat16 (channels-last); anchors, box decoding, "
        "NMS, ROIAlign, box predictor and embedding head in float32"
    )
