"""
Set-up of the codec benchmarks: options, the reference worker, the comparison table and file.

Options (besides pytest-benchmark's own ``--benchmark-*``):

- ``--bench-quick``: a smoke run (short rounds, few of them), for CI; figures are rough.
- ``--bench-json PATH``: where the comparison is written (default
  ``.benchmarks/ncplib-codecs.json``; ``-`` for nowhere).
- ``--bench-no-reference``: leave the reference ncplib out (no ratios then).
- ``--bench-default-malloc``: do not make glibc's malloc keep freed memory (see
  :func:`bench_cases.steady_malloc`) in this process and the reference's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from bench_cases import steady_malloc
from bench_support import (
    REFERENCE_INFO,
    RESULTS,
    STEADY_MALLOC,
    ReferenceWorker,
    comparison,
    size_independence,
    table,
    write_json,
)

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)  # for tools.refenv


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ncplib-bench", "ncplib codec benchmarks")
    group.addoption("--bench-quick", action="store_true", help="smoke run: few short rounds, rough figures")
    group.addoption(
        "--bench-json",
        default=".benchmarks/ncplib-codecs.json",
        metavar="PATH",
        help="write the comparison here, relative to the rootdir ('-' for nowhere)",
    )
    group.addoption("--bench-no-reference", action="store_true", help="do not run the reference ncplib")
    group.addoption(
        "--bench-default-malloc",
        action="store_true",
        help="leave glibc malloc's defaults (figures of large cases then swing between runs)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS] = {}
    config.stash[STEADY_MALLOC] = not config.getoption("bench_default_malloc", False) and steady_malloc()
    if not config.getoption("benchmark_columns", None):
        config.option.benchmark_columns = ["min", "median", "iqr", "rounds", "iterations"]
    if config.getoption("bench_quick", False):
        # Read by pytest-benchmark's own pytest_configure, which runs after this one.
        config.option.benchmark_max_time = "0.02"
        config.option.benchmark_min_rounds = 3


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest) -> Any:
    """The reference worker; skips the test when the reference is unavailable or left out."""
    if request.config.getoption("bench_no_reference"):
        pytest.skip("reference left out (--bench-no-reference)")
    try:
        from tools.refenv import reference_python

        python = reference_python()
    except Exception as ex:
        pytest.skip(f"reference ncplib unavailable: {ex}")
    worker = ReferenceWorker(python, steady_malloc=request.config.stash[STEADY_MALLOC])
    request.config.stash[REFERENCE_INFO] = worker.info
    yield worker
    worker.close()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS, {})
    if not results:
        return
    rows = comparison(results)
    tr = terminalreporter
    tr.write_sep("=", "ncplib codecs vs reference ncplib 6.1.0 (medians; x = reference time / ours)")
    for line in table(rows):
        tr.write_line(line)
    tr.write_line("x: speed-up, reference median / our median (> 1 is faster than the reference).")
    tr.write_line("numpy rows: ours return numpy views; the reference (no such mode) returns arrays.")
    ratios = size_independence(results)
    for codec, ratio in ratios.items():
        tr.write_line(f"numpy-mode decode, 16 MiB / 1 MiB time ({codec}): {ratio:.2f}")
    path = write_json(config, results, rows, ratios)
    if path is not None:
        tr.write_line(f"comparison written to {path}")
