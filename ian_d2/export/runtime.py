"""Run an exported ian_d2 person-search model without Detectron2 or ian_d2.

This file is standalone: it imports numpy, Pillow (the resize, as Detectron2's
``ResizeShortestEdge`` does it) and, for the backend used, ``onnxruntime`` (ONNX) or ``torch``
with ``torchvision`` (TorchScript: the graph calls torchvision's ``nms`` and ``roi_align``
ops) -- nothing else. ``python -m ian_d2.export`` copies it beside the model
files; copy the folder to the deployment machine and use it from there::

    from runtime import PersonSearchModel          # the copy in the export folder
    model = PersonSearchModel("exported/", backend="onnx")
    det = model.detect(image_bgr)                  # HxWx3 uint8 (OpenCV's BGR order)
    det["boxes"], det["scores"], det["embeddings"] # [n, 4] XYXY pixels, [n], [n, D]
    q = model.embed(query_bgr, [[x1, y1, x2, y2]]) # [1, D]: the query person's embedding
    similarity = det["embeddings"] @ q[0]          # cosine (embeddings are L2-normalised)

or from a shell: ``python runtime.py exported/ image.jpg [--box X1 Y1 X2 Y2]`` (JSON out).

What runs where (the eager model's own steps, in the same order):

* here, numpy + Pillow: resize to the shortest edge ``min_size`` (longest <= ``max_size``),
  bilinear, in the model's channel order (``input.format``) -> [3, h, w] float32 (0-255);
* in the exported graph: normalisation (``pixel_mean`` / ``pixel_std``), backbone, RPN
  (proposals, their NMS and top-k), ROIAlign, res5 on every proposal, box regression,
  classification, embedding, then score threshold, NMS and the per-image top-k
  (``gallery.*`` of the manifest); the query graph embeds the given boxes;
* here again: boxes rescaled from the resized input to the original image, clipped, and empty
  boxes dropped (Detectron2's ``detector_postprocess``).

The folder holds ``ian_d2_export.json`` (the manifest: format version, the versions that wrote
it, input format, sizes, thresholds, file names and checksums) and the model files, each of
which also carries the export's id and format version. A manifest or a model file of another
format version, or a file of another export, is refused with :class:`ExportedModelError`.
"""

import argparse
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ExportedModelError",
    "OnnxBackend",
    "PersonSearchModel",
    "Preprocessor",
    "TorchScriptBackend",
    "read_manifest",
    "resized_shape",
]

FORMAT = "ian_d2.exported_model"
FORMAT_VERSION = 1
MANIFEST_NAME = "ian_d2_export.json"
# Key of the file-level metadata (ONNX metadata_props, TorchScript extra file).
FILE_META_KEY = "ian_d2_export"
BACKENDS = ("onnx", "torchscript")


class ExportedModelError(ValueError):
    """An export folder or file that this runtime cannot use (missing, other version, ...)."""


def _sha256(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def read_manifest(model_dir: str) -> Dict:
    """
    The manifest of an export folder, checked for this runtime's format version.

    Raises:
        ExportedModelError: no folder or manifest, an unreadable manifest, another format, or
            another format version (naming the ian_d2 version that wrote it).
    """
    if not os.path.isdir(model_dir):
        raise ExportedModelError(f"exported model folder '{model_dir}' does not exist")
    path = os.path.join(model_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ExportedModelError(
            f"'{model_dir}' is not an exported ian_d2 model: it has no {MANIFEST_NAME} "
            "(export one with `python -m ian_d2.export`)"
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportedModelError(f"export manifest '{path}' is not readable JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportedModelError(f"'{path}' is not an ian_d2 export manifest (format {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportedModelError(
            f"'{path}' has export format version {version} (written by ian_d2 "
            f"{manifest.get('ian_d2_version', '?')}); this runtime reads version "
            f"{FORMAT_VERSION}. Use the runtime.py exported beside those model files, or export "
            "the model again with this ian_d2."
        )
    return manifest


def resized_shape(height: int, width: int, min_size: int, max_size: int):
    """(h, w) after Detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = min_size * 1.0 / min(height, width)
    if height < width:
        newh, neww = min_size * 1.0, scale * width
    else:
        newh, neww = scale * height, min_size * 1.0
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


class OnnxBackend:
    """One exported ONNX graph in an ONNX Runtime session: float32 arrays in, arrays out."""

    def __init__(self, path: str, providers: Optional[Sequence] = None, num_threads=None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ExportedModelError(
                "the ONNX backend needs onnxruntime (pip install onnxruntime)"
            ) from e
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self.session = ort.InferenceSession(
            path, options, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.file_meta = meta.get(FILE_META_KEY)

    def __call__(self, *arrays: np.ndarray) -> List[np.ndarray]:
        feed = {
            n: np.ascontiguousarray(a, dtype=np.float32) for n, a in zip(self.input_names, arrays)
        }
        return [np.asarray(o) for o in self.session.run(None, feed)]


class TorchScriptBackend:
    """One exported TorchScript graph (frozen and rewritten for oneDNN when ``optimize``):
    float32 arrays in, float32 arrays out."""

    def __init__(self, path: str, optimize: bool = True, num_threads=None, onednn_rewrites=True):
        try:
            import torch
            import torchvision  # noqa: F401  (registers the nms and roi_align ops the graph calls)
        except ImportError as e:
            raise ExportedModelError(
                "the TorchScript backend needs torch and torchvision (its nms and roi_align " "ops)"
            ) from e
        self.torch = torch
        if num_threads:
            torch.set_num_threads(int(num_threads))
        extra = {FILE_META_KEY: ""}
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        self.file_meta = extra[FILE_META_KEY] or None
        if isinstance(self.file_meta, bytes):
            self.file_meta = self.file_meta.decode()
        module.eval()
        if optimize:  # constants folded (conv + batch norm), then oneDNN layouts and fused ops
            module = torch.jit.freeze(module)
            if onednn_rewrites:
                module = torch.jit.optimize_for_inference(module)
        self.module = module

    def __call__(self, *arrays: np.ndarray) -> List[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            out = self.module(
                *[torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays]
            )
        if isinstance(out, torch.Tensor):
            out = (out,)
        return [o.float().cpu().numpy() for o in out]


class Preprocessor:
    """
    An image -> the exported model's input, as the eager model's test-time mapping does it
    (picklable: data-loader workers can run it).

    Args:
        manifest: the export's manifest (:func:`read_manifest`).
    """

    def __init__(self, manifest: Dict):
        inp = manifest["input"]
        self.input_format = inp["format"]
        self.min_size, self.max_size = int(inp["min_size_test"]), int(inp["max_size_test"])

    def __call__(self, image: np.ndarray, color: str = "BGR") -> Dict:
        """
        Args:
            image: [H, W, 3] uint8.
            color: channel order of ``image``, "BGR" (OpenCV) or "RGB" (Pillow).

        Returns:
            dict: ``image`` [3, h, w] float32 (0-255, the model's channel order, resized),
            ``height`` H and ``width`` W of the original image.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an [H, W, 3] uint8 image, got {image.dtype} {image.shape}")
        if color not in ("BGR", "RGB"):
            raise ValueError(f"color must be 'BGR' or 'RGB', got {color!r}")
        if color != self.input_format:
            image = image[:, :, ::-1]
        from PIL import Image

        h, w = image.shape[:2]
        newh, neww = resized_shape(h, w, self.min_size, self.max_size)
        resized = np.asarray(
            Image.fromarray(np.ascontiguousarray(image)).resize((neww, newh), Image.BILINEAR)
        )
        chw = np.ascontiguousarray(resized.astype(np.float32).transpose(2, 0, 1))
        return {"image": chw, "height": h, "width": w}


class PersonSearchModel:
    """
    An exported gallery model (image -> boxes, scores, embeddings) and query model (image +
    given boxes -> embeddings), with the eager model's pre- and post-processing.

    Args:
        model_dir: the export folder (``ian_d2_export.json`` and the model files).
        backend: "onnx" or "torchscript"; None: the first of the folder's that can run here
            (ONNX if onnxruntime imports, else TorchScript).
        providers: ONNX Runtime execution providers (default CPU).
        num_threads: intra-op threads (default: the library's).
        optimize: TorchScript: freeze and ``optimize_for_inference`` at load (a few seconds).
        check_files: verify the model files' SHA-256 against the manifest.
    """

    def __init__(
        self,
        model_dir: str,
        backend: Optional[str] = None,
        *,
        providers: Optional[Sequence] = None,
        num_threads: Optional[int] = None,
        optimize: bool = True,
        check_files: bool = True,
    ):
        self.model_dir = model_dir
        self.manifest = read_manifest(model_dir)
        available = [b for b in BACKENDS if b in self.manifest["models"]]
        if backend is None:
            backend = next((b for b in available if _importable(b)), None) or (
                available[0] if available else None
            )
        if backend not in self.manifest["models"]:
            raise ExportedModelError(
                f"'{model_dir}' holds no {backend} model (it holds: {', '.join(available) or '-'})"
            )
        self.backend = backend
        self.preprocessor = Preprocessor(self.manifest)
        self.embed_dim = int(self.manifest["embed_dim"])
        self._nets = {}
        for role in ("gallery", "query"):
            entry = self.manifest["models"][backend][role]
            path = os.path.join(model_dir, entry["file"])
            if not os.path.isfile(path):
                raise ExportedModelError(f"model file '{path}' of the manifest is missing")
            if check_files and entry.get("sha256") and _sha256(path) != entry["sha256"]:
                raise ExportedModelError(
                    f"'{path}' is not the file this export wrote (SHA-256 differs from "
                    f"{MANIFEST_NAME}): it comes from another export or was changed"
                )
            if backend == "onnx":
                net = OnnxBackend(path, providers, num_threads)
            else:
                # optimize_for_inference's oneDNN rewrites are float32-only
                fp32 = self.manifest.get("precision", "fp32") == "fp32"
                net = TorchScriptBackend(path, optimize, num_threads, onednn_rewrites=fp32)
            self._check_file_meta(path, net.file_meta, role)
            self._nets[role] = net

    def _check_file_meta(self, path: str, raw: Optional[str], role: str) -> None:
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ExportedModelError(f"'{path}' is not a model file exported by ian_d2")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ExportedModelError(
                f"'{path}' has export format version {meta.get('format_version')} (ian_d2 "
                f"{meta.get('ian_d2_version', '?')}); this runtime reads version {FORMAT_VERSION}"
            )
        if meta.get("export_id") != self.manifest.get("export_id") or meta.get("role") != role:
            raise ExportedModelError(
                f"'{path}' is the {meta.get('role')} model of export {meta.get('export_id')}, "
                f"not the {role} model of this export ({self.manifest.get('export_id')}, "
                f"{MANIFEST_NAME})"
            )

    def preprocess(self, image: np.ndarray, color: str = "BGR") -> Dict:
        """See :class:`Preprocessor`."""
        return self.preprocessor(image, color)

    def detect_preprocessed(self, inp: Dict, score_thresh: Optional[float] = None) -> Dict:
        """:meth:`detect` on the output of :meth:`preprocess`."""
        x = inp["image"]
        newh, neww = x.shape[1:]
        boxes, scores, embeds = self._nets["gallery"](x)
        height, width = inp["height"], inp["width"]
        boxes = boxes.astype(np.float32).reshape(-1, 4)
        boxes[:, 0::2] *= np.float32(width / neww)
        boxes[:, 1::2] *= np.float32(height / newh)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
        keep = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
        if score_thresh is not None:
            keep &= scores >= score_thresh
        return {
            "boxes": boxes[keep],
            "scores": scores.astype(np.float32).reshape(-1)[keep],
            "embeddings": embeds.astype(np.float32).reshape(-1, self.embed_dim)[keep],
        }

    def detect(self, image: np.ndarray, color: str = "BGR", score_thresh=None) -> Dict:
        """
        Detect the persons of an image, each with its embedding.

        Args:
            image: [H, W, 3] uint8 in ``color`` order.
            score_thresh: keep detections from this score (the exported model already applied
                the config's ``SCORE_THRESH_TEST``, ``gallery.score_thresh`` of the manifest).

        Returns:
            dict: ``boxes`` [n, 4] (XYXY, original image pixels), ``scores`` [n],
            ``embeddings`` [n, D] (L2-normalised), best score first.
        """
        return self.detect_preprocessed(self.preprocess(image, color), score_thresh)

    def embed_preprocessed(self, inp: Dict, boxes) -> np.ndarray:
        """:meth:`embed` on the output of :meth:`preprocess`."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(b) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        x = inp["image"]
        h, w = x.shape[1:]
        sx, sy = w / inp["width"], h / inp["height"]
        b = b * np.array([sx, sy, sx, sy], dtype=np.float32)
        (emb,) = self._nets["query"](x, b)
        return emb.astype(np.float32).reshape(-1, self.embed_dim)

    def embed(self, image: np.ndarray, boxes, color: str = "BGR") -> np.ndarray:
        """
        Embeddings of given boxes (query persons) of an image, computed as the gallery model
        computes a detection's.

        Args:
            image: [H, W, 3] uint8 in ``color`` order.
            boxes: [n, 4] XYXY boxes in the image's pixels.

        Returns:
            np.ndarray: [n, D] float32, L2-normalised.
        """
        return self.embed_preprocessed(self.preprocess(image, color), boxes)


def _importable(backend: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime" if backend == "onnx" else "torch") is not None


def main(argv=None) -> Dict:
    """Command line: detections of an image, or embeddings of given boxes; JSON on stdout."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", help="the export folder")
    p.add_argument("image", help="an image file")
    p.add_argument("--backend", choices=BACKENDS, default=None)
    p.add_argument(
        "--box", type=float, nargs=4, action="append", metavar=("X1", "Y1", "X2", "Y2"),
        help="a query box: print its embedding instead of detecting (repeatable)",
    )  # fmt: skip
    p.add_argument("--score-thresh", type=float, default=None)
    p.add_argument("--embeddings", action="store_true", help="also print detection embeddings")
    args = p.parse_args(argv)
    try:
        model = PersonSearchModel(args.model_dir, args.backend)
        from PIL import Image

        try:
            image = np.asarray(Image.open(args.image).convert("RGB"))
        except OSError as e:
            raise ExportedModelError(f"image '{args.image}' is not readable ({e})") from e
        out = {"backend": model.backend, "image": args.image}
        if args.box:
            out["embeddings"] = model.embed(image, args.box, color="RGB").tolist()
        else:
            det = model.detect(image, color="RGB", score_thresh=args.score_thresh)
            out["boxes"] = det["boxes"].round(2).tolist()
            out["scores"] = det["scores"].round(5).tolist()
            if args.embeddings:
                out["embeddings"] = det["embeddings"].tolist()
    except ExportedModelError as e:
        sys.exit(f"runtime: error: {e}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
