"""Run the tests and print TAP ("ok N - name" / "not ok N - name"), which
scripts/test.sh counts. Exit status 1 if any test failed."""

import logging
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class TapResult(unittest.TextTestResult):
    n = 0

    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.monotonic()

    def _line(self, ok, test, note=""):
        TapResult.n += 1
        secs = time.monotonic() - self._t0
        print(f"{'ok' if ok else 'not ok'} {TapResult.n} - python: {test.id().split('.', 1)[-1]}"
              f" ({secs:.1f} s){note}", flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(True, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(False, test)
        print("# " + self._exc_info_to_string(err, test).replace("\n", "\n# "), flush=True)

    def addError(self, test, err):
        super().addError(test, err)
        self._line(False, test)
        print("# " + self._exc_info_to_string(err, test).replace("\n", "\n# "), flush=True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(True, test, f" # SKIP {reason}")


if __name__ == "__main__":
    # the logger's warnings about the killed server are expected here;
    # TA_CLIENT_LOG=1 shows them
    if not os.environ.get("TA_CLIENT_LOG"):
        logging.getLogger("tool_audit_client").addHandler(logging.NullHandler())
        logging.getLogger("psycopg").addHandler(logging.NullHandler())
    suite = unittest.defaultTestLoader.discover(os.path.dirname(os.path.abspath(__file__)),
                                                pattern="test_*.py")
    runner = unittest.TextTestRunner(resultclass=TapResult, stream=open(os.devnull, "w"))
    result = runner.run(suite)
    print(f"1..{TapResult.n}")
    # errors in setUpModule/tearDownModule have no test of their own
    sys.exit(0 if result.wasSuccessful() else 1)
