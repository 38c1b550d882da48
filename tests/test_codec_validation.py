"""Both codecs reject every invalid input to the encoder with ValueError or TypeError."""

from __future__ import annotations

import array
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest
from codec_modules import CODECS, TS

from ncplib import _wire, f64, i64, u32, u64

numpy = pytest.importorskip("numpy")

BAD_IDENTIFIERS: list[Any] = ["", "ABCDE", "abc", "A-B", "É", "A\n", "A\x00", "\u0391", 1, None, b"ABC"]
GOOD_IDENTIFIERS = ["A", "AB", "ABC", "ABCD", "AGC ", " A", "0123", "Z9 Z"]


def encode(
    codec: ModuleType, value: Any, *, name: str = "VAL", field: str = "FIEL", ptype: str = "PACK"
) -> bytes:
    return codec.encode_packet(ptype, 1, TS, b"", [(field, 2, [(name, value)])])  # type: ignore[no-any-return]


@CODECS
@pytest.mark.parametrize("bad", BAD_IDENTIFIERS, ids=repr)
@pytest.mark.parametrize("where", ["packet type", "field name", "param name"])
def test_invalid_identifiers_raise_value_error(codec: ModuleType, bad: Any, where: str) -> None:
    kwargs = {"packet type": "ptype", "field name": "field", "param name": "name"}[where]
    with pytest.raises(ValueError, match=f"Invalid {where}"):
        encode(codec, 1, **{kwargs: bad})


@CODECS
@pytest.mark.parametrize("good", GOOD_IDENTIFIERS)
def test_valid_identifiers_are_accepted(codec: ModuleType, good: str) -> None:
    packet = codec.decode_packet(encode(codec, 1, name=good, field=good, ptype=good))
    assert packet[0] == good.rstrip(" ")
    assert packet[4][0][0] == good.rstrip(" ")
    assert packet[4][0][2][0][0] == good.rstrip(" ")


OUT_OF_RANGE: list[Any] = [
    2**31,
    -(2**31) - 1,
    2**100,
    u32(-1),
    u32(2**32),
    i64(2**63),
    i64(-(2**63) - 1),
    u64(-1),
    u64(2**64),
    u64(2**200),
]


@CODECS
@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=lambda v: f"{type(v).__name__}({v})")
def test_integers_out_of_range_raise_value_error_never_wrap(codec: ModuleType, value: Any) -> None:
    with pytest.raises(ValueError, match=r"'VAL'.*out of range"):
        encode(codec, value)


@CODECS
@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, f64(1e300).__float__()])
def test_f32_overflow_raises_value_error(codec: ModuleType, value: float) -> None:
    with pytest.raises(ValueError, match=r"'VAL'.*out of range for NCP f32"):
        encode(codec, value)


@CODECS
def test_f64_carries_what_f32_cannot(codec: ModuleType) -> None:
    value = codec.decode_packet(encode(codec, f64(1e300)))[4][0][2][0][1]
    assert type(value) is f64
    assert value == 1e300


class Unsupported:
    pass


@CODECS
@pytest.mark.parametrize(
    "value",
    [None, object(), Unsupported(), [1, 2], (1,), {"a": 1}, {1}, 1j, array.array("u", "ab")],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_value_types_raise_type_error_naming_the_param(codec: ModuleType, value: Any) -> None:
    with pytest.raises(TypeError, match="'MYPA'"):
        encode(codec, value, name="MYPA")


@CODECS
@pytest.mark.parametrize("dtype", ["bool", "complex64", "complex128", "object", "U3", "S3", "datetime64[s]"])
def test_numpy_dtypes_without_ncp_type_raise_type_error(codec: ModuleType, dtype: str) -> None:
    value = numpy.zeros(3, dtype=dtype)
    with pytest.raises(TypeError, match="'MYPA'"):
        encode(codec, value, name="MYPA")


# The largest param value whose size in words (header and padding included) fits in 24 bits.
MAX_PARAM_DATA = 0xFFFFFF * 4 - 8


def zeros(size: int) -> memoryview:
    """A zero-filled buffer that costs no memory until it is read (calloc'd pages)."""
    return memoryview(numpy.zeros(size, dtype=numpy.uint8))


@CODECS
@pytest.mark.parametrize("size", [MAX_PARAM_DATA + 1, MAX_PARAM_DATA + 4, 2**27])
def test_param_too_large_for_its_word_count_raises_value_error(codec: ModuleType, size: int) -> None:
    with pytest.raises(ValueError, match=r"'BIG'.*too large"):
        codec.encode_packet_buffers("PACK", 1, TS, b"", [("FIEL", 2, [("BIG", zeros(size))])])


@CODECS
def test_field_too_large_for_its_word_count_raises_value_error(codec: ModuleType) -> None:
    # Each param fits on its own; together they overflow the field's 24-bit word count.
    params = [("A", zeros(40 * 2**20)), ("B", zeros(30 * 2**20))]
    with pytest.raises(ValueError, match=r"'FIEL'.*too large"):
        codec.encode_packet_buffers("PACK", 1, TS, b"", [("FIEL", 2, params)])


@CODECS
def test_largest_field_is_accepted(codec: ModuleType) -> None:
    data = zeros(MAX_PARAM_DATA - 12)
    buffers = codec.encode_packet_buffers("PACK", 1, TS, b"", [("FIEL", 2, [("BIG", data)])])
    header = b"".join(bytes(b) for b in buffers if len(b) < 1024)
    assert header[32 + 4 : 32 + 8] == b"\xff\xff\xff\x00"  # field size: 0xFFFFFF words
    assert header[32 + 16 : 32 + 20] == b"\xfc\xff\xff\x80"  # param size: 0xFFFFFC words, raw
    assert sum(len(b) for b in buffers) == 40 + 0xFFFFFF * 4


@CODECS
@pytest.mark.parametrize("value", ["a\x00b", "\x00", "end\x00"])
def test_string_with_nul_raises_value_error(codec: ModuleType, value: str) -> None:
    with pytest.raises(ValueError, match=r"'VAL'.*NUL"):
        encode(codec, value)


@CODECS
def test_string_that_is_not_unicode_raises_value_error(codec: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"'VAL'.*UTF-8"):
        encode(codec, "\ud800")


@CODECS
@pytest.mark.parametrize("packet_id", [-1, 2**32, 2**64])
def test_packet_id_out_of_range_raises_value_error(codec: ModuleType, packet_id: int) -> None:
    with pytest.raises(ValueError, match="packet id"):
        codec.encode_packet("PACK", packet_id, TS, b"", [])


@CODECS
@pytest.mark.parametrize("packet_id", ["1", 1.0, None])
def test_packet_id_of_wrong_type_raises_type_error(codec: ModuleType, packet_id: Any) -> None:
    with pytest.raises(TypeError, match="packet id"):
        codec.encode_packet("PACK", packet_id, TS, b"", [])


@CODECS
@pytest.mark.parametrize("field_id", [-1, 2**32])
def test_field_id_out_of_range_raises_value_error(codec: ModuleType, field_id: int) -> None:
    with pytest.raises(ValueError, match=r"'FIEL'.*id"):
        codec.encode_packet("PACK", 1, TS, b"", [("FIEL", field_id, [])])


@CODECS
@pytest.mark.parametrize("field_id", ["1", 1.0, None])
def test_field_id_of_wrong_type_raises_type_error(codec: ModuleType, field_id: Any) -> None:
    with pytest.raises(TypeError, match=r"'FIEL'.*id"):
        codec.encode_packet("PACK", 1, TS, b"", [("FIEL", field_id, [])])


@CODECS
@pytest.mark.parametrize("ids", [(0, 0), (2**32 - 1, 2**32 - 1), (True, False)])
def test_id_range_edges_are_accepted(codec: ModuleType, ids: tuple[int, int]) -> None:
    packet = codec.decode_packet(codec.encode_packet("PACK", ids[0], TS, b"", [("FIEL", ids[1], [])]))
    assert (packet[1], packet[4][0][1]) == (int(ids[0]), int(ids[1]))


@CODECS
@pytest.mark.parametrize("info", [b"12345", bytes(100), bytearray(5)])
def test_info_longer_than_4_bytes_raises_value_error(codec: ModuleType, info: bytes) -> None:
    with pytest.raises(ValueError, match="info"):
        codec.encode_packet("PACK", 1, TS, info, [])


@CODECS
@pytest.mark.parametrize("info", ["abc", None, 1234])
def test_info_of_wrong_type_raises_type_error(codec: ModuleType, info: Any) -> None:
    with pytest.raises(TypeError, match="info"):
        codec.encode_packet("PACK", 1, TS, info, [])


@CODECS
@pytest.mark.parametrize("info", [b"", b"\x01", bytearray(b"\x01\x02\x03"), memoryview(b"\x01\x02\x03\x04")])
def test_short_info_is_padded(codec: ModuleType, info: Any) -> None:
    packet = codec.decode_packet(codec.encode_packet("PACK", 1, TS, info, []))
    assert packet[3] == bytes(info).ljust(4, b"\x00")


UTC = timezone.utc


@CODECS
@pytest.mark.parametrize(
    "timestamp",
    [
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=2**32),
        datetime(9999, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_timestamp_out_of_range_raises_value_error(codec: ModuleType, timestamp: datetime) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        codec.encode_packet("PACK", 1, timestamp, b"", [])


@CODECS
@pytest.mark.parametrize("timestamp", [None, 0, "2020-01-01", datetime(2020, 1, 1).date()])
def test_timestamp_of_wrong_type_raises_type_error(codec: ModuleType, timestamp: Any) -> None:
    with pytest.raises(TypeError, match="timestamp"):
        codec.encode_packet("PACK", 1, timestamp, b"", [])


@CODECS
@pytest.mark.parametrize(
    "timestamp",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=2**32 - 1, microseconds=999999),
        datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2024, 3, 1, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_timestamp_range_edges_and_time_zones(codec: ModuleType, timestamp: datetime) -> None:
    decoded = codec.decode_packet(codec.encode_packet("PACK", 1, timestamp, b"", []))[2]
    assert decoded == timestamp
    assert decoded.tzinfo is UTC


@CODECS
def test_naive_timestamps_are_local_time(codec: ModuleType) -> None:
    naive = datetime(2021, 6, 1, 12, 30, 15, 250000)
    decoded = codec.decode_packet(codec.encode_packet("PACK", 1, naive, b"", []))[2]
    assert decoded.timestamp() == naive.timestamp()


@CODECS
def test_packets_of_more_items_than_a_decoder_takes_raise_value_error(codec: ModuleType) -> None:
    limit = _wire.MAX_PACKET_ITEMS
    # At the limit: encoded, and decoded back.
    fields = [("FIEL", 1, [("P", 1)] * (limit - 2)), ("E", 2, [])]
    assert [
        len(params)
        for _, _, params in codec.decode_packet(codec.encode_packet("PACK", 1, TS, b"", fields))[4]
    ] == [
        limit - 2,
        0,
    ]
    # One more, as a param or as a field: refused, as the decoder would refuse it.
    for too_many in ([("FIEL", 1, [("P", 1)] * limit)], [("E", 2, [])] * (limit + 1)):
        with pytest.raises(ValueError, match=f"more than {limit} fields and params"):
            codec.encode_packet("PACK", 1, TS, b"", too_many)
        with pytest.raises(ValueError, match=f"more than {limit} fields and params"):
            codec.encode_packet_buffers("PACK", 1, TS, b"", too_many)
