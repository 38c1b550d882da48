"""Loading the conformance vectors in ``tests/vectors`` into Python values."""

from __future__ import annotations

import array
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from ncplib import f64, i64, u32, u64

VECTORS = Path(__file__).parent / "vectors"

_SCALARS: dict[str, Any] = {"i32": int, "u32": u32, "i64": i64, "u64": u64, "f32": float, "f64": f64}


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


def to_value(tagged: dict[str, Any]) -> Any:
    """Turn one tagged JSON value into the Python value it stands for."""
    kind = tagged["type"]
    if kind == "bool":
        return bool(tagged["value"])
    if kind in _SCALARS:
        return _SCALARS[kind](_number(tagged["value"]))
    if kind == "string":
        return tagged["value"]
    if kind == "raw":
        return bytes.fromhex(tagged["hex"])
    if kind == "array":
        return array.array(tagged["typecode"], [_number(v) for v in tagged["value"]])
    raise AssertionError(f"unknown tag {kind}")


def to_packet(data: dict[str, Any]) -> tuple[str, int, datetime, bytes, list[Any]]:
    """Turn a vector's ``encode`` or ``decoded`` member into a packet tuple."""
    return (
        data["packet_type"],
        data["packet_id"],
        datetime.fromisoformat(data["timestamp"]),
        bytes.fromhex(data["info_hex"]),
        [(name, fid, [(pname, to_value(v)) for pname, v in params]) for name, fid, params in data["fields"]],
    )


def load(name: str) -> list[dict[str, Any]]:
    """The list of vectors in one JSON file."""
    return json.loads((VECTORS / name).read_text())  # type: ignore[no-any-return]


def same_value(a: Any, b: Any) -> bool:
    """Equal values of the same type, NaN equal to NaN, arrays with the same typecode."""
    if type(a) is not type(b):
        return False
    if isinstance(a, array.array):
        return a.typecode == b.typecode and len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def same_packet(a: Any, b: Any) -> bool:
    """Two decoded packets are identical, value types included."""
    if a[:4] != b[:4] or len(a[4]) != len(b[4]):
        return False
    for (an, ai, ap), (bn, bi, bp) in zip(a[4], b[4], strict=True):
        if an != bn or ai != bi or len(ap) != len(bp):
            return False
        for (pa, va), (pb, vb) in zip(ap, bp, strict=True):
            if pa != pb or not same_value(va, vb):
                return False
    return True
