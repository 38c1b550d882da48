"""
Collector: the floor, what the event loop itself costs per field.

Each connection does the client side of the LINK handshake and sends the command with
pre-encoded packets, then an :class:`asyncio.BufferedProtocol` only counts the bytes received
(fields = bytes // the data packet's size). No decoding, no task per connection: what is left is
the event loop's own cost of a read per packet. Runs with our interpreter (it uses our encoder
to prepare its few packets). See :mod:`collector` for the arguments.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import socket
from datetime import datetime, timezone
from typing import Any

from collector import main
from shapes import SHAPES

from ncplib.packets import encode_packet

# Every connection receives into this one buffer: the floor keeps nothing it receives.
_SCRATCH = bytearray(256 * 1024)
# Packets from the server before the data: HELO, SCAR, SCON, then the command's ACKN.
_HANDSHAKE_PACKETS = 4


class FloorProtocol(asyncio.BufferedProtocol):
    """Handshake with pre-encoded packets, then count bytes."""

    def __init__(self, replies: list[bytes], index: int, counts: list[int], wire_size: int) -> None:
        self.replies = replies  # what to send after each handshake packet received
        self.index = index
        self.counts = counts
        self.wire_size = wire_size
        self.pending = bytearray()
        self.seen = 0
        self.received = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(_SCRATCH)

    def buffer_updated(self, nbytes: int) -> None:
        if self.seen >= _HANDSHAKE_PACKETS:
            self.received += nbytes
            self.counts[self.index] = self.received // self.wire_size
            return
        self.pending += _SCRATCH[:nbytes]
        while self.seen < _HANDSHAKE_PACKETS and len(self.pending) >= 12:
            size = int.from_bytes(self.pending[8:12], "little") * 4
            if len(self.pending) < size:
                return
            del self.pending[:size]
            if self.seen < len(self.replies):
                self.transport.write(self.replies[self.seen])
            self.seen += 1
        if self.seen >= _HANDSHAKE_PACKETS and self.pending:
            self.received += len(self.pending)
            self.pending = bytearray()

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def _packets(shape_name: str) -> tuple[list[bytes], int]:
    shape = SHAPES[shape_name]
    now = datetime.now(timezone.utc)
    info = b"\0\0\0\0"
    host = socket.gethostname()
    ccre = encode_packet(
        "LINK", 1, now, info, [("CCRE", 1, [("CIW", host), ("CUSR", "bench"), ("CDOM", ""), ("LINK", 60)])]
    )
    care = encode_packet("LINK", 1, now, info, [("CARE", 2, [("CAR", host)])])
    command = encode_packet(shape.packet_type, 1, now, info, [(shape.field_name, 3, [("COUN", 0)])])
    data = encode_packet(
        shape.packet_type,
        1,
        now,
        info,
        [(shape.field_name, 3, [(shape.param, array.array(shape.typecode, bytes(shape.data_bytes)))])],
    )
    return [ccre, care, command], len(data)


async def start(args: argparse.Namespace, counts: list[int]) -> list[Any]:
    replies, wire_size = _packets(args.shape)
    loop = asyncio.get_running_loop()
    kept = []
    for index in range(args.connections):
        transport, _ = await loop.create_connection(
            lambda i=index: FloorProtocol(replies, i, counts, wire_size), "127.0.0.1", args.port
        )
        kept.append(transport)
    return kept


if __name__ == "__main__":
    main(start)
