"""What the canonical values (``common.canonical_values``) must decode to, exactly."""

from __future__ import annotations

import array
import struct
from typing import Any


def _f32(value: float) -> str:
    return float(struct.unpack("<f", struct.pack("<f", value))[0]).hex()


def _floats(values: list[float], single: bool = False) -> list[str]:
    return [_f32(value) if single else float(value).hex() for value in values]


# The canonical values (peers.common.canonical_values) as they must arrive, exactly: the decoded
# type's name and value. Raw and array values come back padded to a multiple of 4 bytes.
EXPECTED_VALUES: dict[str, dict[str, Any]] = {
    "I32": {"t": "int", "v": -123456789},
    "BOOL": {"t": "int", "v": 1},
    "U32": {"t": "u32", "v": 4000000000},
    "I64": {"t": "i64", "v": -(2**62) - 3},
    "U64": {"t": "u64", "v": 2**63 + 5},
    "F32": {"t": "float", "v": _f32(0.1)},
    "F64": {"t": "f64", "v": (0.1).hex()},
    "STR": {"t": "str", "v": "h\u00e9llo \u2713 \U0001f680"},
    "STRE": {"t": "str", "v": ""},
    "RAW": {"t": "bytes", "v": "666f6f00"},
    "RAW4": {"t": "bytes", "v": "000102ff"},
    "AU8": {"t": "array", "c": "B", "v": [1, 2, 255, 0]},
    "AI8": {"t": "array", "c": "b", "v": [-1, 0, 0, 0]},
    "AU16": {"t": "array", "c": "H", "v": [7, 0]},
    "AI16": {"t": "array", "c": "h", "v": [-7, 8, 9, 0]},
    "AU32": {"t": "array", "c": "I", "v": [0, 4294967295]},
    "AI32": {"t": "array", "c": "i", "v": [-2147483648, 2147483647]},
    "AU64": {"t": "array", "c": "L", "v": [0, 2**64 - 1]},
    "AI64": {"t": "array", "c": "l", "v": [-(2**63), 2**63 - 1]},
    "AF32": {"t": "array", "c": "f", "v": _floats([1.5, -0.25], single=True)},
    "AF64": {"t": "array", "c": "d", "v": _floats([0.1, -1e300])},
}
if array.array("L").itemsize != 8:
    # Left out of the canonical values where "L" is 32-bit (see peers.common.WIDE_LONG).
    del EXPECTED_VALUES["AU64"], EXPECTED_VALUES["AI64"]
