"""
The pure-Python NCP packet codec.

This is the reference behaviour of the codec: the compiled :mod:`ncplib._codec` must encode to
the same bytes and decode to the same values, warnings and errors. See :mod:`ncplib.packets` for
the public interface.
"""

from __future__ import annotations

import array
from datetime import datetime, timedelta, timezone
from struct import Struct
from struct import error as StructError
from typing import Any

from ncplib import _wire as w
from ncplib._peer_warnings import warn_from_peer
from ncplib.errors import DecodeError, DecodeWarning
from ncplib.values import f64, i64, u32, u64

__all__ = ["encode_packet", "encode_packet_buffers", "decode_packet"]

_PACKET_HEADER = Struct("<4s4sIIIII4s")
_FIELD_HEADER = Struct("<4sII")
_PARAM_HEADER = Struct("<4sI")
_I32_PARAM = Struct("<4sIi")
_I32 = Struct("<i")
_U32 = Struct("<I")
_I64 = Struct("<q")
_U64 = Struct("<Q")
_F32 = Struct("<f")
_F64 = Struct("<d")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EMBEDDED_FOOTER = w.PACKET_FOOTER
_PADDING = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")
_IDENTIFIER_CACHE: dict[str, bytes] = {}
_MAX_PARAM_SIZE = w.MAX_FIELD_WORDS * 4
# Values at least this large are handed on as they are, not joined with their header.
_BULK_MIN = 512
_Data = bytes | bytearray | memoryview


# Encoding.


def _encode_identifier(value: object, what: str) -> bytes:
    try:
        return _IDENTIFIER_CACHE[value]  # type: ignore[index]
    except (KeyError, TypeError):
        pass
    if not isinstance(value, str) or w.IDENTIFIER_RE.match(value) is None:
        raise ValueError(w.MSG_BAD_IDENTIFIER.format(what=what, value=value))
    encoded = value.encode("ascii").ljust(4, b"\x00")
    if len(_IDENTIFIER_CACHE) < 4096:
        _IDENTIFIER_CACHE[value] = encoded
    return encoded


def _pack_int(packer: Struct, value: int, ncp_type: str, name: str) -> bytes:
    try:
        return packer.pack(value)
    except StructError:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type=ncp_type)) from None


def _encode_array_data(value: array.array[Any], name: str) -> tuple[int, _Data]:
    try:
        type_id = w.TYPECODE_TO_TYPE[value.typecode]
    except KeyError:
        raise TypeError(w.MSG_BAD_TYPECODE.format(name=name, typecode=value.typecode)) from None
    if w.BIG_ENDIAN_HOST and value.itemsize > 1:  # pragma: no cover
        value = array.array(value.typecode, value)
        value.byteswap()
    return type_id, memoryview(value).cast("B")


def _encode_numpy_data(value: Any, name: str) -> tuple[int, _Data]:
    dtype = value.dtype
    type_id = w.DTYPE_TO_TYPE.get((dtype.kind, dtype.itemsize))
    if type_id is None:
        raise TypeError(w.MSG_BAD_DTYPE.format(name=name, dtype=dtype))
    if dtype.byteorder not in "<|" and not (dtype.byteorder == "=" and not w.BIG_ENDIAN_HOST):
        value = value.astype(dtype.newbyteorder("<"))
    if not value.flags.c_contiguous:
        value = value.copy(order="C")
    return type_id, memoryview(value).cast("B")


def _encode_value(name: str, value: object) -> tuple[int, _Data]:
    """Return the type id and the unpadded value bytes of one param value."""
    # Order matters: bool and the wrappers are subclasses of int and float.
    cls = type(value)
    if cls is int or cls is bool:
        return w.TYPE_I32, _pack_int(_I32, value, "i32", name)  # type: ignore[arg-type]
    if cls is str:
        return w.TYPE_STRING, _encode_string(name, value)  # type: ignore[arg-type]
    if cls is float:
        return w.TYPE_F32, _encode_f32(name, value)  # type: ignore[arg-type]
    # Exact types that are none of the wrappers: tested first only to save time.
    if cls is array.array:
        return _encode_array_data(value, name)  # type: ignore[arg-type]
    if cls is bytes:
        return w.TYPE_RAW, value  # type: ignore[return-value]
    if w.is_numpy_array(value):
        return _encode_numpy_data(value, name)
    if isinstance(value, u32):
        return w.TYPE_U32, _pack_int(_U32, value, "u32", name)
    if isinstance(value, i64):
        return w.TYPE_I64, _pack_int(_I64, value, "i64", name)
    if isinstance(value, u64):
        return w.TYPE_U64, _pack_int(_U64, value, "u64", name)
    if isinstance(value, f64):
        return w.TYPE_F64, _F64.pack(value)
    if isinstance(value, int):
        return w.TYPE_I32, _pack_int(_I32, value, "i32", name)
    if isinstance(value, float):
        return w.TYPE_F32, _encode_f32(name, value)
    if isinstance(value, str):
        return w.TYPE_STRING, _encode_string(name, value)
    if isinstance(value, (bytes, bytearray)):
        return w.TYPE_RAW, value
    if isinstance(value, memoryview):
        return w.TYPE_RAW, value.cast("B") if value.c_contiguous else value.tobytes()
    if isinstance(value, array.array):
        return _encode_array_data(value, name)
    raise TypeError(w.MSG_BAD_VALUE_TYPE.format(name=name, type_name=cls.__name__))


def _encode_string(name: str, value: str) -> bytes:
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as ex:
        raise ValueError(w.MSG_NOT_UTF8.format(name=name, error=ex)) from None
    if b"\x00" in encoded:
        raise ValueError(w.MSG_NUL_IN_STRING.format(name=name))
    return encoded + b"\x00"


def _encode_f32(name: str, value: float) -> bytes:
    try:
        return _F32.pack(value)
    except OverflowError:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type="f32")) from None


def encode_packet_buffers(
    packet_type: str,
    packet_id: int,
    timestamp: datetime,
    info: bytes,
    fields: Any,
) -> list[bytes | memoryview]:
    """Encode a packet as a list of buffers; see :func:`ncplib.packets.encode_packet_buffers`."""
    # The hot loop avoids per-param function calls for the common types: the identifier cache
    # is read inline, and an i32 param is packed whole (header and value) by one Struct.
    out: list[bytes | memoryview] = [b""]
    append = out.append
    ids = _IDENTIFIER_CACHE
    pack_i32_param = _I32_PARAM.pack
    pack_param_header = _PARAM_HEADER.pack
    packet_size = w.PACKET_HEADER_SIZE + w.PACKET_FOOTER_SIZE
    # Fields and params so far: at most w.MAX_PACKET_ITEMS.
    items = 0
    limit = w.MAX_PACKET_ITEMS
    for field_name, field_id, params in fields:
        items += 1
        if items > limit:
            raise ValueError(w.MSG_TOO_MANY_ITEMS_TO_SEND.format(limit=limit))
        field_header_index = len(out)
        append(b"")
        field_size = w.FIELD_HEADER_SIZE
        for param_name, value in params:
            items += 1
            if items > limit:
                raise ValueError(w.MSG_TOO_MANY_ITEMS_TO_SEND.format(limit=limit))
            try:
                name_bytes = ids[param_name]
            except (KeyError, TypeError):
                name_bytes = _encode_identifier(param_name, "param name")
            cls = type(value)
            if cls is int or cls is bool:
                try:
                    append(pack_i32_param(name_bytes, 3, value))
                except StructError:
                    raise ValueError(
                        w.MSG_OUT_OF_RANGE.format(name=param_name, value=value, ncp_type="i32")
                    ) from None
                field_size += 12
                continue
            type_id, data = _encode_value(param_name, value)
            data_size = len(data)
            padding = _PADDING[data_size & 3]
            param_size = w.PARAM_HEADER_SIZE + data_size + len(padding)
            if param_size > _MAX_PARAM_SIZE:
                raise ValueError(w.MSG_PARAM_TOO_LARGE.format(name=param_name, size=data_size))
            header = pack_param_header(name_bytes, (param_size >> 2) | (type_id << 24))
            if data_size < _BULK_MIN:
                append(header + data + padding)
            else:
                append(header)
                append(memoryview(data) if isinstance(data, bytearray) else data)
                if padding:
                    append(padding)
            field_size += param_size
        if field_size > _MAX_PARAM_SIZE:
            raise ValueError(w.MSG_FIELD_TOO_LARGE.format(name=field_name, size=field_size))
        out[field_header_index] = _encode_identifier(field_name, "field name") + _pack_field_tail(
            field_size >> 2, field_id, field_name
        )
        packet_size += field_size
    out[0] = _encode_header(packet_type, packet_id, timestamp, info, packet_size)
    append(w.PACKET_FOOTER)
    return out


def _pack_field_tail(size_words: int, field_id: int, field_name: str) -> bytes:
    if type(field_id) is not int and not isinstance(field_id, int):
        raise TypeError(w.MSG_FIELD_ID_TYPE.format(name=field_name, type_name=type(field_id).__name__))
    if not 0 <= field_id <= 0xFFFFFFFF:
        raise ValueError(w.MSG_FIELD_ID_RANGE.format(name=field_name, field_id=field_id))
    return _U32.pack(size_words) + _U32.pack(field_id)


def _encode_header(
    packet_type: str, packet_id: int, timestamp: datetime, info: bytes, packet_size: int
) -> bytes:
    type_bytes = _encode_identifier(packet_type, "packet type")
    if not isinstance(packet_id, int):
        raise TypeError(w.MSG_PACKET_ID_TYPE.format(type_name=type(packet_id).__name__))
    if not 0 <= packet_id <= 0xFFFFFFFF:
        raise ValueError(w.MSG_PACKET_ID_RANGE.format(packet_id=packet_id))
    if not isinstance(timestamp, datetime):
        raise TypeError(w.MSG_TIMESTAMP_TYPE.format(type_name=type(timestamp).__name__))
    if timestamp.tzinfo is None:
        seconds_float = timestamp.timestamp()
        seconds = int(seconds_float // 1)
    else:
        delta = timestamp - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise ValueError(w.MSG_TIMESTAMP_RANGE.format(timestamp=timestamp))
    if not isinstance(info, (bytes, bytearray, memoryview)):
        raise TypeError(w.MSG_INFO_TYPE.format(type_name=type(info).__name__))
    info = bytes(info)
    if len(info) > 4:
        raise ValueError(w.MSG_INFO_SIZE.format(size=len(info)))
    if packet_size >> 2 > w.MAX_PACKET_WORDS:
        raise ValueError(w.MSG_PACKET_TOO_LARGE.format(size=packet_size))
    return _PACKET_HEADER.pack(
        w.PACKET_HEADER_MAGIC,
        type_bytes,
        packet_size >> 2,
        packet_id,
        w.PACKET_FORMAT_ID,
        seconds,
        timestamp.microsecond * 1000,
        info,
    )


def encode_packet(
    packet_type: str,
    packet_id: int,
    timestamp: datetime,
    info: bytes,
    fields: Any,
) -> bytes:
    """Encode a packet as bytes; see :func:`ncplib.packets.encode_packet`."""
    return b"".join(encode_packet_buffers(packet_type, packet_id, timestamp, info, fields))


# Decoding.


_DECODED_IDENTIFIERS: dict[bytes, str] = {}


def _decode_identifier(raw: bytes) -> str:
    name = raw.rstrip(b"\x00 ").decode("latin-1")
    if len(_DECODED_IDENTIFIERS) < 4096:
        _DECODED_IDENTIFIERS[raw] = name
    return name


def _decode_string(raw: bytes) -> str:
    end = raw.find(b"\x00")
    if end != -1:
        raw = raw[:end]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        warn_from_peer(DecodeWarning(w.WARN_BAD_UTF8), stacklevel=3)
        return raw.decode("utf-8", "replace")


_SCALARS: dict[int, tuple[Struct, Any]] = {
    w.TYPE_U32: (_U32, u32),
    w.TYPE_I64: (_I64, i64),
    w.TYPE_U64: (_U64, u64),
    w.TYPE_F32: (_F32, None),
    w.TYPE_F64: (_F64, f64),
}
# The embedded footer some nodes write where a param header belongs, as a param header.
_EMBEDDED_FOOTER_NAME = b"\x00\x00\x00\x00"
_EMBEDDED_FOOTER_WORD = w.PACKET_FOOTER_MAGIC_WORD


def _decode_data(type_id: int, data: memoryview | bytes, use_numpy: bool, name: str) -> Any:
    typecode, dtype, itemsize = w.DATA_TYPES[type_id]
    size = len(data)
    if size % itemsize:
        warn_from_peer(
            DecodeWarning(w.WARN_PARTIAL_ITEM.format(name=name, size=size, itemsize=itemsize)),
            stacklevel=3,
        )
        size -= size % itemsize
        data = data[:size]
    if use_numpy:
        import numpy

        return numpy.frombuffer(data, dtype=dtype)
    value = array.array(typecode)
    value.frombytes(data)
    if w.BIG_ENDIAN_HOST and itemsize > 1:  # pragma: no cover
        value.byteswap()
    return value


_last_timestamp_key = (-1, -1)
_last_timestamp = _EPOCH


def _decode_timestamp(seconds: int, micros: int) -> datetime:
    global _last_timestamp_key, _last_timestamp
    key = (seconds, micros)
    if key != _last_timestamp_key:
        # Assigned together, so that a reader in another thread never pairs a key with the
        # wrong datetime.
        _last_timestamp_key, _last_timestamp = key, _EPOCH + timedelta(seconds=seconds, microseconds=micros)
    return _last_timestamp


def decode_packet(buf: Any, use_numpy: bool = False) -> tuple[str, int, datetime, bytes, list[Any]]:
    """Decode one packet; see :func:`ncplib.packets.decode_packet`."""
    if type(buf) is bytes and not use_numpy:
        # Slices of bytes are bytes: no memoryview needed.
        view: Any = buf
    else:
        try:
            view = memoryview(buf)
        except TypeError:
            raise TypeError(w.MSG_BUFFER_TYPE.format(type_name=type(buf).__name__)) from None
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        elif view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        if use_numpy:
            view = view.toreadonly()
    size = len(view)
    if size < w.MIN_PACKET_SIZE:
        raise DecodeError(w.MSG_PACKET_TOO_SHORT.format(size=size))
    (magic, type_raw, size_words, packet_id, _format_id, seconds, nanos, info) = _PACKET_HEADER.unpack_from(
        view, 0
    )
    if magic != w.PACKET_HEADER_MAGIC:
        raise DecodeError(w.bad_magic_message(bytes(view[: w.NOT_NCP_HEAD_SIZE + 1])))
    if size_words * 4 != size:
        raise DecodeError(w.MSG_PACKET_SIZE_MISMATCH.format(header_size=size_words * 4, size=size))
    footer = bytes(view[size - 4 : size])
    if footer != w.PACKET_FOOTER_MAGIC:
        raise DecodeError(w.MSG_BAD_FOOTER.format(footer=footer.hex()))
    if nanos > 999_999_999:
        raise DecodeError(w.MSG_BAD_NANOSECONDS.format(nanos=nanos))
    timestamp = _decode_timestamp(seconds, nanos // 1000)
    fields = []
    end = size - w.PACKET_FOOTER_SIZE
    pos = w.PACKET_HEADER_SIZE
    unpack_field = _FIELD_HEADER.unpack_from
    unpack_param = _PARAM_HEADER.unpack_from
    unpack_i32 = _I32.unpack_from
    names = _DECODED_IDENTIFIERS
    # Fields and params so far, embedded footers included: at most w.MAX_PACKET_ITEMS.
    items = 0
    limit = w.MAX_PACKET_ITEMS
    while pos < end:
        if pos + w.FIELD_HEADER_SIZE > end:
            raise DecodeError(w.MSG_FIELD_HEADER_OVERRUN.format(pos=pos))
        items += 1
        if items > limit:
            raise DecodeError(w.MSG_TOO_MANY_ITEMS.format(limit=limit, pos=pos))
        field_name_raw, field_word, field_id = unpack_field(view, pos)
        field_size = (field_word & 0xFFFFFF) * 4
        if field_size < w.FIELD_HEADER_SIZE:
            raise DecodeError(w.MSG_FIELD_SIZE.format(pos=pos, size=field_size))
        field_end = pos + field_size
        if field_end > end:
            raise DecodeError(w.MSG_FIELD_OVERFLOW.format(pos=pos, excess=field_end - end))
        params: list[tuple[str, Any]] = []
        append = params.append
        pos += w.FIELD_HEADER_SIZE
        while pos < field_end:
            if pos + w.PARAM_HEADER_SIZE > field_end:
                raise DecodeError(w.MSG_PARAM_HEADER_OVERRUN.format(pos=pos))
            items += 1
            if items > limit:
                raise DecodeError(w.MSG_TOO_MANY_ITEMS.format(limit=limit, pos=pos))
            param_name_raw, param_word = unpack_param(view, pos)
            if param_word == _EMBEDDED_FOOTER_WORD and param_name_raw == _EMBEDDED_FOOTER_NAME:
                warn_from_peer(DecodeWarning(w.WARN_EMBEDDED_FOOTER.format(pos=pos)), stacklevel=2)
                pos += 8
                continue
            param_size = (param_word & 0xFFFFFF) * 4
            if param_size < w.PARAM_HEADER_SIZE:
                raise DecodeError(w.MSG_PARAM_SIZE.format(pos=pos, size=param_size))
            param_end = pos + param_size
            if param_end > field_end:
                raise DecodeError(w.MSG_PARAM_OVERFLOW.format(pos=pos, excess=param_end - field_end))
            type_id = param_word >> 24
            name = names.get(param_name_raw)
            if name is None:
                name = _decode_identifier(param_name_raw)
            if type_id == w.TYPE_I32:
                if param_size < 12:
                    raise DecodeError(w.MSG_PARAM_TOO_SHORT.format(name=name, pos=pos))
                append((name, unpack_i32(view, pos + 8)[0]))
                pos = param_end
                continue
            data_start = pos + w.PARAM_HEADER_SIZE
            scalar = _SCALARS.get(type_id)
            if scalar is not None:
                unpacker, wrapper = scalar
                if param_end - data_start < unpacker.size:
                    raise DecodeError(w.MSG_PARAM_TOO_SHORT.format(name=name, pos=pos))
                value = unpacker.unpack_from(view, data_start)[0]
                if wrapper is not None:
                    value = wrapper(value)
            elif type_id == w.TYPE_STRING:
                value = _decode_string(bytes(view[data_start:param_end]))
            elif type_id == w.TYPE_RAW:
                value = bytes(view[data_start:param_end])
            elif type_id in w.DATA_TYPES:
                # A memoryview slice: slicing bytes would copy the data once more.
                value = _decode_data(type_id, memoryview(view)[data_start:param_end], use_numpy, name)
            else:
                warn_from_peer(
                    DecodeWarning(w.WARN_UNKNOWN_TYPE.format(name=name, type_id=type_id)),
                    stacklevel=2,
                )
                value = bytes(view[data_start:param_end])
            append((name, value))
            pos = param_end
        field_name = names.get(field_name_raw)
        if field_name is None:
            field_name = _decode_identifier(field_name_raw)
        fields.append((field_name, field_id, params))
    packet_type = names.get(type_raw)
    if packet_type is None:
        packet_type = _decode_identifier(type_raw)
    return (packet_type, packet_id, timestamp, info, fields)
