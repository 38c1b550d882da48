"""
The compiled and the pure-Python codec behave identically: the same bytes, the same decoded
values (types included), the same warnings and the same exceptions (type and message).
"""

from __future__ import annotations

import array
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from codec_modules import NEED_COMPILED, TS, compiled, identifiers, outcome, packets, pure, values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import VECTORS, same_packet

from ncplib import _wire, f64, i64, u32, u64

pytestmark = NEED_COMPILED

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_outcome(a: tuple[str, Any, Any], b: tuple[str, Any, Any], messages: bool = True) -> bool:
    """Two outcomes of :func:`codec_modules.outcome` are identical (perhaps but for messages)."""
    if a[0] != b[0] or a[2] != b[2]:
        return False
    if a[0] == "raise":
        return bool(a[1] == b[1]) if messages else a[1][0] is b[1][0]
    return compare(a[1], b[1])


def compare(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and len(a) == 5 and isinstance(a[4], list):
        return same_packet(a, b)
    if isinstance(a, list):  # encode_packet_buffers: the same bytes in total
        return b"".join(a) == b"".join(b)
    return bool(a == b) and type(a) is type(b)


def both(name: str, *args: Any, messages: bool = True) -> None:
    expected = outcome(lambda: getattr(pure, name)(*args))
    actual = outcome(lambda: getattr(compiled, name)(*args))
    assert same_outcome(expected, actual, messages), (expected, actual)


@SETTINGS
@given(packet=packets)
def test_same_bytes_and_values_for_valid_packets(packet: Any) -> None:
    wire = pure.encode_packet(*packet)
    assert compiled.encode_packet(*packet) == wire
    assert b"".join(compiled.encode_packet_buffers(*packet)) == wire
    both("decode_packet", wire)


# Values that are sometimes invalid: out of range, wrong type, bad strings and names.
risky_values = st.one_of(
    values,
    st.integers(-(2**70), 2**70),
    st.integers(-(2**70), 2**70).map(u32),
    st.integers(-(2**70), 2**70).map(i64),
    st.integers(-(2**70), 2**70).map(u64),
    st.floats(),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([array.array("u", "x"), object(), 1j, bytearray(b"ba"), memoryview(b"mv")]),
)
risky_names = st.one_of(identifiers, st.text(max_size=5), st.none(), st.integers())
risky_ids = st.one_of(st.integers(-5, 2**32 + 5), st.none(), st.floats(), st.booleans())


@SETTINGS
@given(
    packet_type=risky_names,
    packet_id=risky_ids,
    timestamp=st.one_of(
        st.datetimes(
            min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
        ),
        st.none(),
    ),
    info=st.one_of(st.binary(max_size=6), st.text(max_size=2)),
    fields=st.lists(
        st.tuples(risky_names, risky_ids, st.lists(st.tuples(risky_names, risky_values), max_size=4))
    ),
)
def test_same_outcome_for_risky_encoder_input(
    packet_type: Any, packet_id: Any, timestamp: Any, info: Any, fields: Any
) -> None:
    both("encode_packet", packet_type, packet_id, timestamp, info, fields)
    both("encode_packet_buffers", packet_type, packet_id, timestamp, info, fields)


@pytest.mark.parametrize(
    "fields",
    [
        [("F", 1, [("A", 1)], "extra")],
        [("F", 1)],
        [("F", 1, [("A",)])],
        [("F", 1, [("A", 1, 2)])],
        [("F", 1, None)],
        [None],
        None,
        [("F", 1, [(n, 1) for n in "ABCDEFGH"]), ("G", 2, (("X", "y"),))],
        (f for f in [("F", 1, (p for p in [("A", u32(5))]))]),
    ],
)
def test_same_outcome_for_malformed_field_structures(fields: Any) -> None:
    # Unpacking errors come from the interpreter, worded its own way: compare their types only.
    if fields is not None and not isinstance(fields, list):
        fields = list(fields)
        fields = [(n, i, list(ps)) for n, i, ps in fields]
    both("encode_packet", "PACK", 1, TS, b"", fields, messages=False)


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime(2020, 1, 1),
        datetime(1970, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc),
        datetime(2106, 2, 7, 6, 28, 15, 999999, tzinfo=timezone.utc),
        datetime(2106, 2, 7, 6, 28, 16, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
        datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=-11))),
        datetime(1970, 1, 1, tzinfo=timezone(timedelta(minutes=1))),
    ],
)
def test_same_timestamps(timestamp: datetime) -> None:
    both("encode_packet", "PACK", 1, timestamp, b"", [])


@SETTINGS
@given(data=st.binary(max_size=120), use_numpy=st.booleans())
def test_same_outcome_for_random_bytes(data: bytes, use_numpy: bool) -> None:
    both("decode_packet", data, use_numpy)


@SETTINGS
@given(words=st.lists(st.integers(0, 2**32 - 1), max_size=30), patch=st.integers(0, 29), magic=st.booleans())
def test_same_outcome_for_random_bodies(words: list[int], patch: int, magic: bool) -> None:
    if magic and words:
        words[patch % len(words)] = 0xDDCCBBAA  # embedded footers and footer-like words
    body = struct.pack(f"<{len(words)}I", *words)
    header = b"\xdd\xcc\xbb\xaaPACK" + struct.pack("<IIIII", (len(body) + 40) // 4, 1, 1, 0, 0) + bytes(4)
    wire = header + body + _wire.PACKET_FOOTER
    both("decode_packet", wire, False)
    pytest.importorskip("numpy")
    both("decode_packet", wire, True)


@SETTINGS
@given(packet=packets, flips=st.lists(st.integers(0, 10**6), max_size=3))
def test_same_outcome_for_mutated_packets(packet: Any, flips: list[int]) -> None:
    wire = bytearray(pure.encode_packet(*packet))
    for flip in flips:
        bit = flip % (len(wire) * 8)
        wire[bit // 8] ^= 1 << (bit % 8)
    both("decode_packet", bytes(wire))


def test_same_outcome_for_every_bit_flip_of_the_real_packets() -> None:
    for name in ("real-link-helo.bin", "real-stat-embedded-footer.bin"):
        wire = (VECTORS / name).read_bytes()
        for bit in range(len(wire) * 8):
            flipped = bytearray(wire)
            flipped[bit // 8] ^= 1 << (bit % 8)
            both("decode_packet", bytes(flipped))


def test_same_wrapper_types() -> None:
    fields = [("F", 1, [("A", u32(1)), ("B", i64(-1)), ("C", u64(2)), ("D", f64(0.5)), ("E", True)])]
    wire = pure.encode_packet("PACK", 1, TS, b"", fields)
    decoded = [(n, type(v)) for n, v in compiled.decode_packet(wire)[4][0][2]]
    assert decoded == [(n, type(v)) for n, v in pure.decode_packet(wire)[4][0][2]]
    assert decoded == [("A", u32), ("B", i64), ("C", u64), ("D", f64), ("E", int)]
