"""A short run of every fuzz target (fuzz/run.py): none may find a crash in a few seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

RUNNER = Path(__file__).resolve().parent.parent / "fuzz" / "run.py"
if not RUNNER.exists():  # tests copied without the rest of the source tree
    pytest.skip("fuzz/ is not beside the tests", allow_module_level=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_fuzz_target_runs_briefly_without_a_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--target", "all", "--seconds", "5", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for target in ("decode_pure", "framer"):
        line = next(x for x in lines if x.startswith(target))
        assert " ok " in line and "executions=-" not in line, line
    assert not list(tmp_path.glob("crash-*"))
