"""
Regressions for what the hostile-peer tests and the long fuzzing runs found, pinned down at the
lowest level that shows them (the framer, without sockets).

- A header alone must not make the framer set aside the size it claims: a large packet's own
  buffer starts small and grows as its bytes arrive (found by a peer sending a 64-byte start of
  a 64 MiB packet). The growth path is only reached by large packets, which the fuzz targets'
  small inputs never build, so it is checked here with a tiny starting size, for every way of
  feeding the reader.

The fuzz runs of every target (decode_pure, decode_compiled, framer, differential; 10 minutes
each) found no crash and no hang; any they find later gets its input pinned here.
"""

from __future__ import annotations

import array
import random
from datetime import datetime, timezone

import pytest

from ncplib import DecodeError, framing
from ncplib.packets import decode_packet, encode_packet


def _stream(seed: int) -> tuple[bytes, list[bytes]]:
    rng = random.Random(seed)
    packets = []
    for i in range(8):
        size = rng.choice([0, 3, 200, 5000, 70_000, 300_000])
        data = array.array("B", rng.randbytes(size))
        packets.append(
            encode_packet("DSPC", 1, datetime.now(timezone.utc), b"", [("F", i, [("D", data), ("N", i)])])
        )
    return b"".join(packets), packets


@pytest.mark.parametrize("start", [8, 100, 4096, 1024 * 1024])
@pytest.mark.parametrize("how", ["feed", "get_buffer"])
@pytest.mark.parametrize("seed", range(3))
def test_large_packets_arrive_whole_through_a_growing_buffer(
    monkeypatch: pytest.MonkeyPatch, start: int, how: str, seed: int
) -> None:
    monkeypatch.setattr(framing, "_OWN_BUFFER_START", start)
    stream, packets = _stream(seed)
    rng = random.Random(seed)
    reader = framing.PacketReader()
    got = []
    at = 0
    while at < len(stream):
        n = rng.choice([1, 13, 4096, 65536, 1 << 20])
        if how == "feed":
            reader.feed(stream[at : at + n])
            at += n
        else:
            buf = reader.get_buffer()
            n = min(n, len(buf), len(stream) - at)
            buf[:n] = stream[at : at + n]
            reader.buffer_updated(n)
            at += n
        assert reader.buffered <= len(stream) - sum(map(len, packets[: len(got)]))
        got += reader.read_packets()
    assert [p[4] for p in got] == [decode_packet(p)[4] for p in packets]
    assert reader.buffered == 0
    assert reader.bytes_needed == framing.w.PACKET_HEADER_SIZE


@pytest.mark.parametrize("how", ["feed", "get_buffer"])
def test_a_header_claim_sets_aside_only_a_small_start(how: str) -> None:
    claimed = framing.DEFAULT_MAX_PACKET_SIZE - 64
    header = bytearray(
        encode_packet("DSPC", 1, datetime.now(timezone.utc), b"", [("F", 1, [("D", b"x" * 100)])])[:64]
    )
    header[8:12] = (claimed // 4).to_bytes(4, "little")
    reader = framing.PacketReader()
    if how == "feed":
        reader.feed(header)
    else:
        buf = reader.get_buffer()
        buf[: len(header)] = header
        reader.buffer_updated(len(header))
    assert reader.next_packet() is None
    assert reader.bytes_needed == claimed - len(header)
    # The room offered for the next bytes (and all memory held) is the small start, not 64 MiB.
    assert len(reader.get_buffer()) <= framing._OWN_BUFFER_START
    assert reader.buffered == len(header)


def test_a_header_over_the_maximum_is_refused_before_any_buffer() -> None:
    header = bytearray(encode_packet("DSPC", 1, datetime.now(timezone.utc), b"", [])[:32])
    header[8:12] = (2**30).to_bytes(4, "little")
    reader = framing.PacketReader()
    with pytest.raises(DecodeError, match="exceeds the maximum"):
        reader.feed(header)
    assert reader._own is None
