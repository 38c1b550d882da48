"""
Helpers of the codec benchmarks: timing options, results, the reference worker and the report.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bench_cases
import pytest

BENCH = Path(__file__).resolve().parent

#: (case, op, mode) -> the lowest speed-up over the reference each codec should reach.
TARGETS: dict[tuple[str, str, str], dict[str, float]] = {
    ("a-command", "decode", "array"): {"compiled": 10.0},
    ("a-command", "encode", "array"): {"compiled": 10.0},
    ("d-stat", "decode", "array"): {"compiled": 10.0},
    ("d-stat", "encode", "array"): {"compiled": 10.0},
    ("c-time-1m", "decode", "numpy"): {"compiled": 200.0},
    ("c-time-16m", "decode", "numpy"): {"compiled": 200.0},
    ("c-time-1m", "decode", "array"): {"compiled": 5.0},
}
#: Every row: the pure-Python codec must not be slower than the reference.
PURE_TARGET = 1.0

RESULTS = pytest.StashKey[dict[tuple[str, str, str, str], dict[str, Any]]]()
STEADY_MALLOC = pytest.StashKey[bool]()
REFERENCE_INFO = pytest.StashKey[dict[str, Any]]()


def benchmark_options(config: pytest.Config) -> dict[str, Any]:
    """The pytest-benchmark options in force, for the reference worker to time the same way."""
    return {
        "min_time": float(config.getoption("benchmark_min_time")),
        "max_time": float(config.getoption("benchmark_max_time")),
        "min_rounds": int(config.getoption("benchmark_min_rounds")),
        "calibration_precision": int(config.getoption("benchmark_calibration_precision")),
        "disable_gc": bool(config.getoption("benchmark_disable_gc")),
        "warmup": bool(config.getoption("benchmark_warmup")),
        "warmup_iterations": int(config.getoption("benchmark_warmup_iterations")),
    }


def record(config: pytest.Config, case: str, op: str, mode: str, codec: str, benchmark: Any) -> None:
    """Keeps one benchmark's statistics for the comparison table."""
    meta = benchmark.stats
    if meta is None:  # --benchmark-disable
        return
    stats = meta.stats
    config.stash[RESULTS][(case, op, mode, codec)] = {
        "median": stats.median,
        "iqr": stats.iqr,
        "min": stats.min,
        "mean": stats.mean,
        "stddev": stats.stddev,
        "rounds": stats.rounds,
        "iterations": meta.iterations,
    }


class ReferenceWorker:
    """The reference ncplib in a process of its own, answering timing requests."""

    def __init__(self, python: Path, steady_malloc: bool) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NCPLIB_"))}
        options = ["--steady-malloc"] if steady_malloc else []
        self._process = subprocess.Popen(
            [str(python), "-E", "-s", str(BENCH / "reference_worker.py"), *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            cwd=str(BENCH),
            env=env,
            text=True,
        )
        self._lock = threading.Lock()
        self.info = self.request({"cmd": "info"})

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends one request, returns the answer; raises RuntimeError if the worker failed."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with self._lock:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"reference worker exited (code {process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"reference worker: {answer.get('error')}")
        return answer

    def close(self) -> None:
        """Ends the worker."""
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _target_for(case: str, op: str, mode: str, codec: str) -> float | None:
    if codec == "pure":
        return PURE_TARGET
    return TARGETS.get((case, op, mode), {}).get(codec)


def comparison(results: dict[tuple[str, str, str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (case, op, mode): medians, speed-ups over the reference and targets met."""
    rows = []
    keys = sorted(
        {(case, op, mode) for case, op, mode, _codec in results},
        key=lambda k: (list(bench_cases.CASES).index(k[0]), k[1], k[2]),
    )
    for case, op, mode in keys:
        # The reference has one mode (array.array values); numpy rows compare against it.
        ref = results.get((case, op, "array", "reference"))
        if not any((case, op, mode, codec) in results for codec in ("pure", "compiled")):
            continue
        row: dict[str, Any] = {"case": case, "op": op, "mode": mode, "reference_median": None}
        if ref is not None:
            row["reference_median"] = ref["median"]
        for codec in ("pure", "compiled"):
            ours = results.get((case, op, mode, codec))
            median = ours["median"] if ours else None
            speedup = ref["median"] / median if (ref and median) else None
            target = _target_for(case, op, mode, codec)
            row[codec] = {
                "median": median,
                "speedup": speedup,
                "target": target,
                "met": None if (speedup is None or target is None) else speedup >= target,
            }
        rows.append(row)
    return rows


def size_independence(results: dict[tuple[str, str, str, str], dict[str, Any]]) -> dict[str, float]:
    out = {}
    for codec in ("pure", "compiled"):
        small = results.get(("c-time-1m", "decode", "numpy", codec))
        large = results.get(("c-time-16m", "decode", "numpy", codec))
        if small and large:
            out[codec] = large["median"] / small["median"]
    return out


def table(rows: list[dict[str, Any]]) -> list[str]:
    header = ("case", "op", "mode", "reference", "pure", "pure x", "compiled", "compiled x", "targets")
    lines = []
    for row in rows:
        notes = []
        for codec in ("pure", "compiled"):
            cell = row[codec]
            if cell["target"] is not None and cell["met"] is not None:
                mark = "ok" if cell["met"] else "MISSED"
                notes.append(f"{codec}>={cell['target']:g}x {mark}")
        lines.append(
            (
                row["case"],
                row["op"],
                row["mode"],
                _fmt_time(row["reference_median"]),
                _fmt_time(row["pure"]["median"]),
                f"{row['pure']['speedup']:.2f}" if row["pure"]["speedup"] else "-",
                _fmt_time(row["compiled"]["median"]),
                f"{row['compiled']['speedup']:.2f}" if row["compiled"]["speedup"] else "-",
                ", ".join(notes),
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=False)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return out


def write_json(
    config: pytest.Config,
    results: dict[tuple[str, str, str, str], dict[str, Any]],
    rows: list[dict[str, Any]],
    ratios: dict[str, float],
) -> Path | None:
    target = config.getoption("bench_json")
    if target == "-":
        return None
    path = Path(target)
    if not path.is_absolute():
        path = Path(config.rootpath) / path
    from ncplib.codec import implementation

    document = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "quick": bool(config.getoption("bench_quick")),
        "benchmark_options": benchmark_options(config),
        "active_codec": implementation(),
        "steady_malloc": config.stash.get(STEADY_MALLOC, False),
        "reference": config.stash.get(REFERENCE_INFO, None),
        "cases": bench_cases.CASES,
        "results": [
            {"case": case, "op": op, "mode": mode, "codec": codec, **stats}
            for (case, op, mode, codec), stats in sorted(results.items())
        ],
        "comparison": rows,
        "numpy_decode_16m_over_1m": ratios,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path
