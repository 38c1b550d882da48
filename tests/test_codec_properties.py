"""Round-trip properties of both codecs over every value type, at the edges of every range."""

from __future__ import annotations

import array
import warnings
from types import ModuleType
from typing import Any

import pytest
from codec_modules import (
    ARRAY_TYPECODES,
    CODECS,
    TS,
    expected_packet,
    expected_value,
    identifiers,
    packets,
    values,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import same_packet, same_value

from ncplib import _wire, f64, i64, u32, u64

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def round_trip(codec: ModuleType, packet: Any) -> Any:
    wire = codec.encode_packet(*packet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return codec.decode_packet(wire)


@CODECS
@SETTINGS
@given(packet=packets)
def test_packets_round_trip(codec: ModuleType, packet: Any) -> None:
    decoded = round_trip(codec, packet)
    assert same_packet(decoded, expected_packet(packet))


@CODECS
@SETTINGS
@given(packet=packets)
def test_encode_packet_is_the_join_of_encode_packet_buffers(codec: ModuleType, packet: Any) -> None:
    buffers = codec.encode_packet_buffers(*packet)
    assert all(isinstance(b, (bytes, memoryview)) for b in buffers)
    assert codec.encode_packet(*packet) == b"".join(buffers)


@CODECS
@SETTINGS
@given(value=values, name=identifiers)
def test_every_value_round_trips_with_its_type(codec: ModuleType, value: Any, name: str) -> None:
    decoded = round_trip(codec, ("PACK", 1, TS, b"", [("FIEL", 2, [(name, value)])]))
    ((_, _, [(decoded_name, decoded_value)]),) = decoded[4]
    assert decoded_name == name.rstrip(" ")
    assert same_value(decoded_value, expected_value(value)), (decoded_value, value)


@CODECS
@settings(SETTINGS, max_examples=10)
@given(
    many=st.lists(
        st.tuples(
            identifiers, st.integers(0, 2**32 - 1), st.lists(st.tuples(identifiers, values), max_size=40)
        ),
        min_size=10,
        max_size=20,
    )
)
def test_packets_with_many_fields_and_params(codec: ModuleType, many: Any) -> None:
    packet = ("DSPC", 7, TS, b"\x01", many)
    assert same_packet(round_trip(codec, packet), expected_packet(packet))


EDGES: list[Any] = [
    -(2**31),
    2**31 - 1,
    0,
    True,
    False,
    u32(0),
    u32(2**32 - 1),
    i64(-(2**63)),
    i64(2**63 - 1),
    u64(0),
    u64(2**64 - 1),
    3.4028234663852886e38,
    -3.4028234663852886e38,
    1.401298464324817e-45,
    float("inf"),
    float("-inf"),
    float("nan"),
    f64(1.7976931348623157e308),
    f64(5e-324),
    f64(float("-inf")),
    "",
    "é€😀",
    "x" * 1000,
    b"",
    b"\x00",
    bytes(range(256)) * 5,
]


@CODECS
@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_range_edges_round_trip_exactly(codec: ModuleType, value: Any) -> None:
    decoded = round_trip(codec, ("PACK", 1, TS, b"", [("FIEL", 2, [("VAL", value)])]))
    assert same_value(decoded[4][0][2][0][1], expected_value(value))


@CODECS
@pytest.mark.parametrize("typecode", ARRAY_TYPECODES)
@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 300])
def test_arrays_decode_over_their_padded_area(codec: ModuleType, typecode: str, count: int) -> None:
    value = array.array(typecode, [1] * count)
    decoded = round_trip(codec, ("PACK", 1, TS, b"", [("FIEL", 2, [("ARR", value)])]))[4][0][2][0][1]
    canonical = _wire.DATA_TYPES[_wire.TYPECODE_TO_TYPE[typecode]][0]
    assert decoded.typecode == canonical
    padded_bytes = -(-count * value.itemsize // 4) * 4
    assert len(decoded) * decoded.itemsize == padded_bytes
    assert list(decoded) == [1] * count + [0] * (len(decoded) - count)


@CODECS
def test_raw_values_decode_over_their_padded_area(codec: ModuleType) -> None:
    fields = [("F", 0, [("A", b"foo"), ("B", bytearray(b"12345")), ("C", memoryview(b"xy"))])]
    decoded = round_trip(codec, ("PACK", 1, TS, b"", fields))[4][0][2]
    assert decoded == [("A", b"foo\x00"), ("B", b"12345\x00\x00\x00"), ("C", b"xy\x00\x00")]


@CODECS
def test_large_values_appear_as_views_in_buffers(codec: ModuleType) -> None:
    data = array.array("h", range(5000))
    raw = bytearray(b"r" * 3000)
    buffers = codec.encode_packet_buffers("PACK", 1, TS, b"", [("F", 0, [("D", data), ("R", raw)])])
    views = [b for b in buffers if isinstance(b, memoryview)]
    assert len(views) == 2
    assert views[0].obj is data
    assert views[1].obj is raw


@CODECS
def test_identifier_caches_never_confuse_names(codec: ModuleType) -> None:
    # Many short-lived name strings, built at run time so that new ones may reuse the memory of
    # old ones: each must still be encoded and decoded as its own text.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for round_ in range(3):
        names = ["".join(alphabet[(i * 7 + round_ + k) % 36] for k in range(1 + i % 4)) for i in range(700)]
        params = [(name, i) for i, name in enumerate(names)]
        decoded = codec.decode_packet(codec.encode_packet("PACK", 1, TS, b"", [("FIEL", 1, params)]))
        assert decoded[4][0][2] == params
        del names, params
