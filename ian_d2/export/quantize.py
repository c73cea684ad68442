"""int8 exports: ONNX Runtime static quantization (QDQ) of the exported ONNX graphs.

``python -m ian_d2.export --format onnx --precision int8 --calibration-images DIR_OR_LIST``
exports the float32 ONNX graphs as usual, then rewrites each of them with ONNX Runtime's
``quantize_static``:

* **what is quantized** (:data:`INT8_SCOPES`, chosen by measurement, see docs/EXPORT.md): the
  convolutions of the backbone (stem, res2-res4), the RPN's shared 3x3 conv and res5 in the ROI
  heads (ONNX Runtime's profile of R-50 at 900x1500: convolutions 82.5 % of the time, of the
  FLOPs res1-res4 25 %, the RPN 3x3 conv 14 %, res5 61 %): int8 weights
  (symmetric, one scale per output channel) and uint8 activations (asymmetric, one scale per
  tensor, calibrated). ONNX Runtime runs them on its integer kernels (AVX-512 VNNI / AMX where
  the CPU has them);
* **what stays float32**: normalisation, the RPN's 1x1 objectness and anchor-delta convs
  (their outputs are the logits and deltas themselves), anchors and box decoding, NMS
  and top-k, ROIAlign, the GroupNorm / frozen BatchNorm affine ops between the convolutions,
  the box predictor and the embedding head (small Gemms whose error goes straight into the
  scores and embeddings);
* **calibration**: the activation ranges are the minimum and maximum (``MinMax``) over the
  calibration images, run through the float32 gallery graph; the query graph is calibrated on
  the same images with the float32 gallery graph's own detections as query boxes (at most
  :data:`QUERY_BOXES_PER_IMAGE` per image). The calibration is reproducible: the images are
  taken in sorted order (every k-th one when ``--calibration-count`` is smaller than the set),
  and the manifest records their paths, SHA-256 and the method (:func:`calibration_record`).

The graphs are first optimised by ONNX Runtime (``quant_pre_process``: constant folding, the
frozen BatchNorm's multiply-add folded into the convolutions) so that the quantized
convolutions carry the folded weights.
"""

import logging
import os
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..utils.hashing import sha256_file
from ..utils.media import IMAGE_EXTENSIONS
from .errors import ExportError

__all__ = [
    "CALIBRATION_METHOD",
    "INT8_SCOPES",
    "INT8_TOLERANCE",
    "QUERY_BOXES_PER_IMAGE",
    "calibration_images",
    "calibration_record",
    "int8_detail",
    "quantize_export",
]

logger = logging.getLogger(__name__)

#: Module paths in the traced graphs' node names whose Conv nodes are quantized (the gallery
#: graph names res5 ``/roi_heads/res5/...``, the query graph ``/res5/...``): the backbone, res5
#: and the RPN's 3x3 conv (not its 1x1 objectness / anchor-delta convs).
INT8_SCOPES = ("/backbone/", "/res5/", "/rpn_head/conv/")
CALIBRATION_METHOD = "MinMax"
QUERY_BOXES_PER_IMAGE = 8
DEFAULT_CALIBRATION_COUNT = 32
#: Parity an int8 export must reach against the float32 eager model on the check images (the
#: export check) and in the tests: the fraction of eager detections with an int8 detection of
#: IoU >= 0.5, the median cosine of their embeddings, and the query embeddings' minimum cosine.
#: Loose on the detections: with random weights (the tests, the export check's noise images)
#: many detections have near-tied scores, and rounding reorders them at the top-k / NMS
#: boundary; the embeddings of the same box agree to ~0.999. What int8 costs a trained model
#: is measured end to end (search mAP, detection AP): benchmarks/bench_variants.py.
INT8_TOLERANCE = {
    "min_matched_fraction": 0.5,
    "match_iou": 0.5,
    "median_cosine": 0.97,
    "query_min_cosine": 0.95,
}


def calibration_images(source: str, count: Optional[int] = None) -> List[str]:
    """
    The calibration images of ``source``, in a reproducible order.

    Args:
        source: a folder (its image files, recursively, sorted by path) or a ``.txt`` list (one
            image path per line, order kept; a relative path is looked for from the list's
            folder, then from the working directory).
        count: how many: every k-th image of the set, ``count`` in all (None: up to
            :data:`DEFAULT_CALIBRATION_COUNT`; the whole set when smaller).

    Returns:
        list[str]: absolute image paths.

    Raises:
        ExportError: no such path; a file that is neither a folder nor a ``.txt`` list; a
            listed file that does not exist, or that is not an image file (a video, a
            folder); no image at all; ``count`` < 1.
    """
    if count is not None and int(count) < 1:
        raise ExportError(f"--calibration-count {count}: at least 1 image is needed")
    if not source or not os.path.exists(source):
        raise ExportError(f"calibration images '{source}' do not exist (a folder or a .txt list)")
    if os.path.isdir(source):
        paths = []
        for root, dirs, files in os.walk(source):
            dirs.sort()
            paths += [
                os.path.join(root, f)
                for f in sorted(files)
                if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
        if not paths:
            raise ExportError(
                f"calibration folder '{source}' holds no image ({', '.join(IMAGE_EXTENSIONS)}): "
                "calibrate on images like the gallery's"
            )
    elif source.lower().endswith(".txt"):
        base = os.path.dirname(os.path.abspath(source))
        with open(source) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        if not lines:
            raise ExportError(f"calibration list '{source}' is empty")
        paths = []
        for ln in lines:
            p = _listed_path(ln, base)
            if p is None:
                looked = f"'{ln}'"
                if not os.path.isabs(ln):
                    looked = (
                        f"'{os.path.join(base, ln)}' (from the list's folder) and "
                        f"'{os.path.abspath(ln)}' (from the working directory)"
                    )
                raise ExportError(
                    f"calibration list '{source}': listed file '{ln}' does not exist (looked "
                    f"for {looked})"
                )
            if not os.path.isfile(p) or os.path.splitext(p)[1].lower() not in IMAGE_EXTENSIONS:
                raise ExportError(
                    f"calibration list '{source}': '{ln}' is not an image file "
                    f"({', '.join(IMAGE_EXTENSIONS)}); videos and folders are not accepted"
                )
            paths.append(p)
    else:
        raise ExportError(
            f"calibration images '{source}' is a file, not a folder or a .txt list of images"
        )
    n = DEFAULT_CALIBRATION_COUNT if count is None else int(count)
    if len(paths) > n:
        step = len(paths) / n
        paths = [paths[int(i * step)] for i in range(n)]
    return [os.path.abspath(p) for p in paths]


def _listed_path(line: str, base: str) -> Optional[str]:
    """
    The path a calibration list's line names: an absolute path as is; a relative one from the
    list's folder ``base``, else (lists written with paths relative to the working directory,
    as ``bench_variants`` wrote them before) from the working directory.

    Returns:
        str, or None when nothing exists there.
    """
    if os.path.isabs(line):
        return line if os.path.exists(line) else None
    for p in (os.path.join(base, line), os.path.abspath(line)):
        if os.path.exists(p):
            return p
    return None


def _read_inputs(paths: Sequence[str], manifest: Dict) -> List[Dict]:
    """The runtime's preprocessed inputs of the calibration images (an unreadable one named)."""
    import cv2

    from .runtime import Preprocessor

    pre = Preprocessor(manifest)
    out = []
    for p in paths:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"calibration image '{p}' is not a readable image")
        out.append(pre(img, "BGR"))
    return out


class _Reader:
    """ONNX Runtime's CalibrationDataReader over prepared feeds."""

    def __init__(self, feeds: List[Dict[str, np.ndarray]]):
        self._feeds = feeds
        self._it: Optional[Iterator] = None

    def get_next(self):
        if self._it is None:
            self._it = iter(self._feeds)
        return next(self._it, None)

    def rewind(self):
        self._it = None


def _query_feeds(gallery_fp32: str, inputs: List[Dict]) -> List[Dict[str, np.ndarray]]:
    """Query-graph feeds: each image with the float32 gallery graph's best detections."""
    from .runtime import OnnxBackend

    net = OnnxBackend(gallery_fp32)
    feeds = []
    for inp in inputs:
        boxes, scores, _ = net(inp["image"])
        boxes = boxes.reshape(-1, 4)[:QUERY_BOXES_PER_IMAGE]
        if len(boxes) == 0:  # nothing detected: the central half of the image
            h, w = inp["image"].shape[1:]
            boxes = np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)
        feeds.append({"image": inp["image"], "boxes": np.ascontiguousarray(boxes, np.float32)})
    return feeds


def _nodes_to_quantize(path: str) -> List[str]:
    import onnx

    graph = onnx.load(path).graph
    return [
        n.name for n in graph.node if n.op_type == "Conv" and any(s in n.name for s in INT8_SCOPES)
    ]


def _quantize_file(path: str, feeds: List[Dict[str, np.ndarray]]) -> int:
    """Quantize the ONNX file ``path`` in place; returns the number of quantized Conv nodes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(path, pre, skip_symbolic_shape=True)
        nodes = _nodes_to_quantize(pre)
        if not nodes:
            raise ExportError(f"no convolution under {INT8_SCOPES} in '{path}' to quantize")
        out = os.path.join(tmp, "int8.onnx")
        quantize_static(
            pre,
            out,
            _Reader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHOD),
            nodes_to_quantize=nodes,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        proto = onnx.load(out)
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        tmp_out = path + ".tmp"
        onnx.save(proto, tmp_out)
    os.replace(tmp_out, path)
    return len(nodes)


def quantize_export(out_dir: str, manifest: Dict, images: Sequence[str]) -> Dict[str, int]:
    """
    Quantize the float32 ONNX gallery and query graphs of the export ``out_dir`` in place.

    Args:
        out_dir: the export folder, holding the float32 ONNX files of ``manifest``.
        manifest: the export's manifest (input settings and ``models["onnx"]``).
        images: the calibration images (:func:`calibration_images`).

    Returns:
        dict: quantized Conv nodes per role.
    """
    files = manifest["models"]["onnx"]
    gallery = os.path.join(out_dir, files["gallery"]["file"])
    query = os.path.join(out_dir, files["query"]["file"])
    inputs = _read_inputs(images, manifest)
    query_feeds = _query_feeds(gallery, inputs)  # from the float32 gallery graph
    counts = {"query": _quantize_file(query, query_feeds)}
    counts["gallery"] = _quantize_file(gallery, [{"image": x["image"]} for x in inputs])
    logger.info("Quantized %s Conv nodes to int8 on %d calibration images", counts, len(images))
    return counts


def calibration_record(images: Sequence[str], source: str, counts: Dict[str, int]) -> Dict:
    """What the manifest records of an int8 calibration (enough to redo it)."""
    return {
        "source": os.path.abspath(source),
        "method": CALIBRATION_METHOD,
        "quant_format": "QDQ",
        "weights": "int8, symmetric, per output channel",
        "activations": "uint8, asymmetric, per tensor",
        "quantized_scopes": list(INT8_SCOPES),
        "quantized_conv_nodes": dict(counts),
        "query_boxes": f"the float32 gallery graph's top {QUERY_BOXES_PER_IMAGE} detections",
        "images": [{"path": p, "sha256": sha256_file(p)} for p in images],
    }


def int8_detail() -> str:
    """The manifest's ``precision_detail`` of an int8 export."""
    return (
        f"Conv nodes under {', '.join(INT8_SCOPES)} (backbone, RPN 3x3 conv, res5) in int8 "
        "(QDQ, per-channel int8 weights, uint8 activations calibrated with "
        f"{CALIBRATION_METHOD}); normalisation, RPN objectness and anchor-delta convs, anchors, "
        "box decoding, NMS, ROIAlign, norm layers, box predictor and embedding head in float32"
    )
