"""
Smoke test of the fleet benchmark (bench/fleet): the load generator, the floor and the
``recv`` collector run end to end, briefly, and every connection delivers fields. Figures are
not checked (they come from bench/fleet/run.py runs, not from the test suite).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.load, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def test_the_fleet_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    done = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "fleet" / "run.py"),
            "--connections", "20", "--shapes", "sweep", "--loops", "asyncio", "--repeat", "1",
            "--duration", "0.5", "--collectors", "floor,recv", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    (config,) = report["configs"]
    rows = {row["collector"]: row for row in config["rows"]}
    assert set(rows) == {"floor", "recv"}
    for row in rows.values():
        assert row["runs"] == 1
        assert row["fewest"] > 0 and row["fields_per_s"] > 0
        assert row["cpu_us_per_field"] > 0
    assert rows["recv"]["above_floor_us"] is not None
    assert "| recv |" in done.stdout
