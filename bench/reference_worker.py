"""
Times the reference ncplib 6.1.0 for the codec benchmarks, in a process of its own.

Run by the interpreter of the reference virtual environment (see ``tools/refenv.py``); it
imports only that environment's ``ncplib`` and ``bench_cases`` beside this file. With
``--steady-malloc`` it first calls :func:`bench_cases.steady_malloc`, as the benchmarks do. It reads one
JSON request per line on stdin and answers with one JSON line on stdout:

- ``{"cmd": "info"}``: the reference's version, file and Python version;
- ``{"cmd": "prepare", "case": C}``: builds the case's packet; answers its SHA-256 and size;
- ``{"cmd": "time", "case": C, "op": "decode"|"encode", "options": {...}}``: times the
  operation the way pytest-benchmark times a ``benchmark(...)`` call (calibrate the iterations
  per round, then run rounds until ``max_time``) with the same options, and answers the
  duration of every round and the iterations per round.

Errors are answered as ``{"ok": false, "error": ...}``. End of input ends the worker.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_cases

REPO = Path(__file__).resolve().parent.parent


def _import_reference() -> Any:
    import ncplib
    import ncplib.packets

    location = Path(ncplib.__file__).resolve()
    if REPO in location.parents:
        raise RuntimeError(f"imported the ncplib under test ({location}), not the reference")
    return ncplib.packets


packets = _import_reference()
timer = time.perf_counter


def timer_precision(samples: int = 10) -> float:
    """The smallest step of the timer, as pytest-benchmark measures it."""
    smallest = math.inf
    for _ in range(samples):
        t1 = timer()
        t2 = timer()
        while t2 <= t1:
            t2 = timer()
        smallest = min(smallest, t2 - t1)
    return smallest


def _runner(function: Callable[[], object], disable_gc: bool) -> Callable[[range], float]:
    def run(loops: range) -> float:
        gc_enabled = gc.isenabled()
        if disable_gc:
            gc.disable()
        try:
            start = timer()
            for _ in loops:
                function()
            return timer() - start
        finally:
            if gc_enabled:
                gc.enable()

    return run


def measure(function: Callable[[], object], options: dict[str, Any]) -> tuple[int, list[float]]:
    """
    Times ``function`` like pytest-benchmark: returns the iterations per round and the round durations.
    """
    run = _runner(function, bool(options.get("disable_gc")))
    calibration_precision = int(options.get("calibration_precision", 10))
    min_time = max(float(options.get("min_time", 5e-6)), timer_precision() * calibration_precision)
    min_time_estimate = min_time * 5 / calibration_precision
    max_time = float(options.get("max_time", 1.0))
    warmup_iterations = int(options.get("warmup_iterations", 0)) if options.get("warmup") else 0
    loops = 1
    while True:
        duration = run(range(loops))
        if warmup_iterations:
            start, done = time.time(), 0
            while time.time() - start < max_time and done < warmup_iterations:
                duration = min(duration, run(range(loops)))
                done += loops
        if duration >= min_time:
            break
        if duration >= min_time_estimate:
            loops = math.ceil(min_time * loops / duration)
            if loops == 1:
                break
        else:
            loops *= 10
    rounds = max(math.ceil(max_time / duration), int(options.get("min_rounds", 5)))
    loops_range = range(loops)
    if warmup_iterations:
        for _ in range(min(rounds, max(1, warmup_iterations // loops))):
            run(loops_range)
    return loops, [run(loops_range) for _ in range(rounds)]


class Cases:
    """Builds each case's inputs once."""

    def __init__(self) -> None:
        self._args: dict[str, tuple[Any, ...]] = {}
        self._wire: dict[str, bytes] = {}
        self.steady_malloc = False

    def args(self, case: str) -> tuple[Any, ...]:
        if case not in self._args:
            self._args[case] = bench_cases.encode_args(case)
        return self._args[case]

    def wire(self, case: str) -> bytes:
        if case not in self._wire:
            self._wire[case] = packets.encode_packet(*self.args(case))
        return self._wire[case]

    def function(self, case: str, op: str) -> Callable[[], object]:
        if op == "decode":
            wire = self.wire(case)
            return lambda: packets.decode_packet(wire)
        if op == "encode":
            args = self.args(case)
            return lambda: packets.encode_packet(*args)
        raise ValueError(f"unknown op {op!r}")


def handle(request: dict[str, Any], cases: Cases) -> dict[str, Any]:
    """Answers one request."""
    cmd = request.get("cmd")
    if cmd == "info":
        import ncplib

        return {
            "ok": True,
            "version": getattr(ncplib, "__version__", None) or _distribution_version(),
            "file": ncplib.__file__,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "steady_malloc": cases.steady_malloc,
        }
    if cmd == "prepare":
        wire = cases.wire(request["case"])
        return {"ok": True, "sha256": hashlib.sha256(wire).hexdigest(), "size": len(wire)}
    if cmd == "time":
        function = cases.function(request["case"], request["op"])
        function()
        iterations, durations = measure(function, request.get("options", {}))
        return {"ok": True, "iterations": iterations, "durations": durations}
    if cmd == "forget":
        cases._args.pop(request["case"], None)
        cases._wire.pop(request["case"], None)
        gc.collect()
        return {"ok": True}
    raise ValueError(f"unknown command {cmd!r}")


def _distribution_version() -> str:
    from importlib.metadata import version

    return version("ncplib")


def main() -> int:
    """Serves requests until stdin ends."""
    steady = "--steady-malloc" in sys.argv[1:] and bench_cases.steady_malloc()
    out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed must not corrupt the answers
    cases = Cases()
    cases.steady_malloc = steady
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(json.loads(line), cases)
        except Exception as ex:
            answer = {"ok": False, "error": f"{type(ex).__name__}: {ex}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
