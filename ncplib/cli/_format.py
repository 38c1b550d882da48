"""Showing received fields: one-line summaries, full listings, JSON, and their wire size."""

from __future__ import annotations

import array
import math
from datetime import datetime, timezone
from typing import Any

from ncplib import _wire as w
from ncplib.capture import field_packet
from ncplib.values import f64, i64, u32, u64


def plural(count: int, noun: str) -> str:
    """``"1 field"``, ``"2 fields"``: a count and its noun, in the plural when it is not 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _data_type_name(kind: str, itemsize: int, fallback: str) -> str:
    type_id = w.DTYPE_TO_TYPE.get((kind, itemsize))
    return fallback if type_id is None else w.DATA_TYPE_NAMES[type_id]


def type_name(value: Any) -> str:
    """The NCP type name of a decoded param value, such as ``"u32"`` or ``"data u8"``."""
    if isinstance(value, u32):
        return "u32"
    if isinstance(value, i64):
        return "i64"
    if isinstance(value, u64):
        return "u64"
    if isinstance(value, f64):
        return "f64"
    if isinstance(value, int):
        return "i32"
    if isinstance(value, float):
        return "f32"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "raw"
    if isinstance(value, array.array):
        code = value.typecode
        kind = "f" if code in "fd" else ("i" if code.islower() else "u")
        return "data " + _data_type_name(kind, value.itemsize, code)
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return "data " + _data_type_name(dtype.kind, dtype.itemsize, str(dtype))
    return type(value).__name__


def _is_array(value: Any) -> bool:
    return isinstance(value, array.array) or hasattr(value, "dtype")


def _summary(value: Any, limit: int = 60) -> str:
    if _is_array(value):
        n = len(value)
        if not n:
            return "0 values"
        return f"{n} values, min {_number(min(value))}, max {_number(max(value))}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        shown = data[:32].hex()
        return f"{len(data)} bytes: {shown}{'...' if len(data) > 32 else ''}"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 4] + "...'"
    return _number(value)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(int(value)) if hasattr(value, "__index__") else str(value)


def _timestamp(field: Any) -> str:
    stamp = getattr(field, "packet_timestamp", None)
    if isinstance(stamp, datetime):
        return stamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return "?"


def _counted(field: Any, name: str) -> tuple[Any, int]:
    """
    A param's value without the padding of a counted data param (``PDAT`` has ``NBIN`` bins),
    and how many padding values were left out.
    """
    from ncplib.node import data_values

    value = field[name]
    counted = data_values(field, name) if _is_array(value) else value
    return counted, (len(value) - len(counted) if counted is not value else 0)


def format_field(field: Any) -> str:
    """
    A readable multi-line description of a received field; arrays are summarised, counted data
    (``PDAT`` of ``NBIN`` bins, ``DIQT`` of ``SAMP`` samples) without its padding.
    """
    head = f"{field.packet_type} {field.name}  field id {field.id}, packet id {field.packet_id}"
    lines = [f"{head}, {_timestamp(field)}"]
    for name in field:
        value, padding = _counted(field, name)
        note = f" (+{padding} padding)" if padding else ""
        lines.append(f"  {name:<4}  {type_name(value):<9}  {_summary(value)}{note}")
    return "\n".join(lines)


def format_field_line(field: Any, index: int) -> str:
    """A one-line description of a received field, for streams; counted data without its padding."""
    parts = []
    for name in field:
        value, _ = _counted(field, name)
        if _is_array(value):
            low_high = f" {_number(min(value))}..{_number(max(value))}" if len(value) else ""
            parts.append(f"{name} {type_name(value)}[{len(value)}]{low_high}")
        else:
            parts.append(f"{name}={_summary(value, 24)}")
    return f"#{index} {field.packet_type} {field.name} id {field.id}: " + ", ".join(parts)


def _json_value(value: Any) -> Any:
    if _is_array(value):
        return [_json_value(item) for item in value.tolist()]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return int(value)
    return value


def field_to_json(field: Any) -> dict[str, Any]:
    """
    A received field as a JSON-ready dict.

    ``params`` maps each param name to ``{"type": ..., "value": ...}``; arrays are lists, raw
    bytes a hex string, non-finite floats the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
    Counted data (``PDAT`` of ``NBIN`` bins, ``DIQT`` of ``SAMP`` samples) is cut to its count,
    with ``"padding"``: the number of values left out, when there were any.
    """
    stamp = getattr(field, "packet_timestamp", None)
    params: dict[str, Any] = {}
    for name in field:
        value, padding = _counted(field, name)
        params[name] = {"type": type_name(value), "value": _json_value(value)}
        if padding:
            params[name]["padding"] = padding
    return {
        "packet_type": field.packet_type,
        "packet_id": int(field.packet_id),
        "timestamp": stamp.isoformat() if isinstance(stamp, datetime) else None,
        "field": field.name,
        "field_id": int(field.id),
        "params": params,
    }


def _field_packet(field: Any) -> list[bytes | memoryview]:
    """A received field as the buffers of a one-field NCP packet (header info bytes zero)."""
    return field_packet(field)


def field_wire_size(field: Any) -> int:
    """The size in bytes of a packet holding only this field (what ``--save`` writes for it)."""
    # Large values are views in the buffer list, so nothing big is copied to measure it.
    return sum(memoryview(buffer).nbytes for buffer in _field_packet(field))


def encode_field(field: Any) -> bytes:
    """Re-encodes a received field as a one-field NCP packet (header info bytes zero)."""
    return b"".join(_field_packet(field))
