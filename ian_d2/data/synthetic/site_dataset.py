"""The target site as a person-search dataset: sampled frames, COCO JSONs, a cross-camera protocol.

:func:`generate_target_site` films two footage sets of the target site (:mod:`.video_site`)
with the same cameras and disjoint identities, samples frames from each video as a user would
from their own footage, and writes them in the project's COCO person-search format
(``docs/COCO_PERSON_SEARCH_FORMAT.md``)::

    OUT/datasets.json          dataset list: {name}_train, {name}_test (IAN_D2_COCO_DATASETS)
    OUT/site.json              what was generated (settings, counts, seconds)
    OUT/train/                 footage set 0: for an oracle trained on the target's labels
        cam1.avi ... camN.avi  the videos, annotations.json (as generate_video writes them)
        frames/camK/NNNNNN.jpg the frames sampled at sample_fps (NNNNNN: frame of the video)
        coco.json              the frames, camera_id per image, person_id per box
    OUT/test/                  footage set 1: the footage searched
        (the same files) and
        protocol.json          the queries: PRW-like cross-camera search

The protocol: one query per (identity, camera) for every identity seen in the sampled frames
of that camera and of at least one other camera; its image is the sampled frame of that camera
where the identity is clearest (at least 90% visible if it ever is, then the largest box);
its gallery is every frame of the other cameras (``"gallery": "all", "other_cameras_only":
true``). The identities are labels for evaluation and for the oracle only: an adaptation
method may use the train footage's frames, not its identities.
"""

import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2

from ..datasets.coco_person_search import (
    PROTOCOL_FORMAT,
    PROTOCOL_VERSION,
    write_json_lines,
    write_protocol,
)
from .video import generate_video

__all__ = [
    "SPLITS",
    "sampled_frames",
    "extract_frames",
    "site_coco",
    "cross_camera_protocol",
    "generate_target_site",
]

logger = logging.getLogger(__name__)

SPLITS: Tuple[Tuple[str, int], ...] = (("train", 0), ("test", 1))  # (folder, footage set)

FRAME_JPEG_QUALITY = 90
CLEAR = 0.9  # a query view is "clear" when at least this fraction of the person is visible


def sampled_frames(num_frames: int, fps: float, sample_fps: float) -> List[int]:
    """The frames of a video nearest before the times ``k / sample_fps``, k = 0, 1, ...

    Args:
        num_frames: Frames of the video.
        fps: Its frame rate.
        sample_fps: Frames to keep per second (at most ``fps``).

    Returns:
        Increasing frame indices.
    """
    if not 0 < sample_fps <= fps:
        raise ValueError(f"sample_fps must be in (0, fps={fps}], got {sample_fps}")
    step = float(fps) / float(sample_fps)
    out = sorted({int(math.floor(k * step + 1e-9)) for k in range(int(num_frames / step) + 1)})
    return [i for i in out if i < num_frames]


def extract_frames(root: str, anno: Dict[str, Any], frames: Sequence[int]) -> List[str]:
    """Decode the videos under ``root`` and write ``frames`` of each camera as JPEG images.

    Args:
        root: Folder of the videos and ``annotations.json``.
        anno: Its annotations.
        frames: Frame indices to write (of every camera).

    Returns:
        The written file names, relative to ``root/frames`` (``camK/NNNNNN.jpg``), camera by
        camera.

    Raises:
        RuntimeError: A video does not open or ends before its annotated frame count.
    """
    wanted = set(int(i) for i in frames)
    names = []
    for cam, info in anno["cameras"].items():
        folder = os.path.join(root, "frames", cam)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(root, info["file"])
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise RuntimeError(f"OpenCV cannot open the video '{path}'")
            for i in range(info["num_frames"]):
                if i not in wanted:
                    ok = cap.grab()
                else:
                    ok, img = cap.read()
                    if ok:
                        name = f"{cam}/{i:06d}.jpg"
                        cv2.imwrite(
                            os.path.join(root, "frames", name),
                            img,
                            [cv2.IMWRITE_JPEG_QUALITY, FRAME_JPEG_QUALITY],
                        )
                        names.append(name)
                if not ok:
                    raise RuntimeError(
                        f"'{path}' ends at frame {i}; annotations.json has {info['num_frames']}"
                    )
        finally:
            cap.release()
    return names


def _camera_id(cam: str) -> int:
    """1 for "cam1", ..."""
    return int(cam[3:])


def site_coco(anno: Dict[str, Any], frames: Sequence[int]) -> Dict[str, Any]:
    """The COCO person-search dict of the sampled ``frames`` of every camera of ``anno``.

    Images are ``camK/NNNNNN.jpg`` (camera by camera, in time order) with ``camera_id`` K,
    ``frame`` and ``time_s``; every annotated person is a box ``[x, y, w, h]`` with its
    ``person_id`` and ``visible`` fraction.
    """
    W, H = anno["frame_size"]
    images, annos = [], []
    for cam, info in anno["cameras"].items():
        for i in frames:
            images.append(
                {
                    "id": len(images) + 1,
                    "file_name": f"{cam}/{i:06d}.jpg",
                    "height": H,
                    "width": W,
                    "camera_id": _camera_id(cam),
                    "frame": int(i),
                    "time_s": round(i / anno["fps"], 3),
                }
            )
            for p in info["frames"][i]:
                x1, y1, x2, y2 = p["box"]
                annos.append(
                    {
                        "id": len(annos) + 1,
                        "image_id": images[-1]["id"],
                        "category_id": 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                        "person_id": int(p["person_id"]),
                        "visible": p["visible"],
                    }
                )
    return {
        "images": images,
        "annotations": annos,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def cross_camera_protocol(coco: Dict[str, Any], description: str = "") -> Dict[str, Any]:
    """The cross-camera protocol of a site's COCO dict (see the module docstring).

    Returns:
        A protocol dict (``docs/COCO_PERSON_SEARCH_FORMAT.md``), queries sorted by camera and
        ``person_id``.
    """
    image_of = {im["id"]: im for im in coco["images"]}
    cams_of: Dict[int, set] = {}
    best: Dict[Tuple[int, int], Tuple[Tuple, Dict[str, Any]]] = {}
    for a in coco["annotations"]:
        im = image_of[a["image_id"]]
        pid, cam = a["person_id"], im["camera_id"]
        if pid < 0:
            continue
        cams_of.setdefault(pid, set()).add(cam)
        x, y, w, h = a["bbox"]
        rank = (a["visible"] >= CLEAR, w * h, a["visible"], -im["frame"])
        if (cam, pid) not in best or rank > best[(cam, pid)][0]:
            best[(cam, pid)] = (rank, {"image": im["file_name"], "box": [x, y, w, h]})
    queries = []
    for (cam, pid), (_, q) in sorted(best.items()):
        if len(cams_of[pid]) < 2:
            continue
        queries.append(dict(q, person_id=pid, gallery="all", other_cameras_only=True))
    return {
        "format": PROTOCOL_FORMAT,
        "version": PROTOCOL_VERSION,
        "description": description
        or "cross-camera search: one query per (identity, camera), gallery = the other cameras",
        "queries": queries,
    }


def generate_target_site(
    out_dir: str,
    *,
    size: str = "default",
    seed: int = 0,
    sample_fps: float = 2.0,
    num_cameras: Optional[int] = None,
    name: str = "synthetic_target",
    workers: Optional[int] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Generate the target site's train and test footage as COCO person-search datasets.

    Args:
        out_dir: Output folder (created; files there are overwritten).
        size: Target-site preset of :func:`~.video.generate_video`: "tiny" (4 x 16 s at
            320x240: for tests), "small" (4 x 60 s), "medium" (4 x 150 s, 140 identities)
            or "default" (4 x 10 min at 640x360).
        seed: Random seed; the same seed gives identical annotations and frames.
        sample_fps: Frames sampled per second of video (at most the video's fps, 5).
        num_cameras: Cameras of the site (None: 4).
        name: Prefix of the registered names (``{name}_train``, ``{name}_test``).
        workers: Processes filming the cameras (see :func:`~.video.generate_video`).
        **overrides: Further settings of :func:`~.video.generate_video` (e.g. ``duration``,
            ``num_identities``), for both footage sets.

    Returns:
        Summary: ``out_dir``, ``datasets`` (the list file), per split ``images``, ``boxes``,
        ``identities``, ``cross_camera_identities``, ``video_seconds``, ``frames_seconds``,
        and for the test split ``queries`` and ``queries_per_camera``; ``seconds``.
    """
    start = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    summary: Dict[str, Any] = {"out_dir": out_dir, "size": size, "seed": int(seed)}
    for split, footage in SPLITS:
        root = os.path.join(out_dir, split)
        t0 = time.perf_counter()
        video = generate_video(
            root,
            size=size,
            seed=seed,
            workers=workers,
            site="target",
            footage=footage,
            num_cameras=num_cameras,
            **overrides,
        )
        t1 = time.perf_counter()
        with open(os.path.join(root, "annotations.json"), encoding="utf-8") as f:
            anno = json.load(f)
        n_frames = min(c["num_frames"] for c in anno["cameras"].values())
        frames = sampled_frames(n_frames, anno["fps"], sample_fps)
        extract_frames(root, anno, frames)
        coco = site_coco(anno, frames)
        write_json_lines(coco, os.path.join(root, "coco.json"), ("images", "annotations"))
        cams_of: Dict[int, set] = {}
        cam_of_image = {im["id"]: im["camera_id"] for im in coco["images"]}
        for a in coco["annotations"]:
            cams_of.setdefault(a["person_id"], set()).add(cam_of_image[a["image_id"]])
        info = {
            "footage": footage,
            "images": len(coco["images"]),
            "boxes": len(coco["annotations"]),
            "identities": len(cams_of),
            "cross_camera_identities": sum(len(c) >= 2 for c in cams_of.values()),
            "video_seconds": round(t1 - t0, 1),
        }
        if split == "test":
            protocol = cross_camera_protocol(coco)
            write_protocol(protocol, os.path.join(root, "protocol.json"))
            per_cam: Dict[str, int] = {}
            for q in protocol["queries"]:
                cam = q["image"].split("/")[0]
                per_cam[cam] = per_cam.get(cam, 0) + 1
            info.update(queries=len(protocol["queries"]), queries_per_camera=per_cam)
        info["frames_seconds"] = round(time.perf_counter() - t1, 1)
        info["fps"], info["duration_s"] = video["fps"], video["duration_s"]
        summary[split] = info
        logger.info("Target site %s (footage %d) in '%s': %s", split, footage, root, info)
    lst = {
        f"{name}_train": {
            "json_file": "train/coco.json",
            "image_root": "train/frames",
            "split": "train",
        },
        f"{name}_test": {
            "json_file": "test/coco.json",
            "image_root": "test/frames",
            "protocol_file": "test/protocol.json",
            "split": "test",
        },
    }
    summary["datasets"] = os.path.join(out_dir, "datasets.json")
    write_json_lines(lst, summary["datasets"], ())
    summary.update(sample_fps=float(sample_fps), seconds=round(time.perf_counter() - start, 1))
    write_json_lines(summary, os.path.join(out_dir, "site.json"), ())
    return summary
