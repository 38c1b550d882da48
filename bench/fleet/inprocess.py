"""
The drop-in receive path's own cost per field, in one process, without sockets.

Connections (our ``NCPProtocol`` + ``Connection`` on a transport that goes nowhere) are fed
pre-encoded packets straight into ``get_buffer``/``buffer_updated``, as the event loop would
after a read, and one task per connection awaits ``response.recv()``. What the kernel and the
selector cost is left out, so the figure is steadier than bench/fleet/run.py's on a busy machine
and shows what changes in the library do. Three shapes:

- ``fleet``: every connection gets one 4000-bin sweep packet per pass of the event loop (one task
  wake-up per field);
- ``Fleet``: the same packets, taken by one ``async for node, field in fleet`` loop over an
  :class:`ncplib.Fleet` whose nodes connect to these in-process connections (one wake-up per pass);
  and again with one node's packet per pass, the nodes in turn (one wake-up per field, as when
  packets arrive spread out over time);
- ``backlog``: one connection gets 64 small fields (256 u8 bins) per read, read back to back.

A ``wake-up`` line gives the floor of the fleet shape: a task per connection awaiting a bare
future that is set once per pass.

Usage: ``.venv/bin/python bench/fleet/inprocess.py [--connections 200] [--uvloop]``
"""

from __future__ import annotations

import argparse
import array
import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

from ncplib import Fleet
from ncplib._protocol import NCPProtocol
from ncplib.connection import Connection, Response
from ncplib.fleet import _fleet
from ncplib.packets import encode_packet

FIELDS = 60_000
ROUNDS = 5


class NullTransport(asyncio.Transport):
    """A transport that drops what is written and is never closed by the peer."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = False
        self.protocol: asyncio.BaseProtocol | None = None

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        if not self._closing and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        self._closing = True

    def get_write_buffer_size(self) -> int:
        return 0


def _connection(use_numpy: bool) -> tuple[NCPProtocol, Connection]:
    protocol = NCPProtocol(max_packet_size=1 << 26, use_numpy=use_numpy)
    transport = NullTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    connection = Connection(
        protocol, logger=logging.getLogger("bench"), remote_hostname="node", timeout=60,
        auto_erro=True, auto_warn=True, auto_ackn=True,
    )  # fmt: skip
    return protocol, connection


def _packet(bins: int, field_id: int) -> bytes:
    now = datetime.now(timezone.utc)
    params = [("SEQN", 1), ("PDAT", array.array("B", bytes(bins)))]
    return encode_packet("DSPC", 1, now, b"\0\0\0\0", [("SWEP", field_id, params)])


def _feed(protocol: NCPProtocol, data: bytes) -> None:
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(-1)
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


async def _per_field(
    tasks: list[asyncio.Task[None]], passes: int, deliver: Any, received: list[int]
) -> float:
    """Runs ``deliver()`` then one pass of the loop, ``passes`` times; CPU us per field received."""
    await asyncio.sleep(0)
    start = time.process_time()
    for _ in range(passes):
        deliver()
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    elapsed = time.process_time() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return 1e6 * elapsed / received[0]


async def fleet(connections: int) -> float:
    packet = _packet(4000, 5)
    pairs = [_connection(False) for _ in range(connections)]
    received = [0]

    async def collect(connection: Connection) -> None:
        response = Response(connection, "DSPC", {("SWEP", 5)})
        while True:
            field = await response.recv()
            field["PDAT"]
            received[0] += 1

    def deliver() -> None:
        for protocol, _ in pairs:
            _feed(protocol, packet)

    tasks = [asyncio.create_task(collect(connection)) for _, connection in pairs]
    return await _per_field(tasks, FIELDS // connections, deliver, received)


async def merged(connections: int, one_per_pass: bool = False) -> float:
    packet = _packet(4000, 5)
    protocols: list[NCPProtocol] = []

    async def connect(*args: Any, **kwargs: Any) -> Connection:
        protocol, connection = _connection(False)
        protocols.append(protocol)
        return connection

    # The fleet's nodes "connect" to in-process connections: its own code runs unchanged.
    _fleet.connect = connect  # type: ignore[assignment]
    fleet = Fleet(["node"] * connections, timeout=60)
    received = [0]

    async def consume() -> None:
        async for _node, field in fleet:
            field["PDAT"]
            received[0] += 1

    turn = [0]

    def deliver() -> None:
        if one_per_pass:
            _feed(protocols[turn[0] % connections], packet)
            turn[0] += 1
            return
        for protocol in protocols:
            _feed(protocol, packet)

    passes = FIELDS if one_per_pass else FIELDS // connections
    async with fleet:
        while not all(node.connected for node in fleet.nodes):  # noqa: ASYNC110 (polls node state)
            await asyncio.sleep(0)
        task = asyncio.create_task(consume())
        result = await _per_field([task], passes, deliver, received)
    return result


async def wake_up(connections: int) -> float:
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[None]] = [loop.create_future() for _ in range(connections)]
    received = [0]

    async def collect(index: int) -> None:
        while True:
            waiters[index] = loop.create_future()
            await waiters[index]
            received[0] += 1

    def deliver() -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    tasks = [asyncio.create_task(collect(i)) for i in range(connections)]
    return await _per_field(tasks, FIELDS // connections, deliver, received)


async def backlog(use_numpy: bool) -> float:
    burst = _packet(256, 5) * 64
    protocol, connection = _connection(use_numpy)
    response = Response(connection, "DSPC", {("SWEP", 5)})
    start = time.process_time()
    for _ in range(FIELDS // 64):
        _feed(protocol, burst)
        for _ in range(64):
            field = await response.recv()
            field["PDAT"][0]
    return 1e6 * (time.process_time() - start) / (FIELDS // 64 * 64)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    cases = {
        f"fleet, {args.connections} connections": lambda: fleet(args.connections),
        f"Fleet, {args.connections} nodes": lambda: merged(args.connections),
        f"Fleet, {args.connections} nodes, one field per pass": lambda: merged(args.connections, True),
        f"wake-up floor, {args.connections} connections": lambda: wake_up(args.connections),
        "backlog, array mode": lambda: backlog(False),
    }
    try:
        import numpy  # noqa: F401

        cases["backlog, numpy mode"] = lambda: backlog(True)
    except ImportError:
        pass
    print("| case | us per field (best of 5) |\n|---|---:|")
    for name, case in cases.items():
        best = min(asyncio.run(case()) for _ in range(ROUNDS))
        print(f"| {name} | {best:.2f} |", flush=True)


if __name__ == "__main__":
    main()
