"""
Hostile servers against our client: hand-written asyncio servers speaking partial NCP.

Each time the client must raise the documented error promptly (never hang), and ``async with``
must still close the connection cleanly, with no asyncio noise (checked by :func:`netutil.run`).
The client's own timeout is 1 s here (the server grants what the client proposes), so waits are
short; every wait is also bounded by ``asyncio.wait_for`` so that a hang fails the test.
"""

from __future__ import annotations

import array
import asyncio
import socket
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hostile_peers import StreamChecker, checked_fields, malformed_packets
from netutil import LOOPS, packet_bytes, raw_handshake, raw_server, read_packet, run

import ncplib

pytestmark = pytest.mark.hostile

#: The client's timeout, granted as proposed by these servers.
TIMEOUT = 1
#: How long any single step may take before the test calls it a hang.
BOUND = 5 * TIMEOUT + 2

Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def connect(port: int, **kwargs: Any) -> ncplib.Connection:
    return await asyncio.wait_for(ncplib.connect("127.0.0.1", port, timeout=TIMEOUT, **kwargs), BOUND)


async def recv(connection: ncplib.Connection) -> ncplib.Field:
    return await asyncio.wait_for(connection.recv(), BOUND)


def field_packet(name: str = "DATA", field_id: int = 9, **params: Any) -> bytes:
    return packet_bytes("DSPC", [(name, field_id, params or {"N": 1})])


# A server that breaks off.


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("cut", ["header", "body", "footer"])
def test_server_closing_mid_packet_raises_network_error(loop: str, cut: str) -> None:
    data = field_packet(DATA=array.array("i", range(100)))
    at = {"header": 10, "body": len(data) // 2, "footer": len(data) - 3}[cut]

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(data[:at])
        await writer.drain()
        # Closed by raw_server on return.

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            with pytest.raises(ncplib.NetworkError, match="middle of a packet"):
                await recv(connection)
            # Stays broken (no hang), and closes cleanly.
            with pytest.raises(ncplib.NCPError):
                await recv(connection)

    run(main, loop=loop)


@pytest.mark.parametrize("after", ["nothing", "helo_part", "helo", "scar"])
def test_server_closing_during_the_handshake_fails_connect(after: str) -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        helo = packet_bytes("LINK", [("HELO", 0, {})])
        if after == "helo_part":
            writer.write(helo[:20])
        elif after in ("helo", "scar"):
            writer.write(helo)
            await read_packet(reader)
            if after == "scar":
                writer.write(packet_bytes("LINK", [("SCAR", 1, {"LINK": TIMEOUT})]))
                await read_packet(reader)

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises((ncplib.NetworkError, ncplib.ConnectionClosed)):
                await connect(port)

    run(main)


# A server that stops sending.


@pytest.mark.parametrize("how", ["silent", "trickle"])
def test_server_that_stops_sending_times_out(how: str) -> None:
    """Silent, or sending a byte now and then that never completes a packet: both time out."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        if how == "trickle":
            for byte in field_packet():
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                await asyncio.sleep(0.3)
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            assert connection._timeout == TIMEOUT
            with pytest.raises(ncplib.NetworkTimeoutError):
                await recv(connection)

    run(main)


@pytest.mark.parametrize(
    "behaviour", ["silent", "keepalives", "other_fields", "helo_then_silent", "scar_then_keepalives"]
)
def test_connect_fails_in_time_when_the_handshake_never_completes(behaviour: str) -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keepalive = packet_bytes("LINK", [], packet_id=0)
        if behaviour in ("helo_then_silent", "scar_then_keepalives"):
            writer.write(packet_bytes("LINK", [("HELO", 0, {})]))
            await read_packet(reader)
        if behaviour == "scar_then_keepalives":
            writer.write(packet_bytes("LINK", [("SCAR", 1, {"LINK": TIMEOUT})]))
        while not writer.is_closing():
            if behaviour in ("keepalives", "scar_then_keepalives"):
                writer.write(keepalive)
            elif behaviour == "other_fields":
                writer.write(field_packet())
            await asyncio.sleep(0.2)

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises(ncplib.NetworkTimeoutError):
                await connect(port)

    run(main)


# A server that sends what it should not.


@pytest.mark.parametrize("case", sorted(set(malformed_packets()) - {"truncated"}))
def test_garbage_after_the_handshake_raises_decode_error(case: str) -> None:
    data = malformed_packets()[case]

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(field_packet(name="GOOD") + data)
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            # What came before the garbage is delivered (when the framer could tell it apart).
            try:
                first = await recv(connection)
            except ncplib.DecodeError:
                assert case not in ("field_size_zero", "param_overflows_field")
            else:
                assert first.name == "GOOD"
                with pytest.raises(ncplib.DecodeError):
                    await recv(connection)
            assert connection.is_closing()
            # No reading on past the broken framing, and no memory set aside for huge claims.
            with pytest.raises(ncplib.NCPError):
                await recv(connection)
            assert connection._protocol.reader.buffered < 1024 * 1024

    run(main)


def test_unknown_type_id_gives_bytes_and_a_decode_warning() -> None:
    wire = bytearray(field_packet(name="ODD", X=b"abcd", Y=7))
    # The first param's type byte: packet header 32 + field header 12 + 7.
    assert wire[32 + 12 + 7] == 0x80
    wire[32 + 12 + 7] = 0x42

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(bytes(wire))
        writer.write(field_packet(name="NEXT"))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            with pytest.warns(ncplib.DecodeWarning):
                field = await recv(connection)
            assert (field.name, field["X"], field["Y"]) == ("ODD", b"abcd", 7)
            # The stream goes on.
            assert (await recv(connection)).name == "NEXT"

    run(main)


def test_server_claiming_a_4_gib_packet_is_refused_from_the_header() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(malformed_packets()["huge_4gib"][:32])
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            with pytest.raises(ncplib.DecodeError, match="exceeds the maximum"):
                await recv(connection)
            assert connection._protocol.reader.buffered < 1024

    run(main)


# Flow control and cancellation.


def test_a_flooding_server_is_held_back_while_the_client_does_not_read() -> None:
    # About 20 MiB in all: far more than the client's high-water mark and the socket buffers.
    count = 5000
    pad = b"x" * 4096
    sent = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        # Small fixed socket buffers on both ends: the kernel's autotuning could otherwise take
        # tens of MiB over loopback, and the whole flood would fit in them.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        await raw_handshake(reader, writer)
        while sent < count:
            writer.write(packet_bytes("DSPL", [("FLOD", 1, {**checked_fields(sent), "PAD": pad})]))
            sent += 1
            await writer.drain()
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            connection.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024
            )
            protocol = connection._protocol
            for _ in range(20):
                await asyncio.sleep(0.05)
                # Reading pauses at the high-water mark: held bytes stay within one read (at
                # least 64 KiB are offered) of it.
                assert protocol.reader.buffered <= protocol.high_water + 64 * 1024
            assert sent < count  # The server was held back.
            checker = StreamChecker()
            for _ in range(count):
                checker.check(await recv(connection))
            assert not checker.problems, checker.problems[:5]

    run(main)


def test_cancelled_recv_leaves_the_connection_usable() -> None:
    second = field_packet(name="TWO", DATA=array.array("h", range(-50, 50)))

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        await asyncio.sleep(0.3)  # The client's first recv is cancelled meanwhile.
        writer.write(field_packet(name="ONE"))
        # The next packet in two halves, the client cancelling a recv in between.
        writer.write(second[:30])
        await asyncio.sleep(0.3)
        writer.write(second[30:])
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, await connect(port) as connection:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(connection.recv(), 0.1)
            assert (await recv(connection)).name == "ONE"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(connection.recv(), 0.1)
            field = await recv(connection)
            assert field.name == "TWO"
            assert list(field["DATA"]) == list(range(-50, 50))

    run(main)


def test_errors_are_clean_under_async_with() -> None:
    """An error inside ``async with`` propagates; the connection still closes cleanly."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(b"\xde\xad\xbe\xef" * 16)
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await connect(port)
            with pytest.raises(ncplib.DecodeError):
                async with connection:
                    await recv(connection)
            assert connection.is_closing()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                connection.send("DSPC", "LATE")  # Dropped quietly: the connection is closing.

    run(main)
