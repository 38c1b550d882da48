"""
Constants of the NCP wire format, shared by both codecs and the framer.

Sizes are in bytes unless a name says words (32-bit units, as the format counts them).
"""

from __future__ import annotations

import array
import re
import sys
from typing import Final

#: The TCP port of plain NCP (RFeye nodes listen there).
DEFAULT_PORT: Final = 9999

PACKET_HEADER_MAGIC: Final = b"\xdd\xcc\xbb\xaa"
PACKET_FOOTER_MAGIC: Final = b"\xaa\xbb\xcc\xdd"
#: The footer every sender writes: no checksum, then the footer magic.
PACKET_FOOTER: Final = b"\x00\x00\x00\x00" + PACKET_FOOTER_MAGIC
PACKET_FORMAT_ID: Final = 1
PACKET_HEADER_SIZE: Final = 32
PACKET_FOOTER_SIZE: Final = 8
FIELD_HEADER_SIZE: Final = 12
PARAM_HEADER_SIZE: Final = 8
#: The smallest packet: a header and a footer, no fields.
MIN_PACKET_SIZE: Final = PACKET_HEADER_SIZE + PACKET_FOOTER_SIZE
#: Field and param sizes are 24-bit word counts.
MAX_FIELD_WORDS: Final = 0xFFFFFF
MAX_PACKET_WORDS: Final = 0xFFFFFFFF
#: The most fields and params (embedded footers included) one packet may hold when decoded. Not a
#: rule of the protocol: decoded, each becomes a few Python objects, a hundred bytes or more
#: however few bytes it has on the wire, and a packet is decoded in one step, so this bounds the
#: memory and time one packet of tiny items can take (measured: up to 26 MiB and 0.4 s). The
#: smallest item is 8 bytes, so no packet of under 512 KiB can reach it; real nodes' packets hold
#: a few fields of tens of params.
MAX_PACKET_ITEMS: Final = 65536

TYPE_I32: Final = 0x00
TYPE_U32: Final = 0x01
TYPE_STRING: Final = 0x02
TYPE_I64: Final = 0x03
TYPE_U64: Final = 0x04
TYPE_F32: Final = 0x10
TYPE_F64: Final = 0x11
TYPE_RAW: Final = 0x80
TYPE_DATA_U8: Final = 0x81
TYPE_DATA_U16: Final = 0x82
TYPE_DATA_U32: Final = 0x83
TYPE_DATA_I8: Final = 0x84
TYPE_DATA_I16: Final = 0x85
TYPE_DATA_I32: Final = 0x86
TYPE_DATA_U64: Final = 0x87
TYPE_DATA_I64: Final = 0x88
TYPE_DATA_F32: Final = 0x90
TYPE_DATA_F64: Final = 0x91


#: The value range of each NCP integer type: ``(lowest, highest + 1)``.
INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {
    "i32": (-(2**31), 2**31),
    "u32": (0, 2**32),
    "i64": (-(2**63), 2**63),
    "u64": (0, 2**64),
}

#: The name of each data type id, without the word "data" (``u8`` for data u8).
DATA_TYPE_NAMES: Final[dict[int, str]] = {
    TYPE_DATA_U8: "u8",
    TYPE_DATA_U16: "u16",
    TYPE_DATA_U32: "u32",
    TYPE_DATA_U64: "u64",
    TYPE_DATA_I8: "i8",
    TYPE_DATA_I16: "i16",
    TYPE_DATA_I32: "i32",
    TYPE_DATA_I64: "i64",
    TYPE_DATA_F32: "f32",
    TYPE_DATA_F64: "f64",
}


def _typecode(candidates: str, itemsize: int) -> str:
    # Pick the first array typecode of the wanted size: "L" is 8 bytes on Linux and
    # macOS but 4 on Windows, where "Q" is the 8-byte one.
    for code in candidates:
        if array.array(code).itemsize == itemsize:
            return code
    raise RuntimeError(f"no array typecode of {itemsize} bytes among {candidates!r}")  # pragma: no cover


#: Data type id -> (array typecode, numpy dtype string, item size).
DATA_TYPES: Final[dict[int, tuple[str, str, int]]] = {
    TYPE_DATA_U8: ("B", "<u1", 1),
    TYPE_DATA_U16: ("H", "<u2", 2),
    TYPE_DATA_U32: (_typecode("IL", 4), "<u4", 4),
    TYPE_DATA_U64: (_typecode("LQ", 8), "<u8", 8),
    TYPE_DATA_I8: ("b", "<i1", 1),
    TYPE_DATA_I16: ("h", "<i2", 2),
    TYPE_DATA_I32: (_typecode("il", 4), "<i4", 4),
    TYPE_DATA_I64: (_typecode("lq", 8), "<i8", 8),
    TYPE_DATA_F32: ("f", "<f4", 4),
    TYPE_DATA_F64: ("d", "<f8", 8),
}

#: numpy dtype (kind, itemsize) -> data type id.
DTYPE_TO_TYPE: Final[dict[tuple[str, int], int]] = {
    ("u", 1): TYPE_DATA_U8,
    ("u", 2): TYPE_DATA_U16,
    ("u", 4): TYPE_DATA_U32,
    ("u", 8): TYPE_DATA_U64,
    ("i", 1): TYPE_DATA_I8,
    ("i", 2): TYPE_DATA_I16,
    ("i", 4): TYPE_DATA_I32,
    ("i", 8): TYPE_DATA_I64,
    ("f", 4): TYPE_DATA_F32,
    ("f", 8): TYPE_DATA_F64,
}

#: Array typecode -> data type id, by the typecode's item size on this platform, so that
#: "L" is data u64 where it is 8 bytes wide and data u32 where it is 4.
TYPECODE_TO_TYPE: Final[dict[str, int]] = {
    code: DTYPE_TO_TYPE[("i" if code.islower() else "u", array.array(code).itemsize)] for code in "bBhHiIlLqQ"
}
TYPECODE_TO_TYPE.update(f=TYPE_DATA_F32, d=TYPE_DATA_F64)

#: True where multi-byte values must be byte-swapped to reach the wire's little-endian order.
BIG_ENDIAN_HOST: Final = sys.byteorder == "big"

IDENTIFIER_RE: Final = re.compile(r"[A-Z0-9 ]{1,4}\Z")


def is_numpy_array(value: object) -> bool:
    """
    Tells whether ``value`` is a numpy array (an ``ndarray`` or a subclass), without importing numpy.

    A value can only be a numpy array once numpy has been imported, so this costs one dict
    look-up when it has not.
    """
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)


#: How many bytes of a stream that is not NCP a :exc:`~ncplib.DecodeError` message shows.
NOT_NCP_HEAD_SIZE: Final = 32
# Bytes shown as text: printable ASCII and the usual whitespace of text protocols.
_TEXT_BYTES: Final = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def bad_magic_message(head: bytes, sender: str = "the packet starts with") -> str:
    """
    The message of the :exc:`~ncplib.DecodeError` for data that does not start with the packet
    header magic: what arrived instead, as text when it is text (an HTTP answer, a banner), else
    in hexadecimal, so that the user sees what they are talking to.

    :param bytes head: The first bytes received, from where the header should start (only the
        first :data:`NOT_NCP_HEAD_SIZE` are shown).
    :param str sender: Who sent them, the words before the bytes shown.
    :returns: One line, such as ``Invalid packet header magic 48545450: the peer sent
        'HTTP/1.1 200 OK\\r\\n...', not NCP``.
    """
    return f"Invalid packet header magic {bytes(head[:4]).hex()}: {sender} {shown_bytes(head)}, not NCP"


def shown_bytes(head: bytes) -> str:
    """
    The first :data:`NOT_NCP_HEAD_SIZE` bytes of ``head`` for an error message: quoted text when
    they are text, else hexadecimal; ``...`` marks more.
    """
    shown = bytes(head[:NOT_NCP_HEAD_SIZE])
    more = "..." if len(head) > NOT_NCP_HEAD_SIZE else ""
    if shown and all(byte in _TEXT_BYTES for byte in shown):
        return repr(shown.decode("ascii") + more)
    return shown.hex() + more


# The magic numbers as little-endian 32-bit words, as a decoder reads them.
PACKET_HEADER_MAGIC_WORD: Final = int.from_bytes(PACKET_HEADER_MAGIC, "little")
PACKET_FOOTER_MAGIC_WORD: Final = int.from_bytes(PACKET_FOOTER_MAGIC, "little")

# The messages of both codecs' errors and warnings, as str.format templates, so that the compiled
# and the pure-Python codec say exactly the same thing (``tests/test_wire_definitions.py`` checks
# that neither spells a message of its own).
MSG_BAD_IDENTIFIER: Final = "Invalid {what} {value!r}: must be 1 to 4 characters of A-Z, 0-9 or space"
MSG_OUT_OF_RANGE: Final = "Param {name!r}: {value!r} is out of range for NCP {ncp_type}"
MSG_BAD_TYPECODE: Final = "Param {name!r}: array typecode {typecode!r} has no NCP data type"
MSG_BAD_DTYPE: Final = "Param {name!r}: numpy dtype {dtype} has no NCP data type"
MSG_BAD_VALUE_TYPE: Final = "Param {name!r}: unsupported value type {type_name}"
MSG_NOT_UTF8: Final = "Param {name!r}: string cannot be encoded as UTF-8: {error}"
MSG_NUL_IN_STRING: Final = "Param {name!r}: string contains a NUL character"
MSG_PARAM_TOO_LARGE: Final = "Param {name!r}: value of {size} bytes is too large"
MSG_FIELD_TOO_LARGE: Final = "Field {name!r}: {size} bytes is too large"
MSG_FIELD_ID_TYPE: Final = "Field {name!r}: id must be an int, not {type_name}"
MSG_FIELD_ID_RANGE: Final = "Field {name!r}: id {field_id!r} is out of range for u32"
MSG_PACKET_ID_TYPE: Final = "packet id must be an int, not {type_name}"
MSG_PACKET_ID_RANGE: Final = "packet id {packet_id!r} is out of range for u32"
MSG_TIMESTAMP_TYPE: Final = "timestamp must be a datetime, not {type_name}"
MSG_TIMESTAMP_RANGE: Final = "timestamp {timestamp!r} is outside the NCP range (1970 to 2106)"
MSG_INFO_TYPE: Final = "info must be bytes, not {type_name}"
MSG_INFO_SIZE: Final = "info must be at most 4 bytes, not {size}"
MSG_PACKET_TOO_LARGE: Final = "packet of {size} bytes is too large"
MSG_TOO_MANY_ITEMS_TO_SEND: Final = "packet of more than {limit} fields and params, which a decoder refuses"
MSG_BUFFER_TYPE: Final = "a bytes-like object is required, not {type_name}"
MSG_PACKET_TOO_SHORT: Final = "Packet of {size} bytes is shorter than a header and footer"
MSG_PACKET_SIZE_MISMATCH: Final = "Packet header gives {header_size} bytes, but the packet is {size} bytes"
MSG_BAD_FOOTER: Final = "Invalid packet footer magic {footer}"
MSG_BAD_NANOSECONDS: Final = "Invalid packet timestamp nanoseconds {nanos}"
MSG_FIELD_HEADER_OVERRUN: Final = "Field header at byte {pos} overruns the packet"
MSG_FIELD_SIZE: Final = "Field at byte {pos} has invalid size {size}"
MSG_FIELD_OVERFLOW: Final = "Field at byte {pos} overflows the packet by {excess} bytes"
MSG_PARAM_HEADER_OVERRUN: Final = "Param header at byte {pos} overruns its field"
MSG_PARAM_SIZE: Final = "Param at byte {pos} has invalid size {size}"
MSG_PARAM_OVERFLOW: Final = "Param at byte {pos} overflows its field by {excess} bytes"
MSG_PARAM_TOO_SHORT: Final = "Param {name!r} at byte {pos} is too short for its type"
MSG_TOO_MANY_ITEMS: Final = "Packet holds more than {limit} fields and params (the next at byte {pos})"
WARN_BAD_UTF8: Final = "String is not valid UTF-8; undecodable bytes replaced"
WARN_PARTIAL_ITEM: Final = (
    "Param {name!r}: {size} bytes is not a whole number of {itemsize}-byte items; "
    "the last partial item is dropped"
)
WARN_EMBEDDED_FOOTER: Final = "Skipped embedded packet footer at byte {pos}"
WARN_UNKNOWN_TYPE: Final = "Param {name!r} has unsupported type id 0x{type_id:02x}; kept as bytes"
# The packet reader's (ncplib.framing) messages about a stream's packet headers, and its refusal of
# a count of received bytes larger than the memory it offered.
MSG_HEADER_BELOW_MINIMUM: Final = "Packet header gives {size} bytes, less than a header and footer"
MSG_HEADER_ABOVE_MAXIMUM: Final = "Packet of {size} bytes exceeds the maximum of {maximum} bytes"
MSG_MAX_PACKET_SIZE_TOO_SMALL: Final = "max_packet_size must be at least {minimum}"
MSG_READER_OVERRUN: Final = "{nbytes} bytes received is more than the room the buffer offered ({room} bytes)"
