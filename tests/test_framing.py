"""PacketReader: splitting a byte stream into packets, size limits, errors and zero-copy receives."""

from __future__ import annotations

import array
import random
import struct
import tracemalloc
from typing import Any

import pytest
from codec_modules import TS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncplib import DecodeError, _wire
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE, PacketReader
from ncplib.packets import encode_packet


def packet(n: int, size: int = 0) -> tuple[Any, ...]:
    """Packet number ``n``, with about ``size`` bytes of i16 data."""
    params: list[tuple[str, Any]] = [("N", n)]
    if size:
        params.append(("DIQT", array.array("h", [n % 1000] * (size // 2))))
    return ("DSPC", n, TS, b"", [("TIME", n, params)])


def wire_of(n: int, size: int = 0) -> bytes:
    return encode_packet(*packet(n, size))


def numbers(packets: list[Any]) -> list[int]:
    return [p[1] for p in packets]


def header(size: int, magic: bytes = _wire.PACKET_HEADER_MAGIC) -> bytes:
    return magic + b"PACK" + struct.pack("<IIIII", size // 4, 1, 1, 0, 0) + bytes(4)


def test_several_small_packets_from_one_feed() -> None:
    reader = PacketReader()
    reader.feed(b"".join(wire_of(n) for n in range(10)))
    assert reader.buffered == 10 * len(wire_of(0))
    packets = reader.read_packets()
    assert numbers(packets) == list(range(10))
    assert packets[3][4] == [("TIME", 3, [("N", 3)])]
    assert reader.buffered == 0
    assert reader.read_packets() == []


def test_packets_are_decoded_like_decode_packet() -> None:
    reader = PacketReader()
    reader.feed(wire_of(5, 300))
    (decoded,) = reader.read_packets()
    assert decoded[4][0][2][1] == ("DIQT", array.array("h", [5] * 150))


def test_iteration_and_next_packet() -> None:
    reader = PacketReader()
    wire = wire_of(1) + wire_of(2)
    reader.feed(wire[:-3])
    assert numbers(list(reader)) == [1]
    assert reader.next_packet() is None
    reader.feed(wire[-3:])
    packet_2 = reader.next_packet()
    assert packet_2 is not None
    assert packet_2[1] == 2
    assert reader.next_packet() is None


SIZES = [0, 0, 10, 1000, 70_000, 200_000, 1_100_000]


def stream(rng: random.Random, count: int) -> tuple[bytes, list[int]]:
    ns = list(range(count))
    return b"".join(wire_of(n, rng.choice(SIZES)) for n in ns), ns


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 3, 31, 32, 33, 100, 4096, 65536, 300_000, 2_000_000])
        out.append(data[pos : pos + size])
        pos += size
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_numpy", [False, True])
def test_random_chunkings_via_feed(seed: int, use_numpy: bool) -> None:
    if use_numpy:
        pytest.importorskip("numpy")
    rng = random.Random(seed)
    data, expected = stream(rng, 12)
    reader = PacketReader(use_numpy=use_numpy)
    received = []
    for chunk in chunks(rng, data):
        reader.feed(chunk)
        if rng.random() < 0.5:
            received += reader.read_packets()
    received += reader.read_packets()
    assert numbers(received) == expected
    assert reader.buffered == 0
    assert reader.bytes_needed == _wire.PACKET_HEADER_SIZE


@pytest.mark.parametrize("seed", range(6))
def test_random_chunkings_via_get_buffer(seed: int) -> None:
    rng = random.Random(seed)
    data, expected = stream(rng, 12)
    reader = PacketReader()
    received = []
    pos = 0
    while pos < len(data):
        buf = reader.get_buffer(rng.choice([-1, 1, 65536]))
        assert len(buf) > 0
        n = min(len(buf), len(data) - pos, rng.choice([1, 7, 40, 5000, 100_000, 10**7]))
        buf[:n] = data[pos : pos + n]
        del buf
        reader.buffer_updated(n)
        pos += n
        if rng.random() < 0.3:
            received += reader.read_packets()
    received += reader.read_packets()
    assert numbers(received) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.sampled_from([0, 4, 100, 70_000]), min_size=1, max_size=6),
    cuts=st.lists(st.integers(1, 80_000), max_size=30),
)
def test_any_chunking_yields_the_same_packets(sizes: list[int], cuts: list[int]) -> None:
    data = b"".join(wire_of(n, size) for n, size in enumerate(sizes))
    reader = PacketReader()
    received = []
    pos = 0
    for cut in [*cuts, len(data)]:
        reader.feed(data[pos : pos + cut])
        pos += cut
        received += reader.read_packets()
    reader.feed(data[pos:])
    received += reader.read_packets()
    assert numbers(received) == list(range(len(sizes)))


def test_bytes_needed_counts_down_to_each_packet() -> None:
    small, large = wire_of(1), wire_of(2, 100_000)
    reader = PacketReader()
    assert reader.bytes_needed == 32
    reader.feed(small[:10])
    assert reader.bytes_needed == 22
    reader.feed(small[10:32])
    assert reader.bytes_needed == len(small) - 32
    reader.feed(small[32:-1])
    assert reader.bytes_needed == 1
    reader.feed(small[-1:] + large[:40])
    assert reader.bytes_needed >= 1  # a complete packet waits: more bytes are still welcome
    assert numbers(reader.read_packets()) == [1]
    assert reader.bytes_needed == len(large) - 40
    reader.feed(large[40:-5])
    assert reader.bytes_needed == 5
    assert reader.buffered == len(large) - 5


def test_receiving_exactly_bytes_needed_never_overshoots() -> None:
    data = b"".join(wire_of(n, size) for n, size in enumerate([0, 70_000, 10, 300_000, 0]))
    reader = PacketReader()
    received, pos = [], 0
    while pos < len(data):
        n = min(reader.bytes_needed, len(data) - pos)
        buf = reader.get_buffer(n)
        assert len(buf) >= n
        buf[:n] = data[pos : pos + n]
        del buf
        reader.buffer_updated(n)
        pos += n
        received += reader.read_packets()
    assert numbers(received) == [0, 1, 2, 3, 4]


def test_header_over_the_maximum_fails_from_the_header_alone() -> None:
    reader = PacketReader(max_packet_size=100_000)
    with pytest.raises(DecodeError, match="exceeds the maximum"):
        reader.feed(header(100_004))


def test_header_claiming_4_gib_allocates_nothing_large() -> None:
    reader = PacketReader()
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="exceeds the maximum"):
            reader.feed(header(2**32 - 4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_large_allowed_header_sets_aside_memory_only_as_bytes_arrive() -> None:
    reader = PacketReader(max_packet_size=2**34)
    tracemalloc.start()
    try:
        reader.feed(header(2**32 - 4) + bytes(100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert reader.bytes_needed == 2**32 - 4 - 132


@pytest.mark.parametrize("size", [0, 4, 32, 36])
def test_header_smaller_than_a_packet_fails(size: int) -> None:
    reader = PacketReader()
    with pytest.raises(DecodeError, match="less than a header and footer"):
        reader.feed(header(size))


def test_bad_magic_fails() -> None:
    reader = PacketReader()
    with pytest.raises(DecodeError, match="magic"):
        reader.feed(header(40, magic=b"HTTP") + bytes(8))


def test_the_error_is_sticky() -> None:
    reader = PacketReader()
    with pytest.raises(DecodeError) as first:
        reader.feed(header(8))
    for call in (
        lambda: reader.feed(wire_of(1)),
        reader.next_packet,
        reader.read_packets,
        lambda: reader.get_buffer(100),
        lambda: reader.buffer_updated(0),
    ):
        with pytest.raises(DecodeError) as again:
            call()
        assert again.value is first.value


def test_malformed_packet_body_fails_and_sticks() -> None:
    wire = bytearray(wire_of(1))
    wire[-1] ^= 0xFF  # footer magic
    reader = PacketReader()
    reader.feed(bytes(wire) + wire_of(2))
    with pytest.raises(DecodeError, match="footer"):
        reader.read_packets()
    with pytest.raises(DecodeError, match="footer"):
        reader.next_packet()


def test_bad_header_behind_complete_packets_is_raised_after_them() -> None:
    reader = PacketReader(max_packet_size=100_000)
    reader.feed(wire_of(1) + wire_of(2) + header(1_000_000))
    # Nothing from the bad header on is kept, however much more arrives.
    for _ in range(10):
        reader.feed(bytes(100_000))
    assert reader.buffered == len(wire_of(1)) * 2
    assert numbers([reader.next_packet(), reader.next_packet()]) == [1, 2]
    with pytest.raises(DecodeError, match="exceeds the maximum"):
        reader.next_packet()
    with pytest.raises(DecodeError, match="exceeds the maximum"):
        reader.feed(wire_of(3))


def test_max_packet_size_must_hold_a_packet() -> None:
    with pytest.raises(ValueError, match="max_packet_size"):
        PacketReader(max_packet_size=39)
    reader = PacketReader(max_packet_size=40)
    reader.feed(encode_packet("LINK", 0, TS, b"", []))
    assert len(reader.read_packets()) == 1


def test_default_maximum_is_64_mib() -> None:
    assert PacketReader().max_packet_size == DEFAULT_MAX_PACKET_SIZE == 64 * 2**20


def test_numpy_mode_large_packet_shares_memory_with_the_receive_buffer() -> None:
    numpy = pytest.importorskip("numpy")
    data = numpy.arange(2**20, dtype=numpy.int16)  # 2 MiB
    wire = encode_packet("DSPC", 1, TS, b"", [("TIME", 1, [("DIQT", data)])])
    reader = PacketReader(use_numpy=True)
    pos, last = 0, None
    while pos < len(wire):
        buf = reader.get_buffer(-1)
        n = min(len(buf), len(wire) - pos, 100_000)
        buf[:n] = wire[pos : pos + n]
        last = buf.obj
        del buf
        reader.buffer_updated(n)
        pos += n
    (decoded,) = reader.read_packets()
    value = decoded[4][0][2][0][1]
    assert numpy.array_equal(value, data)
    assert not value.flags.writeable
    assert numpy.shares_memory(value, numpy.frombuffer(last, dtype=numpy.uint8))


def test_numpy_mode_small_packets_do_not_alias_the_shared_buffer() -> None:
    numpy = pytest.importorskip("numpy")
    reader = PacketReader(use_numpy=True)
    reader.feed(wire_of(1, 100))
    (first,) = reader.read_packets()
    for n in range(2, 200):
        reader.feed(wire_of(n, 100))
        reader.read_packets()
    value = first[4][0][2][1][1]
    assert isinstance(value, numpy.ndarray)
    assert value.tolist() == [1] * 50


def test_feed_accepts_any_bytes_like() -> None:
    wire = wire_of(1) + wire_of(2)
    for data in (wire, bytearray(wire), memoryview(wire), array.array("I", wire)):
        reader = PacketReader()
        reader.feed(data)
        assert numbers(reader.read_packets()) == [1, 2]
