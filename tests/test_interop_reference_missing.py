"""
Without the reference ncplib 6.1.0 (no package index to install it from), the interop tests that
need it are skipped with the reason, and fail instead where ``CI`` is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests that start a reference peer: a server, a client, and one that needs none.
NEEDS_SERVER = "tests/test_interop_peers.py::test_handshake_and_hostnames[ours-client-ref-server]"
NEEDS_CLIENT = "tests/test_interop_peers.py::test_handshake_and_hostnames[ref-client-ours-server]"
NEEDS_NONE = "tests/test_interop_peers.py::test_handshake_and_hostnames[ours-client-ours-server]"
# One that compares our API with the reference's (a module fixture introspects it).
NEEDS_API = "tests/test_connection_api.py::test_connect_and_start_server_signatures"


def run_without_reference(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    # A place where no virtual environment can be created (a file stands where its parent should be).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env["NCPLIB_REFERENCE_VENV"] = str(blocker / "reference-6.1.0")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-q",
            NEEDS_SERVER,
            NEEDS_CLIENT,
            NEEDS_NONE,
            NEEDS_API,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.timeout(300)
def test_interop_tests_skip_with_the_reason_without_ci(tmp_path: Path) -> None:
    result = run_without_reference(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 3 skipped" in result.stdout
    assert "ncplib==6.1.0 is not available: could not create" in result.stdout
    assert "from the package index" in result.stdout


@pytest.mark.timeout(300)
def test_interop_tests_fail_without_the_reference_in_ci(tmp_path: Path) -> None:
    result = run_without_reference(tmp_path, "true")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "2 failed, 1 passed, 1 error" in summary  # The API test fails in its fixture.
    assert "skipped" not in summary
    assert "RuntimeError: ncplib==6.1.0 is not available: could not create" in result.stdout
