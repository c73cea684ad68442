"""pytest set-up: the helper modules of tests/ (repo_scripts, synthetic_testing, ...) are
importable from the tests in its sub-folders too."""

import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
