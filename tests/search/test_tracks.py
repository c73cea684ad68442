"""Tracks (ian_d2.search.tracks): the motion tracker driven by time, the embedding re-link step,
the per-track table, tracks of an index (at indexing time, resumed, the ``tracks`` command) and
search by track (``query --group tracks``, ``POST /api/search`` with ``group: "tracks"``).

Units run on hand-made boxes and embeddings. The index tests use the synthetic two-camera video
and the search tests' small random model: what is checked is the bookkeeping (every detection in
exactly one track, the same tracks whatever the shards, nothing rebuilt twice), not the model.
"""

import glob
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
import pyarrow.parquet as pq
import pytest

from ian_d2.data.synthetic import generate_video
from ian_d2.search import GallerySearcher, index_gallery
from ian_d2.search.cli import main as search_main
from ian_d2.search.indexer import load_search_model
from ian_d2.search.store import list_shards
from ian_d2.search.tracks import (
    TrackSettings,
    build_tracks,
    rank_tracks,
    read_track_files,
)
from ian_d2.search.tracks.association import link_tracks
from ian_d2.search.tracks.table import TRACK_COLUMNS, track_table
from ian_d2.search.tracks.tracker import MotionTracker
from tests.search_testing import CrashingModel, Interrupt, make_cfg, save_model

# a random model's scores are low: let every stored detection start and extend tracks
OPEN = TrackSettings(high_score=0.0, activation_score=0.0)


def _walk(t, x0, vx, y=50.0, w=20.0, h=60.0):
    """[len(t), 4] boxes of a person walking at vx pixels/s from x0."""
    x = x0 + vx * np.asarray(t, np.float64)
    return np.stack([x, np.full_like(x, y), x + w, np.full_like(x, y + h)], 1)


def _frames_of(times_per_det, frame_times):
    return np.searchsorted(frame_times, times_per_det)


class TestMotionTracker(unittest.TestCase):
    def track(self, frame_times, det_times, boxes, **kwargs):
        kwargs.setdefault("frame_rate", 5.0)
        tracker = MotionTracker(activation_score=0.0, high_score=0.0, **kwargs)
        scores = np.full(len(boxes), 0.9, np.float32)
        return tracker.track(frame_times, _frames_of(det_times, frame_times), boxes, scores)

    def test_two_walkers_variable_frame_rate(self):
        # sampled at irregular times (5 fps, then 2 fps, then 10 fps); two people walking apart
        times = np.r_[np.arange(0, 2, 0.2), np.arange(2, 4, 0.5), np.arange(4, 5, 0.1)]
        det_t = np.r_[times, times]
        boxes = np.r_[_walk(times, 10, 30), _walk(times, 200, -25, y=60)]
        labels = self.track(times, det_t, boxes)
        n = len(times)
        self.assertEqual(len(set(labels[:n])), 1, labels)
        self.assertEqual(len(set(labels[n:])), 1, labels)
        self.assertNotEqual(labels[0], labels[n])
        self.assertEqual(labels[0], 0)  # numbered by first appearance; first detection tracked

    def test_time_drives_the_lost_track_budget(self):
        """A gap in the sampling is counted in seconds: 0.6 s without a frame keeps the track
        (budget 1 s), 1.6 s breaks it, whatever the number of frames."""
        for gap, tracks in ((0.6, 1), (1.6, 2)):
            times = np.r_[np.arange(0, 1, 0.2), 0.8 + gap + np.arange(0, 1, 0.2)]
            boxes = _walk(times, 10, 10)
            labels = self.track(times, times, boxes, lost_track_s=1.0)
            self.assertEqual(len(set(labels)), tracks, (gap, labels))

    def test_frames_without_detections_age_tracks(self):
        """Frames with no detection advance time: a person missing for 1.6 s of sampled but
        empty frames is a new track."""
        times = np.arange(0, 3.4, 0.2)
        keep = (times < 0.9) | (times > 2.5)
        labels = self.track(times, times[keep], _walk(times[keep], 10, 10), lost_track_s=1.0)
        self.assertEqual(len(set(labels)), 2)

    def test_empty_video_and_every_kind(self):
        for kind in ("bytetrack", "ocsort", "sort"):
            labels = self.track(np.arange(0, 1, 0.2), np.zeros(0), np.zeros((0, 4)), kind=kind)
            self.assertEqual(labels.shape, (0,))
            times = np.arange(0, 2, 0.2)
            labels = self.track(times, times, _walk(times, 10, 20), kind=kind)
            self.assertEqual(len(labels), len(times))
            self.assertGreaterEqual(labels.min(), 0)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, "strictly increasing"):
            self.track(np.array([0.0, 0.2, 0.2]), np.zeros(0), np.zeros((0, 4)))
        with self.assertRaisesRegex(ValueError, "frame_rate"):
            MotionTracker(frame_rate=0.0)
        with self.assertRaisesRegex(ValueError, "tracker 'deepsort' is not one of"):
            TrackSettings(tracker="deepsort")
        with self.assertRaisesRegex(ValueError, "link_similarity"):
            TrackSettings(link_similarity=2.0)


class TestLinkTracks(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.a, self.b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 16)))

    def link(self, labels, times, boxes, embeds, **kw):
        return link_tracks(np.asarray(labels), np.asarray(times, float), boxes, embeds, **kw)

    def test_relinks_across_an_occlusion_and_never_merges_overlaps(self):
        # motion tracks: 0 (A, t 0-1), 1 (A again, t 2-3), 2 (B, t 0-3, overlaps both)
        t0, t1 = np.arange(0, 1.01, 0.2), np.arange(2, 3.01, 0.2)
        times = np.r_[t0, t1, t0, t1]
        labels = np.r_[np.zeros(len(t0)), np.ones(len(t1)), np.full(2 * len(t0), 2)].astype(int)
        boxes = np.r_[_walk(t0, 10, 20), _walk(t1, 10, 20), _walk(np.r_[t0, t1], 200, -20)]
        embeds = np.r_[np.tile(self.a, (2 * len(t0), 1)), np.tile(self.a, (2 * len(t0), 1))]
        out = self.link(labels, times, boxes, embeds)
        n = len(t0)
        self.assertEqual(len(set(out[: 2 * n])), 1)  # A re-linked across the gap
        self.assertEqual(len(set(out[2 * n :])), 1)
        self.assertNotEqual(out[0], out[2 * n])  # B has A's embedding but overlaps in time
        # without agreement of the embeddings, or beyond the gap, nothing is linked
        other = embeds.copy()
        other[n : 2 * n] = self.b
        self.assertEqual(len(set(self.link(labels, times, boxes, other))), 3)
        self.assertEqual(len(set(self.link(labels, times, boxes, embeds, max_gap_s=0.5))), 3)
        # too far to walk in the gap
        far = boxes.copy()
        far[n : 2 * n, [0, 2]] += 1000
        self.assertEqual(len(set(self.link(labels, times, far, embeds))), 3)

    def test_chains_stay_in_time_order(self):
        # three pieces of one person: linked into one chain; numbering by first detection
        times = np.r_[4.0, 4.2, 0.0, 0.2, 2.0, 2.2]
        labels = np.array([0, 0, 1, 1, 2, 2])
        boxes = _walk(times, 10, 5)
        out = self.link(labels, times, boxes, np.tile(self.a, (6, 1)))
        np.testing.assert_array_equal(out, np.zeros(6))
        self.assertEqual(self.link([], [], np.zeros((0, 4)), np.zeros((0, 16))).shape, (0,))


class TestTrackTableAndRanking(unittest.TestCase):
    def test_table_and_rank(self):
        rng = np.random.default_rng(1)
        emb = rng.normal(size=(6, 8)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        ids = [f"r000-000001.{i}" for i in range(6)]
        labels = np.array([1, 0, 0, 1, 1, 2])
        table = track_table("/v.avi", ids, np.arange(6) * 2, np.arange(6) * 0.2,
                            np.array([.5, .9, .6, .7, .8, .4], np.float32), emb, labels,
                            np.array([0, 1, 1, 2, 3, 4]))  # fmt: skip
        self.assertEqual(tuple(table.column_names), TRACK_COLUMNS)
        t = table.to_pydict()
        self.assertEqual(t["num_detections"], [2, 3, 1])
        self.assertEqual(t["detections"][1], ["r000-000001.0", "r000-000001.3", "r000-000001.4"])
        self.assertEqual(t["best_detection"], ["r000-000001.1", "r000-000001.4", "r000-000001.5"])
        self.assertEqual((t["first_frame"][1], t["last_frame"][1]), (0, 8))
        self.assertEqual(t["num_motion_tracks"], [1, 3, 1])
        mean = np.asarray(t["embedding"][1])
        expected = emb[[0, 3, 4]].mean(0)
        np.testing.assert_allclose(mean, expected / np.linalg.norm(expected), atol=1e-6)

    def test_rank_best_and_mean(self):
        from ian_d2.search.tracks.lookup import TrackLookup

        emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]
        emb[1] = [0.6, 0.8, 0, 0]
        track_emb = np.array([[0.8, 0.6, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)
        lookup = TrackLookup(
            track_of_row=np.array([0, 0, 1, 1, 2]), tracked=np.array([True, True, False]),
            source=["v", "v", None], number=np.array([0, 1, -1]),
            first_frame=np.zeros(3, np.int32), last_frame=np.zeros(3, np.int32),
            first_time=np.zeros(3), last_time=np.zeros(3),
            num_detections=np.array([2, 2, 1]), best_row=np.array([0, 2, 4]), emb=track_emb,
        )  # fmt: skip
        q = np.array([0.6, 0.8, 0, 0], np.float32)
        best = rank_tracks(lookup, emb, q, rank_by="best", top_k=10)
        self.assertEqual(best.tracks.tolist(), [0, 1, 2])  # row 1 (sim 1.0), then rows 2 (0.8)
        self.assertEqual(best.rows.tolist(), [1, 2, 4])
        mean = rank_tracks(lookup, emb, q, rank_by="mean", top_k=10)
        self.assertEqual(mean.tracks.tolist(), [0, 1, 2])
        np.testing.assert_allclose(mean.similarities, [0.96, 0.8, 0.0], atol=1e-6)
        masked = rank_tracks(lookup, emb, q, np.array([0, 0, 1, 1, 1], bool), top_k=1, offset=1)
        self.assertEqual((masked.tracks.tolist(), masked.total), ([2], 2))
        self.assertEqual(rank_tracks(lookup, emb, q, min_similarity=0.9).total, 1)
        with self.assertRaisesRegex(ValueError, "rank_by"):
            rank_tracks(lookup, emb, q, rank_by="median")


class TestOccluder(unittest.TestCase):
    """The synthetic video with an occluder: a person crossing behind it keeps one track with
    the embedding re-link step and breaks without it. Detections are the ground-truth boxes at
    5 sampled frames/s; embeddings are made per identity (the tests' model is random), so what
    is checked is the tracker and the re-link step on the generator's motion, not the model."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.plain = os.path.join(cls._tmp.name, "plain")
        cls.explicit = os.path.join(cls._tmp.name, "explicit")
        cls.occluded = os.path.join(cls._tmp.name, "occluded")
        generate_video(cls.plain, size="tiny", seed=0)
        generate_video(cls.explicit, size="tiny", seed=0, occluder=0.0)
        generate_video(cls.occluded, size="tiny", seed=0, occluder=0.2)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def test_default_output_unchanged(self):
        for name in ("cam1.avi", "cam2.avi", "annotations.json"):
            with open(os.path.join(self.plain, name), "rb") as a:
                with open(os.path.join(self.explicit, name), "rb") as b:
                    self.assertEqual(a.read(), b.read(), name)
        with open(os.path.join(self.occluded, "annotations.json")) as f:
            ann = json.load(f)
        self.assertEqual(ann["occluder"]["box"], [128, 0, 192, 240])
        with self.assertRaisesRegex(ValueError, "occluder must be"):
            generate_video(self._tmp.name, size="tiny", occluder=0.9)

    def test_eval_tracks_on_ground_truth_detections(self):
        """eval-tracks on an index of the ground-truth boxes of the video with an occluder: the
        embedding re-link raises IDF1 over motion only, and a per-track top-10 holds more
        distinct correct appearances than a per-detection top-10."""
        from ian_d2.search.tracks.evaluation import match_ground_truth

        index = _ground_truth_index(self.occluded, os.path.join(self._tmp.name, "gt_index"))
        build_tracks(index, TrackSettings(lost_track_s=0.25))
        out = os.path.join(self._tmp.name, "eval", "tracks.json")
        ann = os.path.join(self.occluded, "annotations.json")
        picture = os.path.join(self._tmp.name, "eval", "track.jpg")
        res = search_main(["eval-tracks", index, "--annotations", ann, "--output", out,
                           "--query-every", "2", "--picture", picture])  # fmt: skip
        self.assertEqual(res["picture"]["file"], picture)
        self.assertTrue(os.path.isfile(picture))
        with open(out) as f:
            self.assertEqual(json.load(f), json.loads(json.dumps(res)))
        tracking = res["tracking"]
        for variant in ("motion", "motion+reid"):
            self.assertEqual(set(tracking[variant]), {"cam1.avi", "cam2.avi", "all"})
            m = tracking[variant]["all"]
            self.assertEqual(m["DetA"], 100.0)  # the detections are the ground truth
        self.assertGreater(
            tracking["motion+reid"]["all"]["IDF1"], tracking["motion"]["all"]["IDF1"]
        )
        self.assertLess(
            tracking["motion+reid"]["all"]["tracks"], tracking["motion"]["all"]["tracks"]
        )
        search = res["search"]
        self.assertGreater(search["queries"], 5)
        det, best = search["detections"], search["tracks_best"]
        self.assertGreater(best["distinct_appearances_top10"], det["distinct_appearances_top10"])
        for mode in ("detections", "tracks_best", "tracks_mean"):
            e = search[mode]
            self.assertTrue(0 <= e["recall@1"] <= e["recall@5"] <= e["recall@10"] <= 1, e)
        # ground-truth matching: one-to-one at IoU >= 0.5
        gt = [(7, [0, 0, 10, 10]), (8, [20, 0, 30, 10])]
        boxes = np.array([[21, 0, 30, 10], [0, 0, 9, 10], [50, 50, 60, 60]], np.float32)
        self.assertEqual(match_ground_truth(gt, boxes).tolist(), [8, 7, -1])
        with self.assertRaisesRegex(ValueError, "is not the annotations.json"):
            search_main(["eval-tracks", index, "--annotations", out, "--output", out])
        from ian_d2.search.manifest import IndexManifest

        empty = os.path.join(self._tmp.name, "empty_index")
        IndexManifest(model={"embed_dim": 32}, score_thresh=0.5, fps=5.0).save(empty)
        with self.assertRaisesRegex(ValueError, "holds no video named cam1.avi, cam2.avi"):
            search_main(["eval-tracks", empty, "--annotations", ann, "--output", out])

    def test_picture_shows_a_track_of_one_person(self):
        """eval-tracks --picture draws the longest track of ONE person: with a re-link that
        chains everybody (any similarity, any gap, any speed), tracks as long as it or longer
        mix people and are passed over."""
        from ian_d2.search.tracks.evaluation import (
            load_ground_truth,
            longest_pure_track,
            match_ground_truth,
        )

        index = _ground_truth_index(self.occluded, os.path.join(self._tmp.name, "mixed_index"))
        chain_all = TrackSettings(lost_track_s=0.25, link_similarity=-1.0, link_max_gap_s=100.0,
                                  link_max_speed=1000.0)  # fmt: skip
        build_tracks(index, chain_all)
        ann = os.path.join(self.occluded, "annotations.json")
        gt = load_ground_truth(ann)
        people = {}  # detection id -> ground-truth person
        for path in list_shards(index):
            t = pq.read_table(path, columns=["source", "frame", "x1", "y1", "x2", "y2"])
            t = t.to_pydict()
            stem = os.path.basename(path)[: -len(".parquet")]
            for i, (src, f) in enumerate(zip(t["source"], t["frame"])):
                box = np.asarray([[t[k][i] for k in ("x1", "y1", "x2", "y2")]], np.float32)
                people[f"{stem}.{i}"] = int(
                    match_ground_truth(gt[os.path.basename(src)][f], box)[0]
                )

        tracks = {}  # (source, number) -> (number of detections, their persons)
        for _, header, table in read_track_files(index):
            for r in table.to_pylist():
                persons = {people[d] for d in r["detections"]}
                tracks[header["source"], r["track"]] = (len(r["detections"]), persons)
        mixed = [n for n, persons in tracks.values() if len(persons - {-1}) > 1]
        found = longest_pure_track(index, ann)
        n, persons = tracks[found["source"], found["track"]]
        self.assertEqual(persons - {-1}, {found["person_id"]})
        self.assertEqual(n, found["num_detections"])
        self.assertGreater(n, 1)
        pure = [m for m, persons in tracks.values() if len(persons - {-1}) == 1]
        self.assertEqual(n, max(pure))
        self.assertGreaterEqual(max(mixed), n)  # as long or longer, mixing people: passed over
        picture = os.path.join(self._tmp.name, "eval", "pure.jpg")
        res = search_main(["eval-tracks", index, "--annotations", ann, "--output",
                           os.path.join(self._tmp.name, "eval", "mixed.json"),
                           "--picture", picture])  # fmt: skip
        self.assertEqual(res["picture"]["track"], found["track"])
        self.assertTrue(os.path.isfile(picture))

    def test_crossing_behind_the_occluder(self):
        with open(os.path.join(self.occluded, "annotations.json")) as f:
            ann = json.load(f)
        rng = np.random.default_rng(0)
        identity = {int(p): rng.normal(size=32) for p in ann["identities"]}
        crossed = 0
        for cam, data in ann["cameras"].items():
            frames = list(range(0, data["num_frames"], 2))  # 5 of the 10 frames per second
            times = np.asarray(frames, float) / ann["fps"]
            dets = [(k, a) for k, f in enumerate(frames) for a in data["frames"][f]]
            if not dets:
                continue
            pos = np.asarray([k for k, _ in dets])
            pid = np.asarray([a["person_id"] for _, a in dets])
            boxes = np.asarray([a["box"] for _, a in dets], np.float32)
            emb = np.stack([identity[p] + 0.3 * rng.normal(size=32) for p in pid])
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            tracker = MotionTracker(frame_rate=5.0, lost_track_s=0.25, activation_score=0.0,
                                    high_score=0.0)  # fmt: skip
            motion = tracker.track(times, pos, boxes, np.full(len(pid), 0.9, np.float32))
            linked = link_tracks(motion, times[pos], boxes, emb, min_similarity=0.7)
            # the motion tracks that hold one person only (the tracker may switch identities
            # where two people cross: the re-link step does not split tracks)
            pure = {m: pid[motion == m][0] for m in np.unique(motion)
                    if len(set(pid[motion == m])) == 1}  # fmt: skip
            for p in np.unique(pid):
                seen = np.unique(pos[pid == p])
                if len(seen) < 2 or seen[-1] - seen[0] + 1 == len(seen):
                    continue  # not hidden for a while in the middle of its walk
                self.assertGreater(len(set(motion[pid == p])), 1, (cam, p))  # motion: broken
                if all(m in pure for m in motion[pid == p]):
                    crossed += 1
                    self.assertEqual(len(set(linked[pid == p])), 1, (cam, p))  # re-linked
            for label in np.unique(linked):  # never two persons' motion tracks linked
                persons = {pure[m] for m in np.unique(motion[linked == label]) if m in pure}
                self.assertLessEqual(len(persons), 1, (cam, label))
        self.assertGreater(crossed, 0, "nobody crossed behind the occluder")


def _ground_truth_index(videos: str, out: str, seed: int = 0) -> str:
    """An index of the synthetic video whose detections are its ground-truth boxes (5 sampled
    frames/s, score 0.9) with embeddings made per identity and camera (a stand-in for a model
    that tells the identities apart, its embeddings closer within one camera's view than
    across cameras): what the evaluation and the tracks see without a model."""
    from ian_d2.search.manifest import IndexManifest
    from ian_d2.search.shards import ShardWriter
    from ian_d2.search.sources import GalleryItem

    with open(os.path.join(videos, "annotations.json")) as f:
        ann = json.load(f)
    rng = np.random.default_rng(seed)
    identity = {int(p): rng.normal(size=32) for p in ann["identities"]}
    view = {
        (int(p), c): 0.8 * rng.normal(size=32) for p in ann["identities"] for c in ann["cameras"]
    }
    IndexManifest(model={"embed_dim": 32}, score_thresh=0.5, fps=5.0).save(out)
    writer = ShardWriter(out, 0, 32)
    for cam in sorted(ann["cameras"]):
        data = ann["cameras"][cam]
        path = os.path.abspath(os.path.join(videos, data["file"]))
        items, dets = [], []
        for f in range(0, data["num_frames"], 2):
            items.append(GalleryItem(path, f, f / ann["fps"]))
            persons = data["frames"][f]
            emb = np.stack([identity[a["person_id"]] + view[a["person_id"], cam]
                            + 0.2 * rng.normal(size=32) for a in persons]
                           or [np.zeros(32)])[: len(persons)]  # fmt: skip
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            dets.append({"boxes": np.asarray([a["box"] for a in persons], np.float32),
                         "scores": np.full(len(persons), 0.9, np.float32), "embeds": emb})  # fmt: skip
        writer.write(items, [tuple(ann["frame_size"])] * len(items), dets)
    return out


def _track_sets(index_dir):
    """The tracks of an index as a set of tuples of (video, frame, rounded box) of their
    detections, independent of shard names."""
    boxes = {}
    for path in list_shards(index_dir):
        t = pq.read_table(path, columns=["source", "frame", "x1", "y1", "x2", "y2"]).to_pydict()
        stem = os.path.basename(path)[: -len(".parquet")]
        for i in range(len(t["frame"])):
            box = tuple(round(t[k][i], 2) for k in ("x1", "y1", "x2", "y2"))
            boxes[f"{stem}.{i}"] = (os.path.basename(t["source"][i]), t["frame"][i], box)
    out = set()
    for _, _, table in read_track_files(index_dir):
        for dets in table.column("detections").to_pylist():
            out.add(tuple(sorted(boxes[d] for d in dets)))
    return out, len(boxes)


@pytest.mark.synthetic_cuhk_sysu
class TestIndexTracks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        tmp = cls._tmp.name
        cls.videos = os.path.join(tmp, "videos")
        generate_video(cls.videos, size="tiny", seed=0)
        cls.weights = save_model(os.path.join(tmp, "model.pth"))
        cls.cfg = make_cfg(cls.weights, "TEST.DETECTIONS_PER_IMAGE", 3)
        cls.model = load_search_model(cls.cfg)
        cls.full = os.path.join(tmp, "full")
        cls.index(
            cls.full, tracks=False, batch_size=2, shard_size=6
        )  # 8 frames per camera: 3 shards
        cls.stats = build_tracks(cls.full, OPEN)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    @classmethod
    def index(cls, out, **kwargs):
        kwargs.setdefault("model", cls.model)
        kwargs.setdefault("score_thresh", 0.0)
        return index_gallery(cls.cfg, [cls.videos], out, fps=2.5, num_workers=0, progress=False,
                             **kwargs)  # fmt: skip

    def test_every_detection_in_one_track(self):
        self.assertEqual((self.stats["videos"], self.stats["built"]), (2, 2))
        files = read_track_files(self.full)
        self.assertEqual(len(files), 2)
        ids = [d for _, _, t in files for ds in t.column("detections").to_pylist() for d in ds]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(len(ids), 2 * 8 * 3)  # 3 detections in each of 8 frames per camera
        for path, header, table in files:
            self.assertEqual(header["settings"], OPEN.to_dict())
            t = table.to_pydict()
            self.assertEqual(sum(t["num_detections"]), 24)
            self.assertTrue(all(a <= b for a, b in zip(t["first_time_s"], t["last_time_s"])))
            emb = np.asarray(t["embedding"])
            np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
            self.assertEqual(t["track"], list(range(len(t["track"]))))
        # detections of one track never share a frame
        sets, _ = _track_sets(self.full)
        for track in sets:
            frames = [(v, f) for v, f, _ in track]
            self.assertEqual(len(frames), len(set(frames)))

    def test_resumed_index_has_the_one_shot_tracks(self):
        out = os.path.join(self._tmp.name, "resumed")
        with self.assertRaises(Interrupt):  # killed in cam2: 3 shards of 4 of the 16 items
            self.index(out, batch_size=2, shard_size=4, model=CrashingModel(self.model, 6),
                       tracks=False)  # fmt: skip
        build_tracks(out, OPEN)  # tracks of the partial video, made again after the resume
        self.index(out, batch_size=2, shard_size=4, resume=True, tracks=True)
        self.assertEqual(len(list_shards(out)), 4)  # not the one-shot index's 3 shards
        self.assertEqual(_track_sets(out), _track_sets(self.full))

    def test_tracks_command_idempotent_and_refusals(self):
        out = os.path.join(self._tmp.name, "no_tracks")
        shutil.copytree(self.full, out)
        shutil.rmtree(os.path.join(out, "tracks"))
        search_main(["tracks", out, "--rebuild"] + ["--link-similarity", "0.7"])
        files = sorted(glob.glob(os.path.join(out, "tracks", "*.parquet")))
        self.assertEqual(len(files), 2)
        before = {p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in files}
        stats = build_tracks(out)  # the index's settings: nothing to do
        self.assertEqual(stats["built"], 0)
        self.assertEqual({p: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for p in files},
                         before)  # fmt: skip
        with self.assertRaisesRegex(ValueError, r"other settings \(reid=True\).*--rebuild"):
            build_tracks(out, TrackSettings(reid=False))
        # resumable: a video's file lost (an interrupted run) is the only one built again
        os.remove(files[0])
        self.assertEqual(build_tracks(out)["built"], 1)
        self.assertEqual(open(files[0], "rb").read(), before[files[0]][1])
        # a shard the tracks were built from is gone: refused, naming it
        shard = list_shards(out)[0]
        os.remove(shard)
        with self.assertRaisesRegex(ValueError, os.path.basename(shard) + " is gone.*--rebuild"):
            build_tracks(out)
        self.assertEqual(build_tracks(out, rebuild=True)["built"], 2)
        with self.assertRaisesRegex(ValueError, "is not a search index"):
            search_main(["tracks", self._tmp.name])

    def test_motion_only_is_not_more_linked(self):
        out = os.path.join(self._tmp.name, "motion_only")
        shutil.copytree(self.full, out)
        build_tracks(out, OPEN.replace(reid=False), rebuild=True)
        motion = sum(t.num_rows for _, _, t in read_track_files(out))
        linked = sum(t.num_rows for _, _, t in read_track_files(self.full))
        self.assertGreaterEqual(motion, linked)
        for _, header, table in read_track_files(out):
            self.assertEqual(set(table.column("num_motion_tracks").to_pylist()), {1})

    def test_search_by_track(self):
        searcher = GallerySearcher(self.full, model=self.model)
        lookup, emb = searcher.tracks()
        self.assertEqual(lookup.untracked_video_rows, 0)
        track = int(np.argmax(lookup.num_detections))
        rows = lookup.rows_of(track)
        q = lookup.emb[track][None]
        for rank_by in ("best", "mean"):
            res = searcher.search_tracks(q, top_k=50, rank_by=rank_by)[0]
            keys = [(m["source"], m["track"]["number"]) for m in res["matches"]]
            self.assertEqual(len(keys), len(set(keys)))  # one match per track
            self.assertEqual(len(keys), min(50, lookup.num_tracks))
            sims = [m["similarity"] for m in res["matches"]]
            self.assertEqual(sims, sorted(sims, reverse=True))
            top = res["matches"][0]["track"]
            self.assertEqual(top["kind"], "track")
            self.assertEqual(top["num_detections"], len(rows))
        # best: the first track's similarity is its best detection's
        res = searcher.search_tracks(emb[rows[0]][None], top_k=3, rank_by="best")[0]
        self.assertAlmostEqual(res["matches"][0]["similarity"], 1.0, places=5)
        self.assertEqual(res["matches"][0]["track"]["num_detections"], len(rows))

    def test_videos_without_detections(self):
        from ian_d2.search.manifest import IndexManifest
        from ian_d2.search.shards import ShardWriter
        from ian_d2.search.sources import GalleryItem

        out = os.path.join(self._tmp.name, "empty")
        IndexManifest(model={"embed_dim": 8}, score_thresh=0.5, fps=5.0).save(out)
        none = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "embeds": np.zeros((0, 8))}
        for cam in ("cam1.avi", "cam2.avi"):
            items = [GalleryItem(os.path.join(self.videos, cam), f, f / 10) for f in range(4)]
            ShardWriter(out, 0, 8).write(items, [(320, 240)] * 4, [none] * 4)
        stats = build_tracks(out)
        self.assertEqual((stats["videos"], stats["built"], stats["tracks"]), (2, 2, 0))
        self.assertEqual([t.num_rows for _, _, t in read_track_files(out)], [0, 0])
        self.assertEqual(build_tracks(out)["built"], 0)

    def test_query_command_group_tracks(self):
        import cv2

        from ian_d2.search.sources import read_video_frames

        searcher = GallerySearcher(self.full, model=self.model)
        lookup, _ = searcher.tracks()
        track = int(np.argmax(lookup.num_detections))
        best = searcher.match(int(lookup.best_row[track]), 1.0)
        image = os.path.join(self._tmp.name, "query.png")  # lossless: the frame's pixels
        cv2.imwrite(image, read_video_frames(best["source"], [best["frame"]])[best["frame"]])
        out = os.path.join(self._tmp.name, "ranking_tracks")
        box = [str(v) for v in best["box"]]
        res = search_main(["query", self.full, "--query-image", image, "--query-box", *box,
                           "--group", "tracks", "--rank-by", "mean", "--top-k", "4",
                           "--output", out, "--device", "cpu"])[0]  # fmt: skip
        with open(os.path.join(out, "ranking.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["group"], {"by": "tracks", "rank_by": "mean"})
        ids = [m["track"]["id"] for m in saved["matches"]]
        self.assertEqual(len(ids), 4)
        self.assertEqual(len(set(ids)), 4)
        self.assertTrue(os.path.isfile(os.path.join(out, "ranking.jpg")))
        # the first match's track as the query: its own track first, similarity 1 (mean)
        first = res["matches"][0]["track"]
        self.assertEqual(first["kind"], "track")
        res = search_main(["query", self.full, "--query-track", first["id"], "--group", "tracks",
                           "--rank-by", "mean", "--output", out, "--device", "cpu"])[0]  # fmt: skip
        self.assertEqual(res["matches"][0]["track"]["id"], first["id"])
        self.assertAlmostEqual(res["matches"][0]["similarity"], 1.0, places=5)
        self.assertEqual(res["query"]["num_detections"], first["num_detections"])
        with self.assertRaisesRegex(ValueError, "track 'nope' is not a track of index"):
            search_main(["query", self.full, "--query-track", "nope", "--output", out,
                         "--device", "cpu"])  # fmt: skip

    def test_track_strip_picture(self):
        import cv2

        from ian_d2.search.tracks.picture import write_track_strip

        _, header, table = read_track_files(self.full)[0]
        source, number = header["source"], table.column("track")[0].as_py()
        path = write_track_strip(self.full, source, number, os.path.join(self._tmp.name, "t.jpg"))
        image = cv2.imread(path)
        self.assertEqual(image.shape[0], 26 + 160 + 22)  # title, crops, times
        with self.assertRaisesRegex(ValueError, "has no track 999"):
            write_track_strip(self.full, source, 999, path)

    def test_api_group_tracks(self):
        from fastapi.testclient import TestClient

        from ian_d2.search.serve import create_app

        app = create_app(self.full, model=self.model)
        client = TestClient(app)
        det = client.get("/api/sources").json()["sources"][0]
        frames = client.get(f"/api/sources/{det['id']}/frames").json()["frames"]
        did = frames[3]["detections"][0]["id"]
        body = {"query": {"detection_id": did}, "group": "tracks", "top_k": 5}
        r = client.post("/api/search", json=body)
        self.assertEqual(r.status_code, 200, r.text)
        res = r.json()
        hits = res["hits"]
        self.assertEqual(hits[0]["detection_id"], did)
        self.assertTrue(hits[0]["track"]["tracked"])
        self.assertEqual(len({h["track"]["id"] for h in hits}), len(hits))
        self.assertEqual([h["rank"] for h in hits], [1, 2, 3, 4, 5])
        n_tracks = sum(t.num_rows for _, _, t in read_track_files(self.full))
        self.assertEqual(res["total"], n_tracks)
        span = hits[0]["track"]
        self.assertLessEqual(span["first_time_s"], hits[0]["time_s"])
        self.assertGreaterEqual(span["last_time_s"], hits[0]["time_s"])
        # pages concatenate; a track query ranks its own track first (mean embedding)
        page2 = client.post("/api/search", json={**body, "offset": 5}).json()["hits"]
        full = client.post("/api/search", json={**body, "top_k": 10}).json()["hits"]
        self.assertEqual([h["track"]["id"] for h in full],
                         [h["track"]["id"] for h in hits + page2])  # fmt: skip
        tq = {"query": {"track_id": span["id"]}, "group": "tracks", "rank_by": "mean"}
        mean = client.post("/api/search", json=tq).json()
        self.assertEqual(mean["hits"][0]["track"]["id"], span["id"])
        self.assertAlmostEqual(mean["hits"][0]["similarity"], 1.0, places=5)
        self.assertEqual(mean["query"]["embedding"], "track")
        r = client.post("/api/search", json={"query": {"track_id": "nope.t1"}, "group": "tracks"})
        self.assertEqual(r.status_code, 404)
        self.assertIn("unknown track id 'nope.t1'", r.json()["detail"])
        r = client.post("/api/search", json={**body, "rank_by": "median"})
        self.assertEqual(r.status_code, 422)
        from ian_d2.search.serve.state import source_id_of
        from ian_d2.search.tracks import source_key

        self.assertEqual(source_key("/a/cam1.avi"), source_id_of("/a/cam1.avi"))  # same ids


if __name__ == "__main__":
    unittest.main()


@pytest.mark.slow
class TestTracksTwoProcesses(unittest.TestCase):
    """Tracks of an index written by 2 processes (Detectron2's ``launch``, gloo on CPU) are
    those of a one-shot index: each video is tracked from all its rows, whatever the shards."""

    def test_two_processes_one_shot_tracks(self):
        from tests.repo_scripts import QUICK_CONFIG
        from tests.search_testing import SMALL_OPTS

        with tempfile.TemporaryDirectory() as tmp:
            videos = os.path.join(tmp, "videos")
            generate_video(videos, size="tiny", seed=0)
            weights = save_model(os.path.join(tmp, "model.pth"))
            outs = {}
            for name, extra in (("one", []), ("two", ["--num-gpus", "2", "--shard-size", "4"])):
                outs[name] = os.path.join(tmp, name)
                search_main(["index", "--config-file", QUICK_CONFIG, "--gallery", videos,
                             "--out", outs[name], "--fps", "5", "--score-thresh", "0",
                             "--num-workers", "0", *extra, *[str(v) for v in SMALL_OPTS],
                             "TEST.DETECTIONS_PER_IMAGE", "3", "MODEL.WEIGHTS", weights])  # fmt: skip
                self.assertEqual(len(read_track_files(outs[name])), 2)  # built at indexing
                build_tracks(outs[name], OPEN, rebuild=True)
            ranks = {os.path.basename(p)[:4] for p in list_shards(outs["two"])}
            self.assertEqual(ranks, {"r000", "r001"})
            one, n_one = _track_sets(outs["one"])
            two, n_two = _track_sets(outs["two"])
            self.assertEqual(n_one, n_two)
            self.assertEqual(one, two)
