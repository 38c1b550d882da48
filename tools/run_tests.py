"""
Runs the test suite twice: with the compiled codec, then with the pure-Python one.

Usage: ``python tools/run_tests.py [pytest arguments]``. The first run also proves that the
compiled codec really is the one in use (``NCPLIB_EXPECT_COMPILED=1``); the second forces the
pure-Python codec (``NCPLIB_PUREPYTHON=1``). Exits non-zero if either run fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

RUNS = (
    ("compiled codec", {"NCPLIB_EXPECT_COMPILED": "1", "NCPLIB_PUREPYTHON": ""}),
    ("pure-Python codec", {"NCPLIB_PUREPYTHON": "1", "NCPLIB_EXPECT_COMPILED": ""}),
)


def main(argv: list[str]) -> int:
    failed = []
    for label, env in RUNS:
        print(f"=== tests with the {label} ===", flush=True)
        code = subprocess.call([sys.executable, "-m", "pytest", *argv], env={**os.environ, **env})
        if code != 0:
            failed.append(f"{label} (exit {code})")
    if failed:
        print("FAILED: " + ", ".join(failed), flush=True)
        return 1
    print("both codecs passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
