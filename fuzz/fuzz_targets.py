"""
atheris fuzz targets for ncplib's packet decoding.

Usage: ``python fuzz/fuzz_targets.py TARGET [libFuzzer options] [corpus directories or files]``,
usually through ``fuzz/run.py``. Given files instead of directories, it runs just those inputs
(to reproduce a crash). TARGET is one of:

- ``decode_pure``: the pure-Python codec decodes the input as one packet;
- ``decode_compiled``: the same with the compiled codec (exit code 3 when it is not built);
- ``framer``: :class:`ncplib.framing.PacketReader` reads the input as a stream of packets,
  delivered in chunks whose sizes come from the input's first bytes;
- ``differential``: both codecs decode the input and must agree (exit code 3 without the
  compiled codec).

What counts as a crash: any exception but :exc:`ncplib.DecodeError` (a warning other than
:exc:`ncplib.DecodeWarning` is raised as an exception too), a decoded packet of the wrong shape,
a decoded packet that does not survive encoding and decoding again, and for the framer packets
other than those found by splitting the stream by hand.
"""

from __future__ import annotations

import array
import math
import sys
import warnings
from datetime import datetime
from typing import Any

import atheris

try:
    import numpy
except ImportError:  # numpy mode is then left out
    numpy = None

with atheris.instrument_imports(include=["ncplib"]):
    from ncplib import _pycodec, _wire, framing, packets
    from ncplib.errors import DecodeError, DecodeWarning

    try:
        from ncplib import _codec  # type: ignore[attr-defined]
    except ImportError:
        _codec = None

#: Exit code of a target that cannot run here (the compiled codec is not built).
UNAVAILABLE = 3
#: The framer target takes its settings from this many leading bytes; the rest is the stream.
FRAMER_CONTROL_SIZE = 16

_DEFAULT_OWN_BUFFER_SIZE = framing._OWN_BUFFER_SIZE
_DEFAULT_SHARED_BUFFER_SIZE = framing._SHARED_BUFFER_SIZE
_SCALAR_TYPES = (int, float, str, bytes)


# Checks shared by the targets.


def repaired(data: bytes) -> bytes | None:
    """
    The input made into a packet that passes the outer checks, or None if it is too short.

    Random bytes almost never have matching magic numbers and size; this lets the fuzzer reach
    the field and param parsing with every input.
    """
    size = len(data) - len(data) % 4
    if size < _wire.MIN_PACKET_SIZE:
        return None
    buf = bytearray(data[:size])
    buf[0:4] = _wire.PACKET_HEADER_MAGIC
    buf[8:12] = (size // 4).to_bytes(4, "little")
    nanos = int.from_bytes(buf[24:28], "little") % 1_000_000_000
    buf[24:28] = nanos.to_bytes(4, "little")
    buf[size - 4 : size] = _wire.PACKET_FOOTER_MAGIC
    return bytes(buf)


def other_buffer(data: bytes) -> Any:
    """
    The same bytes in another kind of buffer: a bytearray, or a memoryview that starts at an odd
    address (so no multi-byte item in it is aligned), chosen by the data.
    """
    if data[-5] & 1:
        return memoryview(bytearray(b"\x00" + data))[1:]
    return bytearray(data)


@atheris.instrument_func
def decode_checked(decode: Any, buf: Any, use_numpy: bool) -> tuple[Any, list[str], str | None]:
    """
    Decodes, allowing DecodeError and DecodeWarning only.

    Returns the packet (None after a DecodeError), the warnings' messages, and the DecodeError's
    message (or None).
    """
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            packet = decode(buf, use_numpy)
        except DecodeError as ex:
            packet = None
            error = str(ex)
    for warning in caught:
        if not issubclass(warning.category, DecodeWarning):
            raise AssertionError(f"unexpected {warning.category.__name__}: {warning.message}")
    if packet is not None:
        check_shape(packet, use_numpy)
    return packet, [str(warning.message) for warning in caught], error


@atheris.instrument_func
def check_shape(packet: Any, use_numpy: bool) -> None:
    """Asserts that a decoded packet has the documented shape and value types."""
    assert type(packet) is tuple and len(packet) == 5, packet
    packet_type, packet_id, timestamp, info, fields = packet
    assert type(packet_type) is str and type(packet_id) is int and 0 <= packet_id <= 0xFFFFFFFF
    assert isinstance(timestamp, datetime) and timestamp.tzinfo is not None
    assert type(info) is bytes and len(info) == 4
    assert type(fields) is list
    for field in fields:
        assert type(field) is tuple and len(field) == 3
        name, field_id, params = field
        assert type(name) is str and type(field_id) is int and type(params) is list
        for param in params:
            assert type(param) is tuple and len(param) == 2 and type(param[0]) is str
            value = param[1]
            if use_numpy and numpy is not None and isinstance(value, numpy.ndarray):
                assert value.ndim == 1 and not value.flags.writeable, "numpy values must be read-only"
            else:
                assert isinstance(value, (*_SCALAR_TYPES, array.array)), type(value)


@atheris.instrument_func
def plain(value: Any) -> Any:
    """A comparable form of a value: exact type included, NaN equal to NaN, arrays by content."""
    if isinstance(value, array.array):
        return ("array", value.typecode, value.tobytes())
    if numpy is not None and isinstance(value, numpy.ndarray):
        return ("ndarray", value.dtype.str, value.tobytes())
    if isinstance(value, float) and math.isnan(value):
        return (type(value), "nan")
    return (type(value), value)


@atheris.instrument_func
def loose(value: Any) -> Any:
    """Like :func:`plain`, but an array and a numpy array of the same data type compare equal."""
    if isinstance(value, array.array):
        code = value.typecode
        kind = "f" if code in "fd" else ("i" if code.islower() else "u")
        return ("data", kind, value.itemsize, value.tobytes())
    if numpy is not None and isinstance(value, numpy.ndarray):
        return ("data", value.dtype.kind, value.dtype.itemsize, value.tobytes())
    return plain(value)


def packet_form(packet: Any, form: Any = plain) -> Any:
    """A comparable form of a decoded packet."""
    packet_type, packet_id, timestamp, info, fields = packet
    return (
        packet_type,
        packet_id,
        timestamp,
        info,
        [(name, fid, [(p, form(v)) for p, v in params]) for name, fid, params in fields],
    )


def _encodable(packet: Any) -> bool:
    names = [packet[0]]
    for name, _fid, params in packet[4]:
        names.append(name)
        names.extend(p for p, _v in params)
    return all(_wire.IDENTIFIER_RE.match(n) for n in names)


def check_roundtrip(encode: Any, decode: Any, packet: Any) -> None:
    """
    Asserts that a decoded packet encodes, and decodes again to an equal packet.

    Packets whose identifiers the encoder rightly refuses (lowercase, punctuation: possible on
    the wire, not valid to send) are left out.
    """
    if not _encodable(packet):
        return
    wire = encode(*packet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = decode(wire, False)
    assert packet_form(again, loose) == packet_form(packet, loose), (packet, again)


# Targets.


def _decode_target(codec: Any, data: bytes) -> None:
    packet, _, _ = decode_checked(codec.decode_packet, data, False)
    if packet is not None:
        check_roundtrip(codec.encode_packet, codec.decode_packet, packet)
    fixed = repaired(data)
    if fixed is None:
        return
    packet, _, _ = decode_checked(codec.decode_packet, fixed, False)
    if packet is not None:
        check_roundtrip(codec.encode_packet, codec.decode_packet, packet)
    if numpy is not None:
        packet, _, _ = decode_checked(codec.decode_packet, other_buffer(fixed), True)
        if packet is not None:
            check_roundtrip(codec.encode_packet, codec.decode_packet, packet)


def decode_pure(data: bytes) -> None:
    """The pure-Python codec decodes anything without crashing; what it decodes round-trips."""
    _decode_target(_pycodec, data)


def decode_compiled(data: bytes) -> None:
    """The compiled codec decodes anything without crashing; what it decodes round-trips."""
    _decode_target(_codec, data)


def _encode_outcome(encode: Any, packet: Any) -> Any:
    try:
        return encode(*packet)
    except (ValueError, TypeError) as ex:
        return (type(ex), str(ex))


def differential(data: bytes) -> None:
    """
    Both codecs decode to the same packet with the same warnings, or raise the same DecodeError
    (messages included), and encode it to the same bytes or refuse it with the same exception.
    """
    fixed = repaired(data)
    inputs: list[tuple[Any, bool]] = [(data, False)]
    if fixed is not None:
        inputs += [(fixed, False), (other_buffer(fixed), True)]
    for buf, use_numpy in inputs:
        if use_numpy and numpy is None:
            continue
        pure, pure_warnings, pure_error = decode_checked(_pycodec.decode_packet, buf, use_numpy)
        compiled, compiled_warnings, compiled_error = decode_checked(_codec.decode_packet, buf, use_numpy)
        assert pure_error == compiled_error, ("DecodeError differs", pure_error, compiled_error)
        assert pure_warnings == compiled_warnings, (pure_warnings, compiled_warnings)
        if pure is None:
            continue
        assert packet_form(pure) == packet_form(compiled), (pure, compiled)
        # And they encode what they decoded to the same bytes (or refuse it alike).
        assert _encode_outcome(_pycodec.encode_packet, pure) == _encode_outcome(_codec.encode_packet, pure)


def _split_stream(stream: bytes, max_packet_size: int) -> tuple[list[bytes], bool]:
    """Splits a stream into packets by hand: (the complete packets, whether framing breaks)."""
    out = []
    pos = 0
    while len(stream) - pos >= _wire.PACKET_HEADER_SIZE:
        if stream[pos : pos + 4] != _wire.PACKET_HEADER_MAGIC:
            return out, True
        size = int.from_bytes(stream[pos + 8 : pos + 12], "little") * 4
        if size < _wire.MIN_PACKET_SIZE or size > max_packet_size:
            return out, True
        if pos + size > len(stream):
            break
        out.append(stream[pos : pos + size])
        pos += size
    return out, False


def framer(data: bytes) -> None:
    """
    PacketReader, fed the stream in chunks, returns exactly the packets found by splitting the
    stream by hand, raises DecodeError where those do not decode, and stays failed afterwards.
    """
    control = atheris.FuzzedDataProvider(data[:FRAMER_CONTROL_SIZE])
    stream = data[FRAMER_CONTROL_SIZE:]
    flags = control.ConsumeIntInRange(0, 255)
    chunk_sizes = [control.ConsumeIntInRange(1, 4096) for _ in range(7)]
    use_numpy = bool(flags & 1) and numpy is not None
    receive_into = bool(flags & 2)
    read_each_chunk = not flags & 8
    max_packet_size = 256 if flags & 16 else framing.DEFAULT_MAX_PACKET_SIZE
    # Small buffers reach the large-packet and buffer-growth paths with small inputs.
    framing._OWN_BUFFER_SIZE = 64 if flags & 4 else _DEFAULT_OWN_BUFFER_SIZE
    framing._SHARED_BUFFER_SIZE = 8192 if flags & 4 else _DEFAULT_SHARED_BUFFER_SIZE
    framing._apply_buffer_sizes()

    reader = framing.PacketReader(max_packet_size=max_packet_size, use_numpy=use_numpy)
    received: list[Any] = []
    failed = False
    pos = 0
    index = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", DecodeWarning)
        try:
            while pos < len(stream):
                chunk = memoryview(stream)[pos : pos + chunk_sizes[index % len(chunk_sizes)]]
                pos += len(chunk)
                index += 1
                if receive_into:
                    while chunk:
                        buf = reader.get_buffer(len(chunk))
                        n = min(len(buf), len(chunk))
                        assert n > 0, "get_buffer returned no room"
                        buf[:n] = chunk[:n]
                        reader.buffer_updated(n)
                        chunk = chunk[n:]
                else:
                    reader.feed(chunk)
                assert reader.bytes_needed >= 1
                if read_each_chunk:
                    received.extend(reader.read_packets())
            received.extend(reader.read_packets())
        except DecodeError:
            failed = True

        # What a hand split of the stream says should have happened.
        slices, broken = _split_stream(stream, max_packet_size)
        expected = []
        for piece in slices:
            try:
                expected.append(packets.decode_packet(piece, use_numpy))
            except DecodeError:
                broken = True
                break
    assert failed == broken, f"reader {'raised' if failed else 'did not raise'} DecodeError"
    got = [packet_form(p) for p in received]
    want = [packet_form(p) for p in expected]
    if failed:
        # Packets completed before the error may be lost with it, but none may be invented.
        assert got == want[: len(got)], "reader returned packets not in the stream"
        for again in (reader.read_packets, lambda: reader.feed(b"\x00"), reader.get_buffer):
            try:
                again()
            except DecodeError:
                continue
            raise AssertionError("reader went on after a DecodeError")
    else:
        assert got == want, "reader returned other packets than the stream holds"
        consumed = sum(len(piece) for piece in slices)
        assert reader.buffered == len(stream) - consumed, (reader.buffered, len(stream), consumed)
    for packet in received:
        check_shape(packet, use_numpy)
        check_roundtrip(packets.encode_packet, packets.decode_packet, packet)


TARGETS = {
    "decode_pure": decode_pure,
    "decode_compiled": decode_compiled,
    "framer": framer,
    "differential": differential,
}
NEEDS_COMPILED = {"decode_compiled", "differential"}


def main(argv: list[str]) -> int:
    """Runs one target under libFuzzer; see the module docstring."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus...]", file=sys.stderr)
        return 2
    name = argv.pop(1)
    if name in NEEDS_COMPILED and _codec is None:
        print(f"{name}: the compiled codec ncplib._codec is not built", file=sys.stderr)
        return UNAVAILABLE
    atheris.Setup(argv, TARGETS[name])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
