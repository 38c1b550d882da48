"""
The packets the codec benchmarks encode and decode.

This module is imported twice: by the benchmarks (with ncplib under test) and by
``reference_worker.py`` (run by the reference ncplib's interpreter). It needs nothing but the
standard library, and numpy only for :func:`numpy_fields`, so both sides build identical inputs.
"""

from __future__ import annotations

import array
from datetime import datetime, timezone
from typing import Any

TIMESTAMP = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
INFO = b"\x12\x34\x56\x78"

#: Case name -> one-line description, in table order.
CASES: dict[str, str] = {
    "a-command": "small command: 1 field, 2 i32 params",
    "b-sweep": "sweep: SWEP with 8192 u8 PDAT bins",
    "c-time-1m": "1 MiB TIME: i16 DIQT",
    "c-time-16m": "16 MiB TIME: i16 DIQT",
    "d-stat": "STAT field with 50 i32 params",
}

_TIME_ITEMS = {"c-time-1m": 512 * 1024, "c-time-16m": 8 * 1024 * 1024}


#: glibc mallopt parameters and the values :func:`steady_malloc` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum
_TRIM_THRESHOLD = 256 * 1024 * 1024


def steady_malloc() -> bool:
    """
    Makes glibc's malloc keep and reuse freed memory, in this process; returns whether it could.

    By default glibc gives large blocks back to the system when they are freed, and a process
    that allocates and frees a megabyte per call may then pay a page fault per 4 KiB on every
    call, or not, depending on what else its heap holds. That makes figures of the large cases
    swing by 20x between runs. Both processes of a benchmark run call this, so both get the
    same, steady behaviour. Returns False (and changes nothing) where malloc is not glibc's.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    return mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def _sweep_bins() -> array.array[int]:
    # A deterministic spectrum-like ramp: a noise floor with a few peaks.
    return array.array("B", (((i * 37) % 23) + (200 if i % 1024 == 512 else 40) for i in range(8192)))


def _iq_samples(count: int) -> array.array[int]:
    pattern = array.array("h", ((i * 7919) % 65536 - 32768 for i in range(4096)))
    samples = pattern * (count // len(pattern))
    return samples


def fields(case: str) -> list[tuple[str, int, list[tuple[str, Any]]]]:
    """
    Returns the fields of one case, with array values as :class:`array.array`.

    :param case: a key of :data:`CASES`.
    :raises KeyError: for an unknown case.
    """
    if case == "a-command":
        return [("SWEP", 101, [("FSTA", 2400), ("FSTP", 2500)])]
    if case == "b-sweep":
        params: list[tuple[str, Any]] = [
            ("CFRQ", 2450),
            ("SPAN", 100),
            ("RBW", 30),
            ("GAIN", -10),
            ("PDAT", _sweep_bins()),
        ]
        return [("SWEP", 7, params)]
    if case in _TIME_ITEMS:
        params = [
            ("CFRQ", 2450),
            ("SRAT", 28),
            ("GAIN", 5),
            ("DIQT", _iq_samples(_TIME_ITEMS[case])),
        ]
        return [("TIME", 9, params)]
    if case == "d-stat":
        return [("STAT", 3, [(f"P{i:03d}", i * 1001 - 25000) for i in range(50)])]
    raise KeyError(case)


def numpy_fields(case: str) -> list[tuple[str, int, list[tuple[str, Any]]]]:
    """
    Returns the fields of one case with its array values as numpy arrays instead.

    :raises ImportError: if numpy is not installed.
    """
    import numpy

    return [
        (name, fid, [(p, numpy.asarray(v) if isinstance(v, array.array) else v) for p, v in params])
        for name, fid, params in fields(case)
    ]


def packet_type(case: str) -> str:
    """Returns the packet type of one case."""
    return "DSPC" if case == "a-command" else "DSPL"


def encode_args(case: str, use_numpy: bool = False) -> tuple[str, int, datetime, bytes, list[Any]]:
    """Returns the arguments of ``encode_packet`` for one case."""
    return (packet_type(case), 1, TIMESTAMP, INFO, numpy_fields(case) if use_numpy else fields(case))
