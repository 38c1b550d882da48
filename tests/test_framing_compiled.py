"""
The compiled packet reader (in the compiled codec) against the pure-Python one, its specification:
for any stream and any way of receiving it, the same packets, errors, counts and buffer sizes.
"""

from __future__ import annotations

import array
import struct
import warnings
from typing import Any

import pytest
from codec_modules import TS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncplib import DecodeError, _wire, framing
from ncplib.codec import implementation
from ncplib.packets import encode_packet

pytestmark = pytest.mark.skipif(implementation() != "compiled", reason="the compiled codec is not in use")


def _wire_packet(n: int, size: int) -> bytes:
    params: list[tuple[str, Any]] = [("N", n)]
    if size:
        params.append(("DIQT", array.array("h", [n] * (size // 2))))
    return encode_packet("DSPC", n, TS, b"", [("TIME", n, params)])


def _bad_header(kind: int) -> bytes:
    if kind == 0:
        return b"GET / HTTP/1.1\r\n\r\n" + bytes(20)
    size = 16 if kind == 1 else 1 << 30
    return _wire.PACKET_HEADER_MAGIC + b"PACK" + struct.pack("<IIIII", size // 4, 1, 1, 0, 0) + bytes(4)


def _state(reader: Any) -> tuple[Any, ...]:
    return (reader.complete, reader.buffered, reader.bytes_needed, len(reader._buf), reader._own is None)


def _run(reader_class: type, stream: bytes, cuts: list[int], use_numpy: bool, max_size: int) -> list[Any]:
    """Receives ``stream`` in pieces, reading after each; what happened, step by step."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = _receive(reader_class(max_packet_size=max_size, use_numpy=use_numpy), stream, cuts)
    return [*trace, [str(warning.message) for warning in caught]]


def _receive(reader: Any, stream: bytes, cuts: list[int]) -> list[Any]:
    trace: list[Any] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        piece = stream[pos : pos + max(cut, 1)]
        pos += len(piece)
        try:
            while piece:
                buf = reader.get_buffer(len(piece))
                n = min(len(buf), len(piece))
                buf[:n] = piece[:n]
                trace.append(("updated", reader.buffer_updated(n), _state(reader)))
                piece = piece[n:]
            while (packet := reader.next_packet()) is not None:
                packet_type, packet_id, timestamp, info, fields = packet
                values = [(name, fid, [(k, v.tolist() if hasattr(v, "tolist") else v) for k, v in params])
                          for name, fid, params in fields]  # fmt: skip
                # repr: a damaged param may decode as a float NaN, never equal to itself.
                trace.append(
                    ("packet", packet_type, packet_id, timestamp, info, repr(values), _state(reader))
                )
            trace.append(("caught up", _state(reader)))
        except (DecodeError, ValueError) as ex:
            trace.append(("error", type(ex).__name__, str(ex)))
            if isinstance(ex, DecodeError):
                with pytest.raises(DecodeError):
                    reader.next_packet()
            break
        if pos >= len(stream):
            break
    return trace


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.sampled_from([0, 40, 300, 5000, 20000, 70000, 200000]), min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 90000), max_size=12),
    bad=st.one_of(st.none(), st.integers(0, 2)),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), max_size=3),
    tail=st.binary(max_size=64),
    use_numpy=st.booleans(),
    small_limit=st.booleans(),
)
def test_the_compiled_reader_does_what_the_pure_one_does(
    sizes: list[int],
    cuts: list[int],
    bad: int | None,
    flips: list[tuple[int, int]],
    tail: bytes,
    use_numpy: bool,
    small_limit: bool,
) -> None:
    data = bytearray(b"".join(_wire_packet(n, size) for n, size in enumerate(sizes)))
    # Damage: bytes changed anywhere (headers, sizes, params, footers), then a bad header or noise.
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    stream = bytes(data) + (_bad_header(bad) if bad is not None else b"") + tail
    max_size = 100_000 if small_limit else framing.DEFAULT_MAX_PACKET_SIZE
    compiled = _run(framing.PacketReader, stream, cuts, use_numpy, max_size)
    pure = _run(framing._PurePacketReader, stream, cuts, use_numpy, max_size)
    assert compiled == pure


@pytest.mark.parametrize("reader_class", [framing.PacketReader, framing._PurePacketReader])
def test_more_bytes_than_the_room_offered_is_refused(reader_class: type) -> None:
    reader = reader_class()
    room = len(reader.get_buffer())
    with pytest.raises(ValueError, match="more than the room"):
        reader.buffer_updated(room + 1)
    with pytest.raises(ValueError, match="more than the room"):
        reader.buffer_updated(-1)
    assert reader.buffered == 0
