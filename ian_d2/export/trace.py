"""What is traced: the gallery and query computations of the eager model, their example inputs
and tracing adapters, and the diagnostics of a trace that fails or freezes model behaviour.

Both functions run under Detectron2's ``patch_builtin_len`` extended to ian_d2's ROI heads, so
that per-image box counts stay symbolic in the traced graphs (any image size, any number of
boxes).
"""

import contextlib
import os
import traceback
import warnings
from typing import Dict, List, Tuple

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
from detectron2.export import TracingAdapter
from detectron2.export.torchscript_patch import patch_builtin_len
from detectron2.structures import Boxes, Instances

from .errors import ExportError

__all__ = [
    "NOT_TRACED",
    "collect_tracer_warnings",
    "example_inputs",
    "gallery_inference",
    "query_inference",
    "step_failure",
    "tracer_hint",
    "tracing_adapters",
]

# Modules whose builtin len() is made trace-friendly (Detectron2's own are always patched).
_LEN_PATCHED_MODULES = ["ian_d2.modeling.roi_heads"]

NOT_TRACED = (
    "some part of the model does not trace (Python control flow on tensor values, conversions "
    "of tensors to Python numbers, lists or numpy, shapes that tracing fixed)"
)


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
    resized image [3, h, w], exactly as ``extract_query_embeddings`` computes them.
    """
    with patch_builtin_len(_LEN_PATCHED_MODULES):
        inst = Instances(tuple(image.shape[-2:]))
        inst.pred_boxes = Boxes(boxes)
        inst.pred_classes = torch.zeros(boxes.shape[0], dtype=torch.int64)
        res = model.inference([{"image": image}], detected_instances=[inst], do_postprocess=False)
    return res[0].pred_embeds


def example_inputs(cfg, portrait: bool = False, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    A random image at the config's test size (landscape, or ``portrait`` at another aspect
    ratio) and a few boxes inside it.

    Returns:
        (Tensor, Tensor): image [3, h, w] float32 (0-255) and boxes [k, 4] XYXY (k = 3, or 5
        when ``portrait``).
    """
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


def tracing_adapters(model, cfg) -> Dict[str, Tuple[TracingAdapter, tuple]]:
    """
    Per role ("gallery", "query"): the :class:`TracingAdapter` of ``model`` (flat tensor inputs
    and outputs) and the example inputs to trace it with (:func:`example_inputs`).
    """
    image, boxes = example_inputs(cfg)
    return {
        "gallery": (TracingAdapter(model, (image,), gallery_inference).eval(), (image,)),
        "query": (TracingAdapter(model, (image, boxes), query_inference).eval(), (image, boxes)),
    }


@contextlib.contextmanager
def collect_tracer_warnings(sink: List[str]):
    """Record the tracer's warnings (``path:line: message``) in ``sink`` instead of printing
    them."""
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


def tracer_hint(tracer_warnings: List[str]) -> str:
    """The tracer warnings for an error message, the project's own code first ("" if none)."""
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


def step_failure(what: str, e: BaseException) -> ExportError:
    """An ExportError naming the step and the innermost model source line that raised."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "torch/" not in f.filename]
    where = (
        f" (at {os.path.relpath(frames[-1].filename)}:{frames[-1].lineno}, in "
        f"{frames[-1].name})"
        if frames
        else ""
    )
    return ExportError(f"{what} failed: {type(e).__name__}: {str(e).strip()[:600]}{where}")
