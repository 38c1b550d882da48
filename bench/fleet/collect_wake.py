"""
Collector: the floor of one task per connection, what waking a task per packet costs.

The same connections and handshake as ``collect_floor.py``, and the same byte counting, but
each connection also has a task that loops over ``await stream.recv()``, in the shape of the
drop-in API: a coroutine per call, which awaits a bare future that the protocol sets at every
read and returns what arrived. No decoding, no library code. Above the floor, this is what any
library that hands each connection's packets to a task of its own through a ``recv()``
coroutine pays per read (the coroutine, the wake-up, and the extra pass of the event loop in
which the woken task runs); ``recv`` above this is the library's own cost. See
:mod:`collector` for the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from collect_floor import FloorProtocol, _packets
from collector import main


class WakeProtocol(FloorProtocol):
    """Counts bytes as the floor does, and wakes the connection's task at every read."""

    waiter: asyncio.Future[None] | None = None

    def buffer_updated(self, nbytes: int) -> None:
        received = self.received
        super().buffer_updated(nbytes)
        waiter = self.waiter
        if self.received != received and waiter is not None and not waiter.done():
            waiter.set_result(None)


class Stream:
    """A connection's received byte count, through ``await recv()`` as a library's API would."""

    def __init__(self, protocol: WakeProtocol) -> None:
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.seen = 0

    async def recv(self) -> int:
        """Waits for more bytes; returns the count received so far."""
        protocol = self.protocol
        while protocol.received == self.seen:
            protocol.waiter = self.loop.create_future()
            await protocol.waiter
        self.seen = protocol.received
        return self.seen


async def _consume(protocol: WakeProtocol, index: int, counts: list[int], wire_size: int) -> None:
    stream = Stream(protocol)
    while True:
        counts[index] = await stream.recv() // wire_size


async def start(args: argparse.Namespace, counts: list[int]) -> list[Any]:
    replies, wire_size = _packets(args.shape)
    loop = asyncio.get_running_loop()
    kept: list[Any] = []
    scratch = [0] * args.connections  # the protocols count here; the tasks count in counts
    for index in range(args.connections):
        transport, protocol = await loop.create_connection(
            lambda i=index: WakeProtocol(replies, i, scratch, wire_size), "127.0.0.1", args.port
        )
        kept += [transport, loop.create_task(_consume(protocol, index, counts, wire_size))]
    return kept


if __name__ == "__main__":
    main(start)
