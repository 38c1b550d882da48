"""
Smoke test of the fleet benchmark (bench/fleet): the load generator, the floor and the
``recv`` collector run end to end, briefly, and every connection delivers fields. Figures are
not checked (they come from bench/fleet/run.py runs, not from the test suite).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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
        assert row["cpu_share"] > 0
        assert row["fields_per_read"] is None  # not counted without --count-reads
    assert rows["recv"]["above_floor_us"] is not None
    assert "| recv |" in done.stdout


def _perf_counts_syscalls() -> bool:
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "stat", "-x", ",", "-e", "syscalls:sys_enter_read", "--", "true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0 and "sys_enter_read" in probe.stderr and "not supported" not in probe.stderr


@pytest.mark.skipif(not _perf_counts_syscalls(), reason="perf cannot count system calls here")
def test_reads_are_counted_with_perf(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    done = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "fleet" / "run.py"),
            "--connections", "10", "--shapes", "sweep", "--loops", "asyncio", "--repeat", "1",
            "--duration", "0.5", "--collectors", "floor", "--count-reads", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (config,) = json.loads(out.read_text())["configs"]
    (measured,) = config["rounds"]
    floor = measured["floor"]
    # The floor reads every packet it counts: at least as many reads as fields.
    assert floor["reads"] >= floor["fields"] > 0
    assert 0 < floor["fields_per_read"] <= 1


def _run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet_run", REPO / "bench" / "fleet" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclass looks itself up there)
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _measured(cpu_us: float, share: float) -> dict[str, Any]:
    return {
        "fields_per_s": 1000.0, "cpu_us_per_field": cpu_us, "cpu_share": share, "fewest": 10,
        "most": 11, "peak_rss_kib": 1024, "fields_per_read": None,
    }  # fmt: skip


def test_a_saturated_collector_is_marked() -> None:
    run = _run_module()
    saturated = _measured(20.0, run.SATURATED)
    rounds = [{"floor": _measured(5.0, 0.1), "recv": _measured(8.0, 0.2), "recv:ref": saturated}]
    rows = {row["collector"]: row for row in run.summarise(rounds, ["floor", "recv", "recv:ref"], 1000.0)}
    assert rows["recv:ref"]["cpu_share"] == run.SATURATED
    lines = {line.split("|")[1].strip(): line for line in run.table(list(rows.values())).splitlines()[2:]}
    assert "yes, saturated" in lines["recv:ref"]
    assert "saturated" not in lines["recv"]
    assert "| 0.20 |" in lines["recv"]  # (8 - 5) / (20 - 5)
