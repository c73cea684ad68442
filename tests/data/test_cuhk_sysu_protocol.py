"""The protocol parser on the REAL CUHK-SYSU TestG100.mat (../shared/fixtures)."""

import os
import tempfile
import unittest

import numpy as np
import pytest
import scipy.io

from ian_d2.data.datasets._common import DatasetFormatError, xywh_to_xyxy
from ian_d2.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures")
TESTG100 = os.path.join(FIXTURES, "cuhk_sysu", "TestG100.mat")


@unittest.skipUnless(
    os.path.isdir(FIXTURES),
    f"the shared fixtures folder {FIXTURES} is absent (only the project's own CI has it)",
)
class TestRealTestG100(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proto = load_cuhk_sysu_protocol(TESTG100)

    def test_shape(self):
        p = self.proto
        self.assertEqual(p.gallery_size, 100)
        self.assertEqual(p.num_queries, 2900)
        self.assertEqual(p.gallery_imnames.shape, (2900, 100))
        self.assertEqual(p.gallery_boxes.shape, (2900, 100, 4))
        self.assertEqual(p.query_boxes.dtype, np.float64)
        self.assertEqual(len(set(p.query_pids)), 2900)
        self.assertTrue(all(n.startswith("s") and n.endswith(".jpg") for n in p.query_imnames))

    @pytest.mark.slow  # parses the real file again, then reads the cache
    def test_cached_copy_equals_the_parse(self):
        # the compact form read back from the on-disk cache is the same protocol
        from unittest import mock

        from ian_d2.data.datasets.cuhk_sysu import protocol as cuhk_sysu

        with (
            tempfile.TemporaryDirectory() as tmp,
            mock.patch.dict(os.environ, {"IAN_D2_CACHE": tmp}),
        ):
            fresh = cuhk_sysu._parse_protocol_file(TESTG100, ("TestG100",), 100)
            cuhk_sysu._load_protocol_cached.cache_clear()
            first = load_cuhk_sysu_protocol(TESTG100)  # parses and writes the cache
            cuhk_sysu._load_protocol_cached.cache_clear()
            with mock.patch.object(cuhk_sysu, "_parse_protocol_file", side_effect=AssertionError):
                second = load_cuhk_sysu_protocol(TESTG100)  # from the cache only
            cuhk_sysu._load_protocol_cached.cache_clear()
        for p in (first, second):
            self.assertEqual(p.query_imnames, fresh.query_imnames)
            np.testing.assert_array_equal(p.gallery_imnames, fresh.gallery_imnames)
            np.testing.assert_array_equal(p.gallery_boxes, fresh.gallery_boxes)
            np.testing.assert_array_equal(p.query_boxes, fresh.query_boxes)

    def test_first_query_matches_raw_file(self):
        raw = scipy.io.loadmat(TESTG100)["TestG100"][0, 0]
        q = raw["Query"][0, 0]
        x, y, w, h = q["idlocate"][0].astype(float)
        self.assertEqual(self.proto.query_imnames[0], str(q["imname"][0]))
        np.testing.assert_array_equal(self.proto.query_boxes[0], [x, y, x + w, y + h])

    def test_boxes_valid_no_overflow(self):
        p = self.proto
        pos = p.positives
        boxes = np.concatenate([p.query_boxes, p.gallery_boxes[pos]])
        self.assertTrue(np.all(boxes[:, 2] > boxes[:, 0]))
        self.assertTrue(np.all(boxes[:, 3] > boxes[:, 1]))
        self.assertLess(boxes.max(), 65535)

    def test_positives_first_and_every_query_has_one(self):
        pos = self.proto.positives
        counts = pos.sum(1)
        self.assertGreaterEqual(counts.min(), 1)
        # entries that contain the person come first
        self.assertTrue(np.all(pos == (np.arange(100)[None] < counts[:, None])))

    def test_known_quirks_surfaced(self):
        self.assertEqual(sorted(self.proto.duplicate_gallery_entries()), [1250, 1633, 1997, 2561])
        own = self.proto.queries_in_own_gallery()
        self.assertEqual(len(own), 2)
        self.assertEqual(sorted(own.values()), [False, True])

    def test_subset_restricts_queries(self):
        sub = self.proto.subset([5, 1])
        self.assertEqual(
            sub.query_imnames, [self.proto.query_imnames[5], self.proto.query_imnames[1]]
        )
        np.testing.assert_array_equal(sub.gallery_boxes[1], self.proto.gallery_boxes[1])


class TestBoxConversion(unittest.TestCase):
    def test_uint16_cast_before_add(self):
        box = np.array([[65000, 65500, 1000, 100]], dtype=np.uint16)
        np.testing.assert_array_equal(xywh_to_xyxy(box), [[65000, 65500, 66000, 65600]])
        self.assertEqual(xywh_to_xyxy(box).dtype, np.float64)


class TestProtocolErrors(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)

    def _write(self, name, **vars_):
        path = os.path.join(self._tmp.name, name)
        scipy.io.savemat(path, vars_)
        return path

    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "TestG50.mat"):
            load_cuhk_sysu_protocol(os.path.join(self._tmp.name, "TestG50.mat"))

    def test_wrong_variable_named(self):
        path = self._write("TestG50.mat", TestG100=np.zeros(3))
        with self.assertRaisesRegex(DatasetFormatError, r"TestG50.mat.*'TestG50'.*TestG100"):
            load_cuhk_sysu_protocol(path)

    def test_wrong_fields_named(self):
        path = self._write("TestG50.mat", TestG50={"Query": np.zeros(1)})
        with self.assertRaisesRegex(DatasetFormatError, "fields 'Query' and 'Gallery'"):
            load_cuhk_sysu_protocol(path)

    def test_gallery_length_checked(self):
        dt = [("Query", "O"), ("Gallery", "O")]
        qdt = [("imname", "O"), ("idlocate", "O"), ("ishard", "O"), ("idname", "O")]
        gdt = [("imname", "O"), ("idlocate", "O"), ("ishard", "O")]
        q = np.zeros((1, 1), dtype=qdt)
        q[0, 0] = ("s1.jpg", np.array([[1, 2, 3, 4]], np.uint16), np.uint8(0), "p1")
        g = np.zeros((1, 2), dtype=gdt)
        g[0, 0] = ("s2.jpg", np.array([[1, 2, 3, 4]], np.uint16), np.uint8(0))
        g[0, 1] = ("s3.jpg", np.zeros((1, 0)), np.zeros((1, 0)))
        arr = np.zeros((1, 1), dtype=dt)
        arr[0, 0] = (q, g)
        path = self._write("TestG5.mat", TestG5=arr)
        with self.assertRaisesRegex(DatasetFormatError, "expected 5 gallery entries.*found 2"):
            load_cuhk_sysu_protocol(path)
        ok = self._write("TestG2.mat", TestG2=arr)
        p = load_cuhk_sysu_protocol(ok)
        np.testing.assert_array_equal(p.gallery_boxes[0, 0], [1, 2, 4, 6])
        self.assertTrue(np.isnan(p.gallery_boxes[0, 1]).all())
        self.assertEqual(p.count_gt().tolist(), [1])


if __name__ == "__main__":
    unittest.main()
