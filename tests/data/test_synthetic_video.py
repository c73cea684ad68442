"""The synthetic video generator: videos OpenCV reads, annotations, identities, determinism, CLI."""

import hashlib
import json
import os
import tempfile
import unittest

import cv2
import numpy as np

from ian_d2.data.synthetic import generate_video, make_video_config
from ian_d2.data.synthetic.__main__ import main as cli_main

_CAMS = ("cam1", "cam2")


def _decode(path):
    """All frames of a video, decoded with OpenCV, as one uint8 (N, H, W, 3) array."""
    cap = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def _load(root):
    with open(os.path.join(root, "annotations.json"), encoding="utf-8") as f:
        return json.load(f)


def _frame_digests(root, anno):
    """sha256 of the first, middle and last decoded frame of each camera."""
    out = {}
    for cam in _CAMS:
        frames = _decode(os.path.join(root, anno["cameras"][cam]["file"]))
        n = len(frames)
        out[cam] = [hashlib.sha256(frames[i].tobytes()).hexdigest() for i in (0, n // 2, n - 1)]
    return out


def _tracks(anno, cam):
    """person_id -> [(frame index, box, visible)] of one camera."""
    out = {}
    for i, persons in enumerate(anno["cameras"][cam]["frames"]):
        for p in persons:
            out.setdefault(p["person_id"], []).append((i, p["box"], p["visible"]))
    return out


class TestSyntheticVideo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(tmp.cleanup)
        cls.tmp = tmp.name
        cls.root = os.path.join(cls.tmp, "seed0")
        cls.summary = generate_video(cls.root, size="tiny", seed=0)
        cls.anno = _load(cls.root)
        cls.frames = {c: _decode(os.path.join(cls.root, f"{c}.avi")) for c in _CAMS}

    def test_files_and_layout(self):
        self.assertEqual(
            sorted(os.listdir(self.root)), ["annotations.json", "cam1.avi", "cam2.avi"]
        )
        a = self.anno
        self.assertEqual(sorted(a["cameras"]), list(_CAMS))
        self.assertEqual(a["fps"], 10.0)
        self.assertEqual(a["frame_size"], [320, 240])
        for cam in _CAMS:
            c = a["cameras"][cam]
            self.assertEqual(c["file"], f"{cam}.avi")
            self.assertEqual(c["num_frames"], 30)
            self.assertEqual(len(c["frames"]), c["num_frames"])

    def test_videos_open_with_opencv(self):
        W, H = self.anno["frame_size"]
        for cam in _CAMS:
            c = self.anno["cameras"][cam]
            cap = cv2.VideoCapture(os.path.join(self.root, c["file"]))
            try:
                self.assertTrue(cap.isOpened(), cam)
                self.assertAlmostEqual(cap.get(cv2.CAP_PROP_FPS), self.anno["fps"], places=3)
                self.assertEqual(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), c["num_frames"])
                self.assertEqual(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), W)
                self.assertEqual(int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), H)
            finally:
                cap.release()
            self.assertEqual(self.frames[cam].shape, (c["num_frames"], H, W, 3))
        # Two cameras, two different streets.
        diff = np.abs(self.frames["cam1"][0].astype(int) - self.frames["cam2"][0].astype(int))
        self.assertGreater(diff.mean(), 10.0)

    def test_boxes_inside_frame(self):
        W, H = self.anno["frame_size"]
        ids = {int(k) for k in self.anno["identities"]}
        min_visible = self.anno["min_visible"]
        n = 0
        for cam in _CAMS:
            for persons in self.anno["cameras"][cam]["frames"]:
                self.assertEqual(len({p["person_id"] for p in persons}), len(persons))
                for p in persons:
                    x1, y1, x2, y2 = p["box"]
                    self.assertTrue(all(isinstance(v, int) for v in p["box"]), p)
                    self.assertTrue(0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H, p)
                    self.assertTrue(min_visible <= p["visible"] <= 1.0, p)
                    self.assertIn(p["person_id"], ids)
                    n += 1
        self.assertEqual(n, self.summary["boxes"])

    def test_identities_in_both_cameras(self):
        per_cam = {c: set(_tracks(self.anno, c)) for c in _CAMS}
        shared = per_cam["cam1"] & per_cam["cam2"]
        self.assertGreaterEqual(len(shared), 2)
        self.assertTrue(per_cam["cam1"] ^ per_cam["cam2"], "some identities in one camera only")
        self.assertEqual(sorted(shared), self.summary["shared_ids"])
        self.assertEqual(self.summary["shared_identities"], len(shared))
        self.assertEqual(
            self.summary["identities_per_camera"], {c: len(v) for c, v in per_cam.items()}
        )
        for pid, info in self.anno["identities"].items():
            cams = [c for c in _CAMS if int(pid) in per_cam[c]]
            self.assertEqual(info["cameras"], cams)
            self.assertEqual(info["planned_cameras"], cams)
            for c in cams:
                self.assertGreaterEqual(info["tracks"][c]["num_frames"], 5)

    def test_people_walk(self):
        crowded = 0
        for cam in _CAMS:
            crowded += sum(len(f) >= 2 for f in self.anno["cameras"][cam]["frames"])
            for pid, track in _tracks(self.anno, cam).items():
                if len(track) < 5:
                    continue
                (_, a, _), (_, b, _) = track[0], track[-1]
                centre_a = np.array([(a[0] + a[2]) / 2, a[3]])
                centre_b = np.array([(b[0] + b[2]) / 2, b[3]])
                self.assertGreater(np.linalg.norm(centre_b - centre_a), 5.0, (cam, pid))
                # The legs and arms swing: the box width changes from frame to frame.
                widths = {box[2] - box[0] for _, box, _ in track}
                self.assertGreater(len(widths), 2, (cam, pid))
        self.assertGreater(crowded, 0, "no frame with two persons")
        self.assertGreaterEqual(self.summary["max_persons_per_frame"], 2)

    def test_identity_appearance_is_stable(self):
        """Colours of a person's crops stay closer to themselves than to anyone else's.

        A person's pixels are those that differ from the camera's background (the median of
        its frames); the descriptor is their mean colour in the upper and the lower body. Checked
        within a camera (first vs last clear view) and across the two cameras (no colour
        correction).
        """
        W, H = self.anno["frame_size"]
        desc = {}
        for cam in _CAMS:
            frames = self.frames[cam].astype(np.float32)
            background = np.median(frames, axis=0)
            desc[cam] = {}
            for pid, track in _tracks(self.anno, cam).items():
                for i, (x1, y1, x2, y2), vis in track:
                    if vis < 0.95 or x1 <= 0 or y1 <= 0 or x2 >= W or y2 >= H or y2 - y1 < 40:
                        continue
                    crop = frames[i, y1:y2, x1:x2]
                    fg = np.abs(crop - background[y1:y2, x1:x2]).max(axis=2) > 30
                    h = y2 - y1
                    parts = []
                    for r0, r1 in ((0.2, 0.5), (0.5, 0.9)):
                        m = fg[int(r0 * h) : int(r1 * h)]
                        if m.sum() >= 20:
                            parts.append(crop[int(r0 * h) : int(r1 * h)][m].mean(axis=0))
                    if len(parts) == 2:
                        desc[cam].setdefault(pid, []).append((i, np.concatenate(parts)))
        checked = 0
        for cam in _CAMS:
            for pid, views in desc[cam].items():
                if len(views) < 2 or views[-1][0] - views[0][0] < 10:
                    continue
                same = np.linalg.norm(views[0][1] - views[-1][1])
                others = [
                    np.linalg.norm(views[0][1] - v)
                    for q, vs in desc[cam].items()
                    if q != pid
                    for _, v in vs
                ]
                self.assertLess(same, min(others), (cam, pid))
                checked += 1
        mean = {
            c: {p: np.mean([v for _, v in vs], axis=0) for p, vs in desc[c].items()} for c in _CAMS
        }
        for pid in set(mean["cam1"]) & set(mean["cam2"]):
            same = np.linalg.norm(mean["cam1"][pid] - mean["cam2"][pid])
            others = [
                np.linalg.norm(mean["cam1"][pid] - v) for q, v in mean["cam2"].items() if q != pid
            ]
            self.assertLess(same, min(others), pid)
            checked += 1
        self.assertGreaterEqual(checked, 4)
        # The appearance written for each identity is the one it was drawn with.
        for info in self.anno["identities"].values():
            self.assertIn(info["appearance"]["pattern"], ("plain", "stripes", "checks", "two_tone"))

    def test_determinism_and_cli(self):
        other = os.path.join(self.tmp, "cli_seed0")
        summary = cli_main(["--format", "video", "--out", other, "--size", "tiny"])
        anno = _load(other)
        self.assertEqual(anno, self.anno)
        self.assertEqual(_frame_digests(other, anno), _frame_digests(self.root, self.anno))
        drop = ("seconds", "out_dir")
        self.assertEqual(
            {k: v for k, v in summary.items() if k not in drop},
            {k: v for k, v in self.summary.items() if k not in drop},
        )
        self.assertEqual(summary["frames"], {"cam1": 30, "cam2": 30})
        self.assertEqual(summary["fps"], 10.0)

        seed1 = os.path.join(self.tmp, "seed1")
        generate_video(seed1, size="tiny", seed=1)
        anno1 = _load(seed1)
        self.assertNotEqual(anno1["cameras"], self.anno["cameras"])
        d0, d1 = _frame_digests(self.root, self.anno), _frame_digests(seed1, anno1)
        for cam in _CAMS:
            self.assertTrue(set(d0[cam]).isdisjoint(d1[cam]), cam)

    def test_cli_overrides(self):
        out = os.path.join(self.tmp, "cli_overrides")
        summary = cli_main(
            [
                "--format",
                "video",
                "--out",
                out,
                "--size",
                "tiny",
                "--seed",
                "3",
                "--image-size",
                "256",
                "192",
                "--fps",
                "5",
                "--duration",
                "2",
                "--num-identities",
                "5",
            ]
        )
        self.assertEqual(summary["frame_size"], [256, 192])
        self.assertEqual(summary["fps"], 5.0)
        self.assertEqual(summary["frames"], {"cam1": 10, "cam2": 10})
        self.assertLessEqual(summary["identities"], 5)
        cap = cv2.VideoCapture(os.path.join(out, "cam2.avi"))
        try:
            self.assertAlmostEqual(cap.get(cv2.CAP_PROP_FPS), 5.0, places=3)
            self.assertEqual(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 10)
        finally:
            cap.release()

    def test_passes(self):
        # An appearance as eval-tracks defines it (a maximal run of visible frames).
        from ian_d2.search.tracks.evaluation import appearances

        one = os.path.join(self.tmp, "passes1")
        generate_video(one, size="tiny", seed=0, passes=1)
        self.assertEqual(_load(one), self.anno)  # the default output is unchanged
        self.assertEqual(_frame_digests(one, self.anno), _frame_digests(self.root, self.anno))

        many = os.path.join(self.tmp, "passes3")
        summary = generate_video(many, size="tiny", seed=0, passes=3, duration=20)
        anno = _load(many)
        self.assertEqual(anno["passes"], 3)
        self.assertEqual(summary["frames"], {"cam1": 200, "cam2": 200})
        for cam in _CAMS:
            runs = appearances(anno["cameras"][cam]["frames"], anno["fps"])
            planned = [p for p, i in anno["identities"].items() if cam in i["planned_cameras"]]
            self.assertEqual(sorted(runs), sorted(int(p) for p in planned), cam)
            for pid, r in runs.items():
                self.assertGreaterEqual(len(r), 3, (cam, pid, r))
        with self.assertRaisesRegex(ValueError, "too short"):
            generate_video(os.path.join(self.tmp, "short"), size="tiny", passes=3)
        self.assertEqual(make_video_config("default", passes=3).num_frames, 300)
        with self.assertRaisesRegex(ValueError, "passes"):
            make_video_config("tiny", passes=0)

    def test_config_errors(self):
        self.assertEqual(make_video_config("default").frame_size, (640, 360))
        with self.assertRaisesRegex(ValueError, "whole number"):
            make_video_config("tiny", fps=7.5)
        with self.assertRaisesRegex(ValueError, "unknown setting"):
            make_video_config("tiny", num_images=3)
        with self.assertRaisesRegex(ValueError, "num_shared"):
            make_video_config("tiny", num_shared=1)
        with self.assertRaisesRegex(ValueError, "unknown size"):
            make_video_config("huge")


if __name__ == "__main__":
    unittest.main()
