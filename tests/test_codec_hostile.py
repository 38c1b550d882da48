"""
Hostile input to both decoders: whatever the bytes, decoding returns a packet (perhaps with a
DecodeWarning) or raises DecodeError. Never IndexError, struct.error, UnicodeDecodeError,
MemoryError, a hang or a crash.
"""

from __future__ import annotations

import array
import struct
import tracemalloc
import warnings
from types import ModuleType
from typing import Any

import pytest
from codec_modules import CODECS, TS, decode_hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import VECTORS, load

from ncplib import DecodeError, DecodeWarning, _wire
from ncplib._peer_warnings import MOST_REMEMBERED

REAL = [(VECTORS / name).read_bytes() for name in ("real-link-helo.bin", "real-stat-embedded-footer.bin")]
VECTOR_PACKETS = [bytes.fromhex(case["wire_hex"]) for case in load("packets.json")] + [
    bytes.fromhex(packet["wire_hex"]) for packet in load("handshake.json")
]
SAMPLES = REAL + VECTOR_PACKETS

FOOTER = _wire.PACKET_FOOTER


def with_size(packet: bytes | bytearray) -> bytes:
    """``packet`` with its header's size word made to match its length (a multiple of 4)."""
    fixed = bytearray(packet)
    struct.pack_into("<I", fixed, 8, len(fixed) // 4)
    return bytes(fixed)


def build(body: bytes, *, header: bytes | None = None) -> bytes:
    """A packet with a valid header and footer around ``body``."""
    start = header or b"\xdd\xcc\xbb\xaaPACK" + bytes(4) + struct.pack("<IIII", 1, 1, 0, 0) + bytes(4)
    return with_size(start + body + FOOTER)


def field(body: bytes, *, words: int | None = None, name: bytes = b"FIEL") -> bytes:
    return name + struct.pack("<II", (len(body) + 12) // 4 if words is None else words, 1) + body


def param(data: bytes, type_id: int = 0, *, words: int | None = None, name: bytes = b"PARA") -> bytes:
    size = (len(data) + 8) // 4 if words is None else words
    return name + struct.pack("<I", size | type_id << 24) + data


@CODECS
@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_truncation_at_every_offset(codec: ModuleType, sample: int) -> None:
    wire = SAMPLES[sample]
    for end in range(len(wire)):
        assert isinstance(decode_hostile(codec, wire[:end]), DecodeError)


@CODECS
@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_truncation_with_consistent_header_and_footer(codec: ModuleType, sample: int) -> None:
    # The outer checks pass, so every inner structure is cut short somewhere.
    wire = SAMPLES[sample]
    for end in range(32, len(wire) - 8, 4):
        decode_hostile(codec, with_size(wire[:end] + FOOTER))


@CODECS
@pytest.mark.parametrize("sample", range(len(REAL)))
def test_single_bit_flips_at_every_bit(codec: ModuleType, sample: int) -> None:
    wire = REAL[sample]
    for bit in range(len(wire) * 8):
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 1 << (bit % 8)
        decode_hostile(codec, bytes(flipped))


@CODECS
@pytest.mark.parametrize("words", [0, 1, 2, 0xFFFFFF, 0x7FFFFF, 1000])
def test_bad_field_sizes_raise_decode_error(codec: ModuleType, words: int) -> None:
    wire = build(field(param(b"\x01\x00\x00\x00"), words=words))
    with pytest.raises(DecodeError, match="Field"):
        codec.decode_packet(wire)


@CODECS
@pytest.mark.parametrize("words", [0, 1, 0xFFFFFF, 0x800000, 4])
def test_bad_param_sizes_raise_decode_error(codec: ModuleType, words: int) -> None:
    # A zero size must not make the decoder spin on the same param.
    wire = build(field(param(b"\x01\x00\x00\x00", words=words)))
    with pytest.raises(DecodeError, match="Param"):
        codec.decode_packet(wire)


@CODECS
@pytest.mark.parametrize("words", [0, 1, 9, 11, 0xFFFFFFFF, 0x40000000])
def test_packet_size_not_matching_raises_decode_error(codec: ModuleType, words: int) -> None:
    wire = bytearray(build(b""))
    struct.pack_into("<I", wire, 8, words)
    with pytest.raises(DecodeError, match="Packet"):
        codec.decode_packet(bytes(wire))


@CODECS
def test_param_header_cut_by_its_field_raises_decode_error(codec: ModuleType) -> None:
    wire = build(field(b"PARA"))
    with pytest.raises(DecodeError, match="Param header"):
        codec.decode_packet(wire)


@CODECS
def test_field_header_cut_by_the_footer_raises_decode_error(codec: ModuleType) -> None:
    wire = build(b"FIEL\x01\x00\x00\x00")
    with pytest.raises(DecodeError, match="Field header"):
        codec.decode_packet(wire)


@CODECS
@pytest.mark.parametrize("type_id", [0x00, 0x01, 0x03, 0x04, 0x10, 0x11])
def test_scalars_too_short_for_their_type_raise_decode_error(codec: ModuleType, type_id: int) -> None:
    wire = build(field(param(b"", type_id)))
    with pytest.raises(DecodeError, match="too short"):
        codec.decode_packet(wire)


@CODECS
@pytest.mark.parametrize("offset", [0, 4, 28, -4, -8])
def test_bad_magic_numbers_raise_decode_error(codec: ModuleType, offset: int) -> None:
    wire = bytearray(REAL[0])
    wire[offset] ^= 0xFF
    decode_hostile(codec, bytes(wire))
    if offset in (0, -4):
        with pytest.raises(DecodeError, match="magic"):
            codec.decode_packet(bytes(wire))


@CODECS
def test_nanoseconds_out_of_range_raise_decode_error(codec: ModuleType) -> None:
    wire = bytearray(build(b""))
    struct.pack_into("<I", wire, 24, 1_000_000_000)
    with pytest.raises(DecodeError, match="nanoseconds"):
        codec.decode_packet(bytes(wire))


KNOWN_TYPES = {0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x80, *_wire.DATA_TYPES}


@CODECS
@pytest.mark.parametrize("type_id", sorted(set(range(256)) - KNOWN_TYPES))
def test_unknown_type_ids_warn_and_keep_raw_bytes(codec: ModuleType, type_id: int) -> None:
    wire = build(field(param(b"abcdefgh", type_id) + param(b"\x05\x00\x00\x00", name=b"NEXT")))
    with pytest.warns(DecodeWarning, match=f"0x{type_id:02x}"):
        packet = codec.decode_packet(wire)
    assert packet[4][0][2] == [("PARA", b"abcdefgh"), ("NEXT", 5)]


@CODECS
def test_invalid_utf8_warns_and_is_replaced(codec: ModuleType) -> None:
    wire = build(field(param(b"ab\xff\xfecd\x00\x00", 0x02)))
    with pytest.warns(DecodeWarning, match="UTF-8"):
        packet = codec.decode_packet(wire)
    assert packet[4][0][2] == [("PARA", "ab\ufffd\ufffdcd")]


@CODECS
def test_string_without_nul_is_read_to_the_end(codec: ModuleType) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packet = codec.decode_packet(build(field(param(b"abcd", 0x02))))
    assert packet[4][0][2] == [("PARA", "abcd")]


@CODECS
@pytest.mark.parametrize("type_id", sorted(t for t, (_, _, size) in _wire.DATA_TYPES.items() if size == 8))
def test_partial_array_item_warns_and_is_dropped(codec: ModuleType, type_id: int) -> None:
    wire = build(field(param(bytes(range(1, 13)), type_id)))
    with pytest.warns(DecodeWarning, match="partial item"):
        packet = codec.decode_packet(wire)
    value = packet[4][0][2][0][1]
    assert isinstance(value, array.array)
    assert value.tobytes() == bytes(range(1, 9))


@CODECS
def test_embedded_footers_are_skipped_with_a_warning(codec: ModuleType) -> None:
    one, two = (
        param(b"\x01\x00\x00\x00", name=b"A\x00\x00\x00"),
        param(b"\x02\x00\x00\x00", name=b"B\x00\x00\x00"),
    )
    body = FOOTER + one + FOOTER + FOOTER + two
    with pytest.warns(DecodeWarning, match="embedded packet footer") as caught:
        packet = codec.decode_packet(build(field(body)))
    assert len(caught) == 3
    assert packet[4][0][2] == [("A", 1), ("B", 2)]


@CODECS
def test_field_of_only_an_embedded_footer(codec: ModuleType) -> None:
    with pytest.warns(DecodeWarning):
        packet = codec.decode_packet(build(field(FOOTER)))
    assert packet[4] == [("FIEL", 1, [])]


@CODECS
@pytest.mark.parametrize("name", [b"\x00\x00\x00\x00", b"    ", b"A\x00B\x00", b"\xff\xfe\x80 ", b"ab c"])
def test_any_identifier_bytes_decode(codec: ModuleType, name: bytes) -> None:
    packet = codec.decode_packet(build(field(param(b"\x01\x00\x00\x00", name=name), name=name)))
    expected = name.rstrip(b"\x00 ").decode("latin-1")
    assert packet[4] == [(expected, 1, [(expected, 1)])]


@CODECS
def test_non_buffers_raise_type_error(codec: ModuleType) -> None:
    for value in (None, "text", 12, [1, 2]):
        with pytest.raises(TypeError):
            codec.decode_packet(value)


@CODECS
def test_buffers_of_any_shape_and_stride_decode(codec: ModuleType) -> None:
    numpy = pytest.importorskip("numpy")
    wire = REAL[0]
    expected = codec.decode_packet(wire)
    doubled = numpy.frombuffer(bytes(b for byte in wire for b in (byte, 0)), dtype=numpy.uint8)
    for buf in (
        bytearray(wire),
        memoryview(wire),
        array.array("I", wire),
        numpy.frombuffer(wire, dtype="<u4").reshape(-1, 3),
        numpy.asfortranarray(numpy.frombuffer(wire, dtype=numpy.uint8).reshape(-1, 4)),
        doubled[::2],
        memoryview(doubled)[::2],
    ):
        assert codec.decode_packet(buf) == expected
        assert codec.decode_packet(buf, use_numpy=True) == expected


@CODECS
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_random_bytes(codec: ModuleType, data: bytes) -> None:
    decode_hostile(codec, data)


@CODECS
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(st.integers(0, 2**32 - 1), max_size=40), use_numpy=st.booleans())
def test_random_bodies_in_a_valid_frame(codec: ModuleType, body: list[int], use_numpy: bool) -> None:
    # Random words inside a correct header and footer reach the field and param parsers.
    decode_hostile(codec, build(struct.pack(f"<{len(body)}I", *body)), use_numpy)


small_words = st.one_of(st.integers(0, 8), st.just(0xFFFFFF), st.integers(0, 0xFFFFFF))


@st.composite
def plausible_packets(draw: Any) -> bytes:
    """Packets whose sizes are small and plausible, with random types and contents."""
    fields = []
    for _ in range(draw(st.integers(0, 3))):
        params = b""
        for _ in range(draw(st.integers(0, 4))):
            data = draw(st.binary(max_size=24))
            type_id = draw(st.sampled_from([*sorted(KNOWN_TYPES), 0x05, 0xFF]))
            words = draw(st.one_of(st.none(), small_words))
            params += draw(st.sampled_from([b"", FOOTER])) + param(data, type_id, words=words)
        words = draw(st.one_of(st.none(), st.none(), small_words))
        fields.append(field(params + bytes(-len(params) % 4), words=words))
    return build(b"".join(fields))


@CODECS
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire=plausible_packets(), use_numpy=st.booleans())
def test_plausible_packets(codec: ModuleType, wire: bytes, use_numpy: bool) -> None:
    decode_hostile(codec, wire, use_numpy)


@CODECS
def test_hostile_packets_decode_in_numpy_mode_too(codec: ModuleType) -> None:
    pytest.importorskip("numpy")
    for wire in SAMPLES:
        for end in range(32, len(wire) - 8, 4):
            decode_hostile(codec, with_size(wire[:end] + FOOTER), use_numpy=True)


@CODECS
def test_huge_declared_sizes_allocate_nothing(codec: ModuleType) -> None:
    # A data param claiming 64 MiB in a tiny packet must fail on the size, not allocate it.
    wire = build(field(param(bytes(8), 0x81, words=0xFFFFFF)))
    with pytest.raises(DecodeError):
        codec.decode_packet(wire)
    wire = build(field(param(bytes(8), 0x81), words=0xFFFFFF))
    with pytest.raises(DecodeError):
        codec.decode_packet(wire)


LIMIT = _wire.MAX_PACKET_ITEMS
EMPTY_FIELD = field(b"", name=b"E\x00\x00\x00")
I32_PARAM = param(b"\x01\x00\x00\x00", name=b"P\x00\x00\x00")


@CODECS
def test_packets_of_at_most_the_item_limit_decode(codec: ModuleType) -> None:
    # Fields and params count alike: one field of LIMIT - 2 params and one empty field is LIMIT.
    packet = codec.decode_packet(build(field(I32_PARAM * (LIMIT - 2)) + EMPTY_FIELD))
    assert [len(params) for _name, _id, params in packet[4]] == [LIMIT - 2, 0]
    assert codec.decode_packet(build(EMPTY_FIELD * LIMIT))[4][-1] == ("E", 1, [])


@CODECS
@pytest.mark.parametrize(
    ("body", "at"),
    [
        # The first item past the limit is a field...
        (EMPTY_FIELD * (LIMIT + 1), LIMIT * 12),
        # ... or a param...
        (field(I32_PARAM * LIMIT), 12 + (LIMIT - 1) * 12),
        # ... or an embedded footer, which counts as an item too.
        (field(I32_PARAM * (LIMIT - 1) + FOOTER), 12 + (LIMIT - 1) * 12),
    ],
    ids=["fields", "params", "footers"],
)
def test_packets_past_the_item_limit_raise_decode_error(codec: ModuleType, body: bytes, at: int) -> None:
    # Decoded, each item takes hundreds of bytes whatever its size on the wire: the limit bounds
    # what one packet of the largest size can take, where a million tiny fields took 280 MiB.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecodeWarning)
        with pytest.raises(DecodeError, match=f"more than {LIMIT} fields and params") as caught:
            codec.decode_packet(build(body))
    assert f"at byte {_wire.PACKET_HEADER_SIZE + at})" in str(caught.value)


@CODECS
def test_a_malformed_item_past_the_limit_is_reported_as_malformed(codec: ModuleType) -> None:
    # What follows the last item allowed is checked as an item first: 4 stray bytes are a field
    # header cut short, not a field too many.
    with pytest.raises(DecodeError, match=r"Field header at byte .* overruns the packet"):
        codec.decode_packet(build(EMPTY_FIELD * LIMIT + bytes(4)))


@CODECS
def test_huge_packets_of_tiny_fields_are_refused_early(codec: ModuleType) -> None:
    # A million empty fields, 12 MB: refused once past the limit, the rest never decoded.
    wire = build(EMPTY_FIELD * 1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            codec.decode_packet(wire)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # Without the limit: about 280 MiB.


@CODECS
def test_warnings_with_ever_new_text_do_not_grow_memory(codec: ModuleType) -> None:
    # Each unknown param name makes a new warning text; Python's registry of warnings shown
    # (here this module's, where the warnings point) would keep them all.
    names = [b"%04d" % number for number in range(3 * MOST_REMEMBERED)]
    wire = build(field(b"".join(param(bytes(4), 0x7F, name=name) for name in names)))
    globals().pop("__warningregistry__", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        codec.decode_packet(wire)
        registry = globals().get("__warningregistry__", {})
    assert len(caught) == len(names)  # every one is shown
    assert 0 < len(registry) <= MOST_REMEMBERED + 2  # the version key, and the last warning


def test_helper_builds_valid_packets() -> None:
    from codec_modules import pure

    wire = build(field(param(b"\x07\x00\x00\x00")))
    epoch = TS.replace(year=1970, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    assert pure.encode_packet("PACK", 1, epoch, b"", [("FIEL", 1, [("PARA", 7)])]) == wire
