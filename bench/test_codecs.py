"""
Codec benchmarks: our compiled and pure-Python codecs and the reference ncplib 6.1.0, side by side.

Our codecs are timed here by pytest-benchmark. The reference is timed in its own process by
``reference_worker.py`` with the same method and options; its round durations are then replayed
into pytest-benchmark through a scripted clock, so every figure lands in one results table (and in
``--benchmark-json``). The comparison table and file come from ``conftest.py``.
"""

from __future__ import annotations

import array
import functools
import hashlib
import importlib
import math
from types import ModuleType
from typing import Any

import bench_cases
import pytest
from bench_support import benchmark_options, record

DECODE_CASES = ["a-command", "b-sweep", "c-time-1m", "d-stat"]
ENCODE_CASES = ["a-command", "b-sweep", "c-time-1m", "d-stat"]
NUMPY_DECODE_CASES = ["b-sweep", "c-time-1m", "c-time-16m"]
NUMPY_ENCODE_CASES = ["b-sweep", "c-time-1m"]

OURS_DECODE = [(c, "array") for c in DECODE_CASES] + [(c, "numpy") for c in NUMPY_DECODE_CASES]
OURS_ENCODE = [(c, "array") for c in ENCODE_CASES] + [(c, "numpy") for c in NUMPY_ENCODE_CASES]
REFERENCE_DECODE = [*DECODE_CASES, "c-time-16m"]
REFERENCE_ENCODE = ENCODE_CASES


class ReplayClock:
    """
    A clock for pytest-benchmark that replays round durations measured elsewhere.

    pytest-benchmark reads the clock before and after each round; this clock moves forward by
    the next loaded duration between those two readings, and not at all otherwise.
    """

    __name__ = "reference_worker_clock"

    def __init__(self) -> None:
        self._durations: list[float] = []
        self._next = 0
        self._now = 0.0
        self._in_round = False

    def load(self, durations: list[float]) -> None:
        """Sets the durations of the rounds to come."""
        self._durations = list(durations)
        self._next = 0
        self._in_round = False

    def __call__(self) -> float:
        if self._in_round:
            self._now += self._durations[self._next]
            self._next += 1
        self._in_round = not self._in_round
        return self._now


REPLAY_CLOCK = ReplayClock()


def _noop() -> None:
    pass


def codec(name: str) -> ModuleType:
    """Our codec module by name; skips the test when the compiled codec is not built."""
    if name == "pure":
        return importlib.import_module("ncplib._pycodec")
    try:
        return importlib.import_module("ncplib._codec")
    except ImportError as ex:
        pytest.skip(f"compiled codec not built: {ex}")


@functools.lru_cache(maxsize=2)
def encode_args(case: str, use_numpy: bool) -> tuple[Any, ...]:
    if use_numpy:
        pytest.importorskip("numpy")
    return bench_cases.encode_args(case, use_numpy)


@functools.lru_cache(maxsize=2)
def wire(case: str) -> bytes:
    return bytes(importlib.import_module("ncplib._pycodec").encode_packet(*encode_args(case, False)))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _plain(value: Any) -> Any:
    """A comparable form of a decoded value: arrays (array or numpy) become (kind, size, bytes)."""
    if isinstance(value, array.array):
        code = value.typecode
        kind = "f" if code in "fd" else ("i" if code.islower() else "u")
        return ("data", kind, value.itemsize, value.tobytes())
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):
        return ("data", value.dtype.kind, value.dtype.itemsize, value.tobytes())
    if isinstance(value, float) and math.isnan(value):
        return ("nan", type(value))
    return (type(value), value)


def plain_packet(packet: Any) -> Any:
    """A comparable form of a decoded packet."""
    ptype, pid, ts, info, fields = packet
    return (
        ptype,
        pid,
        ts,
        info,
        [(name, fid, [(p, _plain(v)) for p, v in params]) for name, fid, params in fields],
    )


def _reference_sha(request: pytest.FixtureRequest, case: str) -> str | None:
    try:
        worker = request.getfixturevalue("reference")
    except pytest.skip.Exception:
        return None
    answer: dict[str, Any] = worker.request({"cmd": "prepare", "case": case})
    return str(answer["sha256"])


@pytest.mark.parametrize("codec_name", ["pure", "compiled"])
@pytest.mark.parametrize(("case", "mode"), OURS_DECODE, ids=[f"{c}-{m}" for c, m in OURS_DECODE])
def test_decode(
    benchmark: Any, request: pytest.FixtureRequest, codec_name: str, case: str, mode: str
) -> None:
    module = codec(codec_name)
    use_numpy = mode == "numpy"
    if use_numpy:
        pytest.importorskip("numpy")
    buf = wire(case)
    expected = plain_packet(importlib.import_module("ncplib._pycodec").decode_packet(buf, False))
    assert plain_packet(module.decode_packet(buf, use_numpy)) == expected
    benchmark.group = f"{case} decode"
    benchmark.extra_info.update(case=case, op="decode", mode=mode, codec=codec_name)
    benchmark(module.decode_packet, buf, use_numpy)
    record(request.config, case, "decode", mode, codec_name, benchmark)


@pytest.mark.parametrize("codec_name", ["pure", "compiled"])
@pytest.mark.parametrize(("case", "mode"), OURS_ENCODE, ids=[f"{c}-{m}" for c, m in OURS_ENCODE])
def test_encode(
    benchmark: Any, request: pytest.FixtureRequest, codec_name: str, case: str, mode: str
) -> None:
    module = codec(codec_name)
    args = encode_args(case, mode == "numpy")
    expected = _reference_sha(request, case) or sha256(wire(case))
    assert sha256(module.encode_packet(*args)) == expected
    benchmark.group = f"{case} encode"
    benchmark.extra_info.update(case=case, op="encode", mode=mode, codec=codec_name)
    benchmark(module.encode_packet, *args)
    record(request.config, case, "encode", mode, codec_name, benchmark)


def _time_reference(benchmark: Any, request: pytest.FixtureRequest, worker: Any, case: str, op: str) -> None:
    prepared = worker.request({"cmd": "prepare", "case": case})
    assert prepared["sha256"] == sha256(wire(case)), "the reference encodes this case differently"
    benchmark.group = f"{case} {op}"
    benchmark.extra_info.update(
        case=case,
        op=op,
        mode="array",
        codec="reference",
        timed_in=f"separate process: ncplib {worker.info['version']}, Python {worker.info['python']}",
    )
    if benchmark.disabled:
        benchmark.pedantic(_noop)
        return
    answer = worker.request(
        {"cmd": "time", "case": case, "op": op, "options": benchmark_options(request.config)}
    )
    REPLAY_CLOCK.load(answer["durations"])
    benchmark.pedantic(_noop, rounds=len(answer["durations"]), iterations=answer["iterations"])
    record(request.config, case, op, "array", "reference", benchmark)


@pytest.mark.benchmark(timer=REPLAY_CLOCK)
@pytest.mark.parametrize("case", REFERENCE_DECODE)
def test_decode_reference(benchmark: Any, request: pytest.FixtureRequest, reference: Any, case: str) -> None:
    _time_reference(benchmark, request, reference, case, "decode")


@pytest.mark.benchmark(timer=REPLAY_CLOCK)
@pytest.mark.parametrize("case", REFERENCE_ENCODE)
def test_encode_reference(benchmark: Any, request: pytest.FixtureRequest, reference: Any, case: str) -> None:
    _time_reference(benchmark, request, reference, case, "encode")
