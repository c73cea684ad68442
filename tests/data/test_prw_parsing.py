"""PRW file parsers on small hand-written files."""

import os
import tempfile
import unittest

import numpy as np
import scipy.io

from ian_d2.data.datasets._common import DatasetFormatError
from ian_d2.data.datasets.prw import (
    load_prw_frame_boxes,
    parse_prw_query_info,
    prw_camera_id,
)


class TestQueryInfo(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        self.path = os.path.join(self._tmp.name, "query_info.txt")

    def _write(self, text):
        with open(self.path, "w", newline="") as f:
            f.write(text)

    def test_crlf_floats_negatives(self):
        self._write(
            "479 1123.5 235.25 73 211 c1s1_000151\r\n"
            "12 -3.5 -0.75 50 100.5 c6s2_004280\r\n"
            "\r\n"
            "932 10 20 30 40 c2s1_000001.jpg\r\n"
        )
        q = parse_prw_query_info(self.path)
        self.assertEqual([p for p, _, _ in q], [479, 12, 932])
        self.assertEqual([f for _, _, f in q], ["c1s1_000151", "c6s2_004280", "c2s1_000001"])
        np.testing.assert_allclose(q[0][1], [1123.5, 235.25, 1196.5, 446.25])
        # negative coordinates clipped to 0; far corner unchanged
        np.testing.assert_allclose(q[1][1], [0.0, 0.0, 46.5, 99.75])

    def test_wrong_field_count_names_line(self):
        self._write("1 2 3 4 5 c1s1_000001\r\n1 2 3 4 c1s1_000002\r\n")
        with self.assertRaisesRegex(DatasetFormatError, r"query_info.txt' line 2: expected 6"):
            parse_prw_query_info(self.path)

    def test_non_numeric_names_line(self):
        self._write("1 2 x 4 5 c1s1_000001\n")
        with self.assertRaisesRegex(DatasetFormatError, "line 1"):
            parse_prw_query_info(self.path)

    def test_bad_pid_and_empty(self):
        self._write("-2 2 3 4 5 c1s1_000001\n")
        with self.assertRaisesRegex(DatasetFormatError, "positive integer"):
            parse_prw_query_info(self.path)
        self._write("\r\n")
        with self.assertRaisesRegex(DatasetFormatError, "no query"):
            parse_prw_query_info(self.path)

    def test_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "query_info.txt.*DETECTRON2_DATASETS"):
            parse_prw_query_info(self.path)


class TestFrameAnnotations(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        os.makedirs(os.path.join(self._tmp.name, "annotations"))

    def _write(self, frame, **vars_):
        scipy.io.savemat(os.path.join(self._tmp.name, "annotations", frame + ".jpg.mat"), vars_)

    def test_three_variable_names(self):
        arr = np.array([[5, 1.5, 2, 10, 20], [-2, -4, 3, 10, 10]], dtype=np.float64)
        for i, var in enumerate(["box_new", "anno_file", "anno_previous"]):
            frame = f"c{i + 1}s1_00000{i}"
            self._write(frame, **{var: arr})
            ids, boxes = load_prw_frame_boxes(self._tmp.name, frame)
            self.assertEqual(ids.tolist(), [5, -2])
            np.testing.assert_allclose(boxes, [[1.5, 2, 11.5, 22], [-4, 3, 6, 13]])

    def test_box_new_preferred(self):
        self._write(
            "c1s1_000001",
            anno_file=np.array([[1.0, 0, 0, 5, 5]]),
            box_new=np.array([[2.0, 0, 0, 5, 5]]),
        )
        ids, _ = load_prw_frame_boxes(self._tmp.name, "c1s1_000001")
        self.assertEqual(ids.tolist(), [2])

    def test_errors_name_file(self):
        self._write("c1s1_000001", boxes=np.zeros((1, 5)))
        with self.assertRaisesRegex(DatasetFormatError, r"c1s1_000001.jpg.mat.*'box_new'"):
            load_prw_frame_boxes(self._tmp.name, "c1s1_000001")
        self._write("c1s1_000002", box_new=np.zeros((2, 4)))
        with self.assertRaisesRegex(DatasetFormatError, r"c1s1_000002.jpg.mat.*N x 5"):
            load_prw_frame_boxes(self._tmp.name, "c1s1_000002")
        self._write("c1s1_000003", box_new=np.array([[1.0, 0, 0, -5, 5]]))
        with self.assertRaisesRegex(DatasetFormatError, r"malformed box.*c1s1_000003.jpg"):
            load_prw_frame_boxes(self._tmp.name, "c1s1_000003")
        self._write("c1s1_000004", box_new=np.array([[-7.0, 0, 0, 5, 5]]))
        with self.assertRaisesRegex(DatasetFormatError, "person id -7"):
            load_prw_frame_boxes(self._tmp.name, "c1s1_000004")
        with self.assertRaisesRegex(FileNotFoundError, "c1s1_000009.jpg.mat"):
            load_prw_frame_boxes(self._tmp.name, "c1s1_000009")

    def test_camera_id(self):
        self.assertEqual(prw_camera_id("c6s2_004280.jpg"), 6)
        with self.assertRaisesRegex(DatasetFormatError, "frame name 'x1.jpg'"):
            prw_camera_id("x1.jpg")


if __name__ == "__main__":
    unittest.main()
