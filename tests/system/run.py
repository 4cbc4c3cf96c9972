#!/usr/bin/env python3
"""Runs every tests/system/test_*.py and ends with one line: 'system: N passed, N failed'."""
import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
pattern = sys.argv[1] if len(sys.argv) > 1 else "test_*.py"
suite = unittest.defaultTestLoader.discover(here, pattern=pattern)
result = unittest.TextTestRunner(verbosity=2).run(suite)
failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
skipped = len(result.skipped)
# What could not run, and why, said last: a skip must never pass for a test that ran.
for test, reason in result.skipped:
    print("skipped: %s: %s" % (test.id(), reason))
passed = result.testsRun - failed - skipped
print("system: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)
