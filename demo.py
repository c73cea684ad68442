#!/usr/bin/env python
"""Person-search demo: find a query person in a gallery of scene images.

Example (a model trained by ``make demo`` on the synthetic dataset)::

    python demo.py --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml \\
        --query-image datasets/cuhk_sysu_synth/Image/SSM/s975.jpg --query-box 244 115 282 214 \\
        --gallery datasets/cuhk_sysu_synth/Image/SSM --top-k 5 --output demo_output \\
        --opts MODEL.WEIGHTS output/synthetic/step3/model_final.pth

``--gallery`` takes a folder (its .jpg/.jpeg/.png files), a text file with one image path per
line, or several image paths. The output folder receives ``query.jpg``, ``rank_XX_<name>.jpg``
(each gallery image with the match drawn), ``ranking.jpg`` (the query and the top-k matches
side by side) and ``ranking.json``.
"""

import argparse
import json
import logging
import os
import sys
from typing import List, Sequence

import cv2
import numpy as np
import torch
import tqdm
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

import ian_d2  # noqa: F401  (registers the model)
from ian_d2.config import add_ian_config
from ian_d2.modeling import extract_query_embeddings

__all__ = ["PersonSearchDemo", "list_gallery", "main"]

logger = logging.getLogger("ian_d2.demo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path: str) -> np.ndarray:
    """Read an image as BGR uint8 [H, W, 3]; a clear error if it cannot be read."""
    img = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if img is None:
        reason = "does not exist" if not os.path.exists(path) else "is not a readable image"
        raise ValueError(f"image '{path}' {reason}")
    return img


def list_gallery(items: Sequence[str]) -> List[str]:
    """Gallery image paths from a folder, a .txt list of paths, or image paths."""
    if len(items) == 1 and os.path.isdir(items[0]):
        names = sorted(f for f in os.listdir(items[0]) if f.lower().endswith(IMAGE_EXTENSIONS))
        paths = [os.path.join(items[0], f) for f in names]
    elif len(items) == 1 and items[0].endswith(".txt"):
        if not os.path.isfile(items[0]):
            raise ValueError(f"gallery list '{items[0]}' does not exist")
        base = os.path.dirname(items[0])
        with open(items[0]) as f:
            paths = [
                line.strip() if os.path.isabs(line.strip()) else os.path.join(base, line.strip())
                for line in f
                if line.strip()
            ]
    else:
        paths = list(items)
    if not paths:
        raise ValueError(f"the gallery {list(items)} holds no image ({'/'.join(IMAGE_EXTENSIONS)})")
    return paths


def check_query_box(box: Sequence[float], shape) -> np.ndarray:
    """Validate an XYXY box against an image of shape (H, W, ...)."""
    h, w = shape[:2]
    b = np.asarray(box, dtype=np.float64)
    if not (0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h):
        raise ValueError(
            f"query box {b.tolist()} (x1 y1 x2 y2) must satisfy 0 <= x1 < x2 <= {w} and "
            f"0 <= y1 < y2 <= {h} (the query image is {w}x{h})"
        )
    return b


class PersonSearchDemo:
    """Embeds a query box and ranks the detections of gallery images by cosine similarity."""

    def __init__(self, cfg, det_thresh: float = 0.5):
        self.predictor = DefaultPredictor(cfg)
        self.det_thresh = det_thresh

    def _input(self, image_bgr: np.ndarray) -> dict:
        p = self.predictor
        img = image_bgr[:, :, ::-1] if p.input_format == "RGB" else image_bgr
        h, w = img.shape[:2]
        resized = p.aug.get_transform(img).apply_image(img)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        return {"image": tensor.to(p.cfg.MODEL.DEVICE), "height": h, "width": w}

    def query_embedding(self, image_bgr: np.ndarray, box) -> torch.Tensor:
        """[D] embedding of the GIVEN box (original image coordinates)."""
        box = check_query_box(box, image_bgr.shape)
        emb = extract_query_embeddings(self.predictor.model, [self._input(image_bgr)], [box[None]])
        return emb[0].cpu()

    def search(self, query: torch.Tensor, gallery: Sequence[str], top_k: int) -> List[dict]:
        """The top-k gallery detections by similarity (score >= det_thresh), best first."""
        found = []
        for path in tqdm.tqdm(gallery, desc="gallery", unit="img"):
            inst = self.predictor(read_image(path))["instances"].to("cpu")
            keep = inst.scores >= self.det_thresh
            if keep.any():
                sims = inst.pred_embeds[keep] @ query
                for b, s, sim in zip(inst.pred_boxes.tensor[keep], inst.scores[keep], sims):
                    found.append(
                        {
                            "image": path,
                            "box": [round(float(v), 2) for v in b],
                            "score": float(s),
                            "similarity": float(sim),
                        }
                    )
        found.sort(key=lambda d: -d["similarity"])
        return found[:top_k]


def _draw(image_bgr, box, label, color) -> np.ndarray:
    vis = Visualizer(image_bgr[:, :, ::-1])
    vis.draw_box(box, edge_color=color, line_style="-")
    vis.draw_text(label, (box[0], max(box[1] - 2, 0)), color=color, horizontal_alignment="left")
    return vis.get_output().get_image()[:, :, ::-1]


def _strip(images: List[np.ndarray], height: int = 240) -> np.ndarray:
    resized = [
        cv2.resize(im, (max(1, im.shape[1] * height // im.shape[0]), height)) for im in images
    ]
    sep = np.full((height, 6, 3), 255, np.uint8)
    out = [resized[0]]
    for im in resized[1:]:
        out += [sep, im]
    return np.concatenate(out, axis=1)


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description="IAN person search demo")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--query-image", required=True)
    parser.add_argument(
        "--query-box", required=True, type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2")
    )
    parser.add_argument("--gallery", required=True, nargs="+", help="folder, .txt list or images")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--det-thresh", type=float, default=0.5)
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE pairs")
    args = parser.parse_args(argv)
    setup_logger(name="ian_d2")
    cfg = get_cfg()
    add_ian_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()

    query_img = read_image(args.query_image)
    check_query_box(args.query_box, query_img.shape)
    gallery = list_gallery(args.gallery)
    demo = PersonSearchDemo(cfg, args.det_thresh)
    query = demo.query_embedding(query_img, args.query_box)
    ranking = demo.search(query, gallery, args.top_k)

    os.makedirs(args.output, exist_ok=True)
    panels = [_draw(query_img, args.query_box, "query", "yellow")]
    cv2.imwrite(os.path.join(args.output, "query.jpg"), panels[0])
    for rank, m in enumerate(ranking, start=1):
        img = _draw(read_image(m["image"]), m["box"], f"#{rank} {m['similarity']:.2f}", "lime")
        name = os.path.splitext(os.path.basename(m["image"]))[0]
        cv2.imwrite(os.path.join(args.output, f"rank_{rank:02d}_{name}.jpg"), img)
        panels.append(img)
    cv2.imwrite(os.path.join(args.output, "ranking.jpg"), _strip(panels))
    with open(os.path.join(args.output, "ranking.json"), "w") as f:
        json.dump(
            {
                "query": {"image": args.query_image, "box": list(args.query_box)},
                "det_thresh": args.det_thresh,
                "gallery_images": len(gallery),
                "ranking": ranking,
            },
            f,
            indent=1,
        )
    logger.info("Wrote %d matches to %s", len(ranking), args.output)
    return ranking


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad user input: one clear line, no traceback
        sys.exit(f"demo.py: error: {e}")
