"""
NCP packet encoding and decoding
================================

Low-level functions that turn one NCP packet into bytes and back. Most users never call them:
:class:`~ncplib.Connection` does. They are useful for reading saved captures and for tools.

A packet is represented as a tuple ``(packet_type, packet_id, timestamp, info, fields)`` where
``fields`` is a list of ``(field_name, field_id, params)`` and ``params`` a list of
``(param_name, value)``.

The work is done by the compiled codec when it is available, else by the pure-Python one; both
behave the same (see :func:`ncplib.codec.implementation`).
"""

from __future__ import annotations

import array
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Union

from ncplib import _wire
from ncplib.codec import impl as _impl
from ncplib.values import f64, i64, u32, u64

__all__ = [
    "Param",
    "Params",
    "Fields",
    "Packet",
    "encode_packet",
    "encode_packet_buffers",
    "decode_packet",
    "MAX_PACKET_ITEMS",
]

#: The most fields and params (embedded footers included) a decoded packet may hold: 65,536.
MAX_PACKET_ITEMS = _wire.MAX_PACKET_ITEMS

#: A param value: one of the supported value types. numpy arrays are accepted too.
Param = Union[
    bytes, bytearray, memoryview, str, int, float, u32, i64, u64, f64, bool, "array.array[Any]", Any
]
#: The params of one field: ``(name, value)`` pairs.
Params = Iterable[tuple[str, Param]]
#: The fields of one packet: ``(name, id, params)`` triples.
Fields = Iterable[tuple[str, int, Params]]
#: A decoded packet: ``(packet_type, packet_id, timestamp, info, fields)``.
Packet = tuple[str, int, datetime, bytes, list[tuple[str, int, list[tuple[str, Any]]]]]


def encode_packet(
    packet_type: str, packet_id: int, timestamp: datetime, info: bytes, fields: Fields
) -> bytes:
    """
    Encodes a NCP packet as bytes.

    :param str packet_type: The packet type, a valid identifier.
    :param int packet_id: The packet id, ``0 <= packet_id < 2**32``.
    :param datetime.datetime timestamp: When the packet is sent. A naive datetime is taken as
        local time, as :meth:`datetime.datetime.timestamp` does.
    :param bytes info: Up to 4 opaque bytes for the header's info word, padded with zeros.
    :param fields: The fields, as ``(name, id, params)`` with ``params`` as ``(name, value)`` pairs.
    :raises ValueError: if a packet type, field or param name is not a valid identifier, an
        integer is out of range for its NCP type, a string contains a NUL character or cannot be
        encoded as UTF-8, a param or field is too large for its 24-bit word count, or the packet
        holds more than :data:`MAX_PACKET_ITEMS` fields and params (which a decoder refuses).
    :raises TypeError: if a value is not one of the supported value types (the message names the
        param), or an array's typecode or dtype has no NCP data type.
    :returns: The encoded packet.
    """
    return _impl.encode_packet(packet_type, packet_id, timestamp, info, fields)  # type: ignore[no-any-return]


def encode_packet_buffers(
    packet_type: str, packet_id: int, timestamp: datetime, info: bytes, fields: Fields
) -> list[bytes | memoryview]:
    """
    Encodes a NCP packet as a list of buffers whose concatenation is the packet.

    Large array, raw and numpy values are not copied: the list holds views of them, ready for
    :meth:`asyncio.WriteTransport.writelines` or :meth:`socket.socket.sendmsg`. Do not modify
    those values until the buffers are written.

    Takes the same arguments and raises the same errors as :func:`encode_packet`.

    :returns: The buffers, in order.
    """
    return _impl.encode_packet_buffers(packet_type, packet_id, timestamp, info, fields)  # type: ignore[no-any-return]


def decode_packet(buf: bytes | bytearray | memoryview, use_numpy: bool = False) -> Packet:
    """
    Decodes one complete NCP packet.

    :param buf: The packet's bytes, exactly one packet long.
    :param bool use_numpy: Decode data (array) params as read-only :class:`numpy.ndarray` views
        of ``buf`` instead of :class:`array.array` copies. The arrays keep ``buf`` alive; do not
        modify ``buf`` while they are in use. Needs numpy.
    :raises ncplib.DecodeError: if the packet is malformed: bad magic numbers, a size that does
        not match, or a field or param that overruns its container; or if it holds more than
        :data:`MAX_PACKET_ITEMS` (65,536) fields and params, embedded footers included, which
        only a packet of over 512 KiB made of tiny items can (decoded, every item takes a
        hundred bytes or more, so this bounds the memory and time one packet can take; 6.1.0 has no
        such limit).
    :raises TypeError: if ``buf`` is not a bytes-like object.
    :returns: ``(packet_type, packet_id, timestamp, info, fields)``.

    Recoverable defects issue a :exc:`ncplib.DecodeWarning` and decoding goes on: an unknown
    type id (the value is returned as raw :class:`bytes`), a string that is not UTF-8 (invalid
    bytes replaced), a data value that is not a whole number of items (the partial item is
    dropped), and the stray footer some nodes embed in a field (skipped).
    """
    return _impl.decode_packet(buf, use_numpy)  # type: ignore[no-any-return]
