"""Type stub of the compiled codec :mod:`ncplib._codec`; it mirrors :mod:`ncplib._pycodec`."""

from datetime import datetime
from typing import Any

__all__ = ["encode_packet", "encode_packet_buffers", "decode_packet"]

def encode_packet_buffers(
    packet_type: str,
    packet_id: int,
    timestamp: datetime,
    info: bytes,
    fields: Any,
) -> list[bytes | memoryview]:
    """Encode a packet as a list of buffers; see :func:`ncplib.packets.encode_packet_buffers`."""

def encode_packet(
    packet_type: str,
    packet_id: int,
    timestamp: datetime,
    info: bytes,
    fields: Any,
) -> bytes:
    """Encode a packet as bytes; see :func:`ncplib.packets.encode_packet`."""

def decode_packet(buf: Any, use_numpy: bool = False) -> tuple[str, int, datetime, bytes, list[Any]]:
    """Decode one packet; see :func:`ncplib.packets.decode_packet`."""
