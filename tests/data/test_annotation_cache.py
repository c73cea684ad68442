"""The on-disk cache of parsed annotation files: hits, stale entries, broken entries, off."""

import os
import tempfile
import time
import unittest
from unittest import mock

from ian_d2.data.datasets._common import CACHE_ENV, cache_dir, cached_parse


class TestCachedParse(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        self.cache = os.path.join(self._tmp.name, "cache")
        self.src = os.path.join(self._tmp.name, "data.txt")
        with open(self.src, "w") as f:
            f.write("one")
        env = mock.patch.dict(os.environ, {CACHE_ENV: self.cache})
        env.start()
        self.addCleanup(env.stop)
        self.calls = 0

    def parse(self):
        self.calls += 1
        with open(self.src) as f:
            return {"text": f.read()}

    def entries(self):
        folder = os.path.join(self.cache, "annotations")
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    def test_hit_then_stale_after_a_change(self):
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "one"})
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "one"})
        self.assertEqual(self.calls, 1)  # the second call read the cache
        self.assertEqual(len(self.entries()), 1)
        time.sleep(0.01)
        with open(self.src, "w") as f:
            f.write("two!")  # new size and mtime: the entry is stale
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "two!"})
        self.assertEqual(self.calls, 2)
        self.assertEqual(len(self.entries()), 1)  # rewritten in place
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "two!"})
        self.assertEqual(self.calls, 2)

    def test_same_size_new_mtime_is_stale(self):
        cached_parse("kind", [self.src], self.parse)
        st = os.stat(self.src)
        with open(self.src, "w") as f:
            f.write("owt")  # same size
        os.utime(self.src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "owt"})
        self.assertEqual(self.calls, 2)

    def test_kinds_do_not_collide(self):
        cached_parse("a", [self.src], self.parse)
        cached_parse("b", [self.src], lambda: "other")
        self.assertEqual(cached_parse("a", [self.src], self.parse), {"text": "one"})
        self.assertEqual(len(self.entries()), 2)

    def test_broken_entry_is_rebuilt(self):
        cached_parse("kind", [self.src], self.parse)
        (entry,) = self.entries()
        with open(os.path.join(self.cache, "annotations", entry), "wb") as f:
            f.write(b"truncated")
        with self.assertLogs("ian_d2.data.datasets._common", "WARNING") as logs:
            self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "one"})
        self.assertIn("unreadable", logs.output[0])
        self.assertEqual(self.calls, 2)
        self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "one"})
        self.assertEqual(self.calls, 2)

    def test_off_and_unwritable(self):
        with mock.patch.dict(os.environ, {CACHE_ENV: "off"}):
            self.assertIsNone(cache_dir())
            cached_parse("kind", [self.src], self.parse)
            cached_parse("kind", [self.src], self.parse)
        self.assertEqual(self.calls, 2)
        self.assertEqual(self.entries(), [])
        blocker = os.path.join(self._tmp.name, "a_file")
        open(blocker, "w").close()
        with mock.patch.dict(os.environ, {CACHE_ENV: blocker}):  # not a folder: not writable
            with self.assertLogs("ian_d2.data.datasets._common", "WARNING"):
                self.assertEqual(cached_parse("kind", [self.src], self.parse), {"text": "one"})

    def test_missing_file_is_an_error(self):
        with self.assertRaises(FileNotFoundError):
            cached_parse("kind", [os.path.join(self._tmp.name, "absent.mat")], self.parse)


if __name__ == "__main__":
    unittest.main()
