"""Pseudo identities for adaptation (issue 28): the k-reciprocal Jaccard distance, DBSCAN and
:func:`ian_d2.adapt.pseudo_labels.assign_pseudo_identities` on planted identities.

Planted data (:func:`planted`): 12 identities with a random prototype each in a 24-d subspace of
R^32 (people share a direction there, so they are nearer each other than junk is), a shift per
camera, 2-3 cameras per identity, 1-2 tracks of 6-10 consecutive frames per camera (so tracks of
one identity across cameras are to be merged), 2 detections without a track per camera, random
outliers in the 8 other dimensions (far from every person), optionally two near-identical people
walking side by side (the same frames: cannot-link) and a lone far track (a noise track).
"""

import json
import logging
import unittest
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import comb

from ian_d2.adapt.jaccard import (
    JaccardDistances,
    dbscan,
    k_reciprocal_jaccard,
    nearest_neighbours,
    relabel_by_first_row,
)
from ian_d2.adapt.pseudo_labels import TRACKS_HINT, assign_pseudo_identities, tracklets

logging.getLogger("ian_d2.adapt").setLevel(logging.ERROR)

TWIN_A, TWIN_B, LONE = 12, 13, 14  # planted identities past the 12 ordinary ones
OUTLIER = -1


@dataclass
class Planted:
    """N planted detections: features [N, D], track_ids [N] (-1: none), frame_keys [N], the
    true identity [N] (-1: an outlier) and the camera [N]."""

    features: np.ndarray
    track_ids: np.ndarray
    frame_keys: np.ndarray
    identity: np.ndarray
    camera: np.ndarray


def planted(seed=0, identities=12, cameras=3, dim=32, noise=0.12, outliers=3, twins=False, lone=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    people, far = basis[:, : dim - 8], basis[:, dim - 8 :]
    mu = people @ rng.normal(size=dim - 8)
    mu /= np.linalg.norm(mu)
    z = rng.normal(size=(identities, dim - 8)) @ people.T
    protos = 0.5 * mu + z / np.linalg.norm(z, axis=1, keepdims=True)
    bias = 0.05 * rng.normal(size=(cameras, dim - 8)) @ people.T
    rows = []  # (feature, track, frame key, identity, camera)
    track = 0

    def add(identity, cam, frame, track_id, proto, sigma):
        v = proto / np.linalg.norm(proto) + bias[cam] + sigma * rng.normal(size=dim) / np.sqrt(dim)
        rows.append((v / np.linalg.norm(v), track_id, cam * 10000 + frame, identity, cam))

    for i in range(identities):
        for cam in sorted(rng.choice(cameras, size=rng.integers(2, cameras + 1), replace=False)):
            start = int(rng.integers(0, 40))
            for _ in range(int(rng.integers(1, 3))):  # one or two tracks (a gap between)
                length = int(rng.integers(6, 11))
                for f in range(start, start + length):
                    add(i, cam, f, track, protos[i], noise)
                track += 1
                start += length + 3
            for j in range(2):
                add(i, cam, start + 5 + j, -1, protos[i], noise)
    if twins:  # two look-alikes side by side in camera 0: the same 8 frames
        twin = people @ rng.normal(size=dim - 8)
        twin = 0.5 * mu + twin / np.linalg.norm(twin)
        for identity in (TWIN_A, TWIN_B):
            for f in range(100, 108):
                add(identity, 0, f, track, twin, 0.02)
            track += 1
    if lone:  # a track far from everyone, seen once
        for f in range(200, 200 + lone):
            add(LONE, 1, f, track, far[:, 0], 0.05)
        track += 1
    for j in range(outliers):
        add(OUTLIER, 0, 500 + j, -1, far[:, 1:] @ rng.normal(size=7), 0.0)
    f, t, k, i, c = (np.array(v) for v in zip(*rows))
    f = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)
    return Planted(f, t.astype(np.int64), k.astype(np.int64), i, c)


def adjusted_rand(a, b) -> float:
    """The adjusted Rand index of two labellings [N] (1: the same partition)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = rows * cols / comb(len(a), 2)
    return float((pairs - expected) / ((rows + cols) / 2 - expected))


def purity(truth, labels) -> float:
    """The fraction of labelled detections in their identity's majority truth."""
    keep = labels >= 0
    t, lab = truth[keep] - truth[keep].min(), labels[keep]
    return sum(np.bincount(t[lab == c]).max() for c in np.unique(lab)) / len(lab)


def frame_conflicts(labels, frame_keys) -> int:
    """The (identity, frame) pairs that hold more than one detection."""
    keep = labels >= 0
    _, counts = np.unique(np.stack([labels[keep], frame_keys[keep]], 1), axis=0, return_counts=True)
    return int((counts > 1).sum())


def reference_jaccard(x, k1, k2, mutual=True) -> np.ndarray:
    """The dense k-reciprocal Jaccard distance [N, N], straight from the paper's definitions
    (sets and loops; small N only)."""
    x = np.asarray(x, np.float64)
    n = len(x)
    s = x @ x.T
    ranked = [
        [p] + sorted((g for g in range(n) if g != p), key=lambda g: (-s[p, g], g)) for p in range(n)
    ]

    def near(p, k):
        return set(ranked[p][: k + 1])

    def reciprocal(p, k):
        return {g for g in near(p, k) if p in near(g, k)}

    half = int(np.floor(k1 / 2 + 0.5))
    v = np.zeros((n, n))
    for p in range(n):
        r = reciprocal(p, k1)
        star = set(r)
        for q in r:
            rq = reciprocal(q, half)
            if 3 * len(r & rq) >= 2 * len(rq):
                star |= rq
        for g in star:
            v[p, g] = 1.0 if g == p else np.exp(-max(0.0, 2 - 2 * s[p, g]))
        v[p] /= v[p].sum()
    expanded = np.stack(
        [
            v[[g for g in ranked[p][:k2] if not mutual or g in reciprocal(p, k1)]].mean(0)
            for p in range(n)
        ]
    )
    d = np.zeros((n, n))
    for p in range(n):
        for g in range(n):
            both = np.stack([expanded[p], expanded[g]])
            d[p, g] = 1 - both.min(0).sum() / both.max(0).sum()
    return d


class TestJaccard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(3)
        protos = rng.normal(size=(6, 16))
        x = np.repeat(protos, 9, axis=0) + 0.45 * rng.normal(size=(54, 16))
        cls.x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        cls.truth = np.repeat(np.arange(6), 9)

    def test_matches_the_definitions(self):
        for k1, k2, expansion in (
            (20, 6, "mutual"),
            (20, 6, "knn"),
            (8, 3, "mutual"),
            (7, 4, "knn"),  # odd: k1 / 2 rounds half up
            (12, 1, "knn"),
        ):
            with self.subTest(k1=k1, k2=k2, expansion=expansion):
                jaccard = k_reciprocal_jaccard(self.x, k1=k1, k2=k2, expansion=expansion)
                ours, ref = jaccard.dense(), reference_jaccard(
                    self.x, k1, k2, expansion == "mutual"
                )
                stored = jaccard.similarity.toarray() > 0
                np.testing.assert_allclose(ours[stored], ref[stored], atol=1e-6)
                # the sparse form leaves out only far pairs (taken at 1): none DBSCAN would link
                self.assertGreater(ref[~stored].min(initial=1.0), 0.6)
                if k1 == 8:  # sparse: about N k pairs, not N^2
                    self.assertLess(stored.mean(), 0.5)

    def test_properties(self):
        d = k_reciprocal_jaccard(self.x).dense()
        np.testing.assert_array_equal(np.diag(d), 0.0)
        np.testing.assert_array_equal(d, d.T)
        self.assertTrue(((d >= 0) & (d <= 1)).all())
        self.assertGreater((d == 1).sum(), 0)  # not degenerate: far pairs and near pairs
        self.assertGreater((d < 0.5).sum(), len(d))
        indices, _ = nearest_neighbours(self.x, 20)
        members = [set(row) for row in indices]
        for p in range(len(d)):
            mutual = [g for g in members[p] if g != p and p in members[g]]
            others = [g for g in range(len(d)) if g not in mutual and g != p]
            self.assertTrue(mutual, p)
            self.assertLess(d[p, mutual].mean(), d[p, others].mean(), p)
        same = self.truth[:, None] == self.truth[None]
        np.fill_diagonal(same, False)
        self.assertLess(np.median(d[same]), np.median(d[~same & ~np.eye(len(d), dtype=bool)]))

    def test_nearest_neighbours_start_with_the_row(self):
        x = np.repeat(np.eye(3, 4, dtype=np.float32), 2, axis=0)  # duplicates: ties by index
        indices, sims = nearest_neighbours(x, 2)
        np.testing.assert_array_equal(indices[:, 0], np.arange(6))
        np.testing.assert_array_equal(indices[1], [1, 0, 2])
        np.testing.assert_allclose(sims[:, :2], 1.0)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, r"k1 .* got 0"):
            k_reciprocal_jaccard(self.x, k1=0)
        with self.assertRaisesRegex(ValueError, r"k2 must be at most k1 \+ 1 = 5 .*got 9"):
            k_reciprocal_jaccard(self.x, k1=4, k2=9)
        with self.assertRaisesRegex(ValueError, r"expansion .* got 'mean'"):
            k_reciprocal_jaccard(self.x, expansion="mean")
        with self.assertRaisesRegex(ValueError, r"row 0 has norm 2"):
            k_reciprocal_jaccard(2 * self.x)


def graph(n, pairs) -> JaccardDistances:
    """Hand-made distances over n points: {(i, j): similarity} (1 - distance), symmetric."""
    rows, cols, vals = [], [], []
    for (i, j), s in pairs.items():
        rows += [i, j]
        cols += [j, i]
        vals += [s, s]
    rows += list(range(n))
    cols += list(range(n))
    vals += [1.0] * n
    return JaccardDistances(sparse.csr_matrix((vals, (rows, cols)), shape=(n, n)))


class TestDBSCAN(unittest.TestCase):
    # 0-1-2-3 a chain (similarity 0.8), 5 hangs on 3 (0.5), 4 alone
    CHAIN = graph(6, {(0, 1): 0.8, (1, 2): 0.8, (2, 3): 0.8, (3, 5): 0.5})

    def test_core_border_noise(self):
        # eps 0.55: cores 1, 2, 3 (3 points within reach); 0 and 5 border; 4 noise
        np.testing.assert_array_equal(dbscan(self.CHAIN, 0.55, 3), [0, 0, 0, 0, -1, 0])
        # eps 0.3: 5 out of reach of 3, 3 no longer core but a border of 2
        np.testing.assert_array_equal(dbscan(self.CHAIN, 0.3, 3), [0, 0, 0, 0, -1, -1])
        np.testing.assert_array_equal(dbscan(self.CHAIN, 0.3, 4), [-1] * 6)

    def test_weights_count(self):
        labels = dbscan(self.CHAIN, 0.3, 3, weights=[1, 1, 1, 1, 5, 1])
        np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, -1])  # 4 weighs 5: a core alone

    def test_border_joins_the_nearest_core(self):
        # {0, 1, 2} and {4, 5, 6} two clusters (cores 2 and 4); 3 a border of both, nearer to 4
        # (a tie goes to the lower core index)
        cliques = {(0, 1): 0.9, (0, 2): 0.9, (1, 2): 0.9, (4, 5): 0.9, (4, 6): 0.9, (5, 6): 0.9}
        nearer = graph(7, {**cliques, (2, 3): 0.5, (3, 4): 0.6})
        np.testing.assert_array_equal(dbscan(nearer, 0.55, 4), [0, 0, 0, 1, 1, 1, 1])
        tie = graph(7, {**cliques, (2, 3): 0.6, (3, 4): 0.6})
        np.testing.assert_array_equal(dbscan(tie, 0.55, 4), [0, 0, 0, 0, 1, 1, 1])

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, r"eps .* got 1\.2"):
            dbscan(self.CHAIN, 1.2, 3)
        with self.assertRaisesRegex(ValueError, r"min_samples .* got 0"):
            dbscan(self.CHAIN, 0.5, 0)
        with self.assertRaisesRegex(ValueError, r"weights must be \[6\]"):
            dbscan(self.CHAIN, 0.5, 3, weights=[1, 2])

    def test_relabel_by_first_row(self):
        np.testing.assert_array_equal(
            relabel_by_first_row([7, -1, 3, 7, 3, 9]), [0, -1, 1, 0, 1, 2]
        )


class TestPseudoIdentities(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = planted(0, twins=True, lone=3)
        cls.runs = {
            mode: assign_pseudo_identities(
                cls.data.features, cls.data.track_ids, cls.data.frame_keys, mode=mode
            )
            for mode in ("tracks", "clusters", "both")
        }

    def test_tracks_mode_one_identity_per_track(self):
        d, r = self.data, self.runs["tracks"]
        tracked = d.track_ids >= 0
        np.testing.assert_array_equal(r.labels[~tracked], -1)
        for t in np.unique(d.track_ids[tracked]):
            self.assertEqual(len(np.unique(r.labels[d.track_ids == t])), 1, t)
        self.assertEqual(adjusted_rand(d.track_ids[tracked], r.labels[tracked]), 1.0)
        self.assertEqual(r.num_identities, len(np.unique(d.track_ids[tracked])))
        self.assertEqual(r.num_outliers, int((~tracked).sum()))
        self.assertEqual(r.cannot_link_splits, 0)
        # min_track_len: shorter tracks are outliers
        short = assign_pseudo_identities(
            d.features, d.track_ids, d.frame_keys, mode="tracks", min_track_len=8
        )
        lengths = np.bincount(d.track_ids[tracked])
        self.assertEqual(short.num_identities, int((lengths >= 8).sum()))
        self.assertTrue((short.labels[np.isin(d.track_ids, np.flatnonzero(lengths < 8))] < 0).all())

    def test_clusters_mode_is_pure(self):
        d, r = self.data, self.runs["clusters"]
        people = d.identity < TWIN_A  # twins are split arbitrarily (look-alikes)
        self.assertGreater(purity(d.identity[people], r.labels[people]), 0.95)
        self.assertGreater(r.num_identities, 12)  # per camera: no track to merge across them
        self.assertEqual(frame_conflicts(r.labels, d.frame_keys), 0)

    def test_both_mode_recovers_identities_across_cameras(self):
        d, r = self.data, self.runs["both"]
        people = (d.identity >= 0) & (d.identity < TWIN_A)
        self.assertGreater(adjusted_rand(d.identity[people], r.labels[people]), 0.9)
        self.assertGreater(purity(d.identity[people], r.labels[people]), 0.95)
        merged = 0
        for i in range(12):
            tracked = people & (d.identity == i) & (d.track_ids >= 0)
            labels = np.unique(r.labels[tracked])
            if len(labels) == 1 and labels[0] >= 0:
                merged += 1
                self.assertGreater(len(np.unique(d.camera[tracked])), 1, i)
        self.assertGreaterEqual(merged, 11)
        self.assertEqual(frame_conflicts(r.labels, d.frame_keys), 0)

    def test_more_seeds(self):
        for seed in (1, 2, 3):
            d = planted(seed)
            r = assign_pseudo_identities(d.features, d.track_ids, d.frame_keys, mode="both")
            people = d.identity >= 0
            with self.subTest(seed=seed):
                self.assertGreater(purity(d.identity[people], r.labels[people]), 0.9)
                self.assertEqual(frame_conflicts(r.labels, d.frame_keys), 0)
                np.testing.assert_array_equal(r.labels[~people], -1)

    def test_cannot_link_splits_look_alikes(self):
        d = self.data
        twins = np.isin(d.identity, [TWIN_A, TWIN_B])
        for mode in ("clusters", "both"):
            with self.subTest(mode=mode):
                r = self.runs[mode]
                self.assertGreaterEqual(r.cannot_link_splits, 1)
                self.assertEqual(frame_conflicts(r.labels, d.frame_keys), 0)
                self.assertEqual(len(np.unique(r.labels[twins])), 2)
                self.assertTrue((r.labels[twins] >= 0).all())
        both = self.runs["both"].labels
        self.assertNotEqual(both[d.identity == TWIN_A][0], both[d.identity == TWIN_B][0])
        for identity in (TWIN_A, TWIN_B):  # a track stays whole
            self.assertEqual(len(np.unique(both[d.identity == identity])), 1)

    def test_cannot_link_check_can_fail(self):
        # without the frame rule the look-alikes are one cluster: the split is what separates them
        d = self.data
        same_frames = d.frame_keys.copy()
        twins = np.isin(d.identity, [TWIN_A, TWIN_B])
        same_frames[d.identity == TWIN_B] += 50  # B's frames moved: no conflict left
        r = assign_pseudo_identities(d.features, d.track_ids, same_frames, mode="both")
        self.assertEqual(len(np.unique(r.labels[twins])), 1)
        self.assertLess(r.cannot_link_splits, self.runs["both"].cannot_link_splits)

    def test_split_follows_resemblance(self):
        # look-alikes A and B (one cluster): a1 and b1 share frames; b2 (in another camera) is
        # placed before b1 opens B's sub-identity, yet ends with b1, which it resembles
        rng = np.random.default_rng(0)
        a = rng.normal(size=16)
        b = a + 0.4 * rng.normal(size=16)
        lengths = {"a1": 12, "b2": 11, "b1": 10, "a2": 8}
        starts = {"a1": 0, "b1": 0, "a2": 10000, "b2": 20000}
        rows = []
        for t, name in enumerate(lengths):
            proto = a if name[0] == "a" else b
            for f in range(lengths[name]):
                v = proto / np.linalg.norm(proto) + 0.01 * rng.normal(size=16)
                rows.append((v / np.linalg.norm(v), t, starts[name] + f))
        x, tracks, frames = (np.array(v) for v in zip(*rows))
        r = assign_pseudo_identities(x.astype(np.float32), tracks, frames, mode="both")
        per_track = [np.unique(r.labels[tracks == t]) for t in range(4)]
        self.assertTrue(all(len(u) == 1 for u in per_track))
        a1, b2, b1, a2 = (int(u[0]) for u in per_track)
        self.assertEqual((r.num_identities, r.cannot_link_splits), (2, 1))
        self.assertEqual((a1, b1), (a2, b2))
        self.assertNotEqual(a1, b1)

    def test_outliers(self):
        d = self.data
        outliers = d.identity == OUTLIER
        lone = d.identity == LONE
        for mode in ("clusters", "both"):
            with self.subTest(mode=mode):
                r = self.runs[mode]
                np.testing.assert_array_equal(r.labels[outliers], -1)
                self.assertEqual(r.num_outliers, int((r.labels < 0).sum()))
                self.assertGreaterEqual(r.num_outliers, int(outliers.sum()))
        np.testing.assert_array_equal(self.runs["clusters"].labels[lone], -1)  # 3 < min_samples
        # both: the lone track is DBSCAN noise, kept as an identity of its own
        kept = self.runs["both"]
        self.assertEqual(kept.noise_tracks_kept, 1)
        own = np.unique(kept.labels[lone])
        self.assertEqual(len(own), 1)
        self.assertGreaterEqual(own[0], 0)
        self.assertEqual(int((kept.labels == own[0]).sum()), 3)
        dropped = assign_pseudo_identities(
            d.features, d.track_ids, d.frame_keys, mode="both", keep_noise_tracks=False
        )
        np.testing.assert_array_equal(dropped.labels[lone], -1)
        self.assertEqual(dropped.noise_tracks_kept, 0)
        self.assertEqual(dropped.num_outliers, kept.num_outliers + 3)
        self.assertEqual(dropped.num_identities, kept.num_identities - 1)

    def test_labels_contiguous_and_counted(self):
        for mode, r in self.runs.items():
            with self.subTest(mode=mode):
                self.assertEqual(r.labels.dtype, np.int64)
                found = np.unique(r.labels[r.labels >= 0])
                np.testing.assert_array_equal(found, np.arange(r.num_identities))
                self.assertEqual(sum(r.cluster_sizes), int((r.labels >= 0).sum()))
                self.assertEqual(r.cluster_sizes, sorted(r.cluster_sizes, reverse=True))
                summary = json.loads(json.dumps(r.summary()))
                self.assertEqual(summary["num_identities"], r.num_identities)
                self.assertEqual(summary["settings"]["min_samples_unit"], "detections")
                self.assertEqual(sum(summary["identity_size_histogram"].values()), r.num_identities)

    def test_deterministic_and_row_order_free(self):
        d = self.data
        perm = np.random.default_rng(1).permutation(len(d.features))
        inverse = np.argsort(perm)
        for mode in ("clusters", "both"):
            with self.subTest(mode=mode):
                again = assign_pseudo_identities(d.features, d.track_ids, d.frame_keys, mode=mode)
                np.testing.assert_array_equal(again.labels, self.runs[mode].labels)
                shuffled = assign_pseudo_identities(
                    d.features[perm], d.track_ids[perm], d.frame_keys[perm], mode=mode
                )
                np.testing.assert_array_equal(
                    relabel_by_first_row(shuffled.labels[inverse]), self.runs[mode].labels
                )
                self.assertEqual(shuffled.summary(), self.runs[mode].summary())


class TestErrors(unittest.TestCase):
    X = np.eye(6, 8, dtype=np.float32)
    TRACKS = np.array([0, 0, 0, 1, 1, -1])
    FRAMES = np.arange(6)

    def check(self, pattern, **overrides):
        args = dict(features=self.X, track_ids=self.TRACKS, frame_keys=self.FRAMES)
        args.update(overrides)
        with self.assertRaisesRegex(ValueError, pattern):
            assign_pseudo_identities(**args)

    def test_messages_name_the_value(self):
        bad = self.X.copy()
        bad[2, 1] = np.nan
        self.check(r"shape \(8,\)", features=self.X[0])
        self.check(r"track_ids has shape \(5,\), expected \(6,\)", track_ids=self.TRACKS[:5])
        self.check(r"frame_keys has shape \(7,\), expected \(6,\)", frame_keys=np.arange(7))
        self.check(r"frame_keys must be integers, got dtype float64", frame_keys=self.FRAMES * 1.0)
        self.check(r"finite: row 2 holds nan", features=bad)
        self.check(r"row 0 has norm 3", features=3 * self.X)
        self.check(r"mode must be one of 'tracks', 'clusters', 'both', got 'all'", mode="all")
        self.check(r"eps .* got 1\.5", eps=1.5)
        self.check(r"min_samples .* got 0", min_samples=0)
        self.check(r"k2 must be at most k1 \+ 1 = 4, got 5", k1=3, k2=5)
        self.check(r"min_track_len .* got 0", min_track_len=0)
        self.check(r"keep_noise_tracks .* got 'yes'", keep_noise_tracks="yes")
        self.check(r"expansion must be one of .* got 'all'", expansion="all")
        self.check(r"track_ids must be >= -1 .* got -3 at row 1", track_ids=[0, -3, 0, 1, 1, -1])

    def test_too_few_to_cluster(self):
        for mode in ("clusters", "both"):
            self.check(
                r"6 detections are too few .* min_samples=7: need at least 7",
                mode=mode,
                min_samples=7,
            )

    def test_tracks_mode_needs_tracks(self):
        message = r"min_track_len=2 .* 0 tracks.*" + TRACKS_HINT
        self.check(message, mode="tracks", track_ids=np.full(6, -1))
        self.check(r"min_track_len=4 .* 2 tracks", mode="tracks", min_track_len=4)

    def test_a_track_is_one_person(self):
        frames = np.array([0, 1, 1, 2, 3, 4])
        self.check(r"track 0 holds 2 detections of frame 1 \(rows 1, 2\)", frame_keys=frames)
        # ignored in clusters mode (no track information)
        r = assign_pseudo_identities(self.X, self.TRACKS, frames, mode="clusters", min_samples=1)
        self.assertEqual(frame_conflicts(r.labels, frames), 0)


if __name__ == "__main__":
    unittest.main()


class TestTracklets(unittest.TestCase):
    def test_tracks_cut_in_time_order(self):
        track_ids = np.array([5, 5, 5, -1, 5, 7, 7, 5])
        frames = np.array([0, 1, 2, 3, 3, 9, 8, 4])  # rows of a track need not be in time order
        pieces = tracklets(track_ids, frames, 2)
        # track 5 in time order: rows 0, 1 | 2, 4 | 7; track 7: rows 6, 5
        self.assertEqual(pieces.tolist(), [0, 0, 1, -1, 1, 3, 3, 2])
        self.assertEqual(tracklets(track_ids, frames, 0).tolist(), track_ids.tolist())
        self.assertEqual(tracklets(track_ids, frames, 10).tolist(), [0, 0, 0, -1, 0, 1, 1, 0])

    def test_purer_must_links_feed_the_modes(self):
        # one track that switches from person A to person B half way: whole, it is one identity;
        # cut into tracklets of 3, A and B are two
        rng = np.random.default_rng(0)
        a, b = rng.normal(size=(2, 16))
        x = np.stack([a] * 3 + [b] * 3) + 0.01 * rng.normal(size=(6, 16))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        tracks, frames = np.zeros(6, int), np.arange(6)
        whole = assign_pseudo_identities(x, tracks, frames, mode="tracks")
        cut = assign_pseudo_identities(x, tracklets(tracks, frames, 3), frames, mode="tracks")
        self.assertEqual(whole.num_identities, 1)
        self.assertEqual(cut.labels.tolist(), [0, 0, 0, 1, 1, 1])

    def test_bad_length(self):
        with self.assertRaisesRegex(ValueError, "tracklet length must be >= 0"):
            tracklets([0, 0], [0, 1], -1)
