"""Closing clients, servers and servers with clients attached, cleanly; peers that vanish."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from netutil import LOOPS, no_asyncio_noise, packet_bytes, raw_handshake, raw_server, run, serving

import ncplib


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_with_clients_attached(loop: str) -> None:
    handler_outcomes: list[str] = []
    started: asyncio.Queue[None] = asyncio.Queue()

    async def handler(connection: ncplib.Connection) -> None:
        started.put_nowait(None)
        try:
            await connection.recv()
        except asyncio.CancelledError:
            handler_outcomes.append("cancelled")
            raise

    async def main() -> None:
        server = await ncplib.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clients = [await ncplib.connect("127.0.0.1", port) for _ in range(3)]
        for _ in clients:
            await started.get()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)
        assert handler_outcomes == ["cancelled"] * 3
        for client in clients:
            with pytest.raises(ncplib.ConnectionClosed):
                await asyncio.wait_for(client.recv(), 10)
            client.close()
            await client.wait_closed()

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_server_close_during_handshake_and_tunnel(loop: str) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        raise AssertionError("never reached")

    async def main() -> None:
        for options in ({}, {"authenticate": lambda u, p: True}):
            server = await ncplib.start_server(handler, "127.0.0.1", 0, **options)  # type: ignore[arg-type]
            port = server.sockets[0].getsockname()[1]
            # A client that connects and then says nothing.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.05)
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()

    run(main, loop=loop)


def test_server_async_with_and_serve_forever() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            field.send(OK=1)

    async def main() -> None:
        server = await ncplib.start_server(handler, "127.0.0.1", 0, start_serving=False)
        assert isinstance(server, asyncio.AbstractServer)
        port = server.sockets[0].getsockname()[1]
        async with server:
            serving_task = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0.01)
            assert server.is_serving()
            client = await ncplib.connect("127.0.0.1", port)
            assert (await client.send("DSPC", "SWEP").recv())["OK"] == 1
            serving_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving_task
            with pytest.raises(ncplib.ConnectionClosed):
                await asyncio.wait_for(client.recv(), 10)
            client.close()
            await client.wait_closed()

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_peer_vanishing_mid_packet(loop: str) -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        packet = packet_bytes("DSPC", [("HALF", 1, {"DATA": b"x" * 1000})])
        writer.write(packet[: len(packet) // 2])
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port)
            with pytest.raises(ncplib.NetworkError, match="middle of a packet"):
                await asyncio.wait_for(connection.recv(), 10)
            connection.close()
            await connection.wait_closed()

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_peer_reset(loop: str) -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        await read_then_reset(writer)

    async def read_then_reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port)
            with pytest.raises((ncplib.NetworkError, ncplib.ConnectionClosed)):
                await asyncio.wait_for(connection.recv(), 10)
            connection.close()
            await connection.wait_closed()

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_close_wakes_a_pending_recv(loop: str) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            pending = asyncio.ensure_future(connection.recv())
            await asyncio.sleep(0.01)
            connection.close()
            with pytest.raises(ncplib.ConnectionClosed):
                await asyncio.wait_for(pending, 10)
            await connection.wait_closed()

    run(main, loop=loop)


def test_client_closing_while_server_streams() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        while not connection.is_closing():
            connection.send("DSPC", "DATA", DATA=b"x" * 10000)
            await asyncio.sleep(0)

    async def main() -> None:
        async with serving(handler) as (_, port):
            for _ in range(3):
                connection = await ncplib.connect("127.0.0.1", port)
                await connection.recv()
                connection.close()
                await connection.wait_closed()

    run(main)


def test_connect_failure_leaves_nothing_behind() -> None:
    async def main() -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            # Bound but not listening: the connection is refused.
            with pytest.raises(ncplib.NetworkError):
                await ncplib.connect("127.0.0.1", port, timeout=5)

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_connect_cancelled_while_resolving_leaves_no_noise(loop: str) -> None:
    # Cancelled (or timed out) while the name is being resolved, and the name then fails to
    # resolve: nothing may be left to log "Future exception was never retrieved" (uvloop's own
    # create_connection leaves its resolution future so).
    async def main() -> None:
        running = asyncio.get_running_loop()
        for passes in range(1, 6):
            for _ in range(4):
                task = asyncio.create_task(ncplib.connect("node.invalid", 9999, timeout=5))
                for _ in range(passes):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ncplib.NetworkError):
                    await task
        # Lookups queued after those end after them: by then every cancelled one has failed.
        for _ in range(8):
            with pytest.raises(socket.gaierror):
                await running.getaddrinfo("node.invalid", 9999)

    run(main, loop=loop)


def test_connect_cancelled_mid_handshake_leaves_nothing_behind() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # Never sends HELO.

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ncplib.connect("127.0.0.1", port), 0.2)

    run(main)


def test_asyncio_run_with_a_connection_left_open() -> None:
    # Forgetting to close: asyncio.run's clean-up must still not print noise about our tasks.
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        server = await ncplib.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = await ncplib.connect("127.0.0.1", port)
        connection.send("DSPC", "SWEP")
        server.close()
        await server.wait_closed()
        connection.close()
        await connection.wait_closed()

    with no_asyncio_noise():
        asyncio.run(main(), debug=True)


@pytest.mark.parametrize("loop", LOOPS)
def test_garbage_after_the_handshake_raises_decode_error_and_closes(loop: str) -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(b"HTTP/1.1 200 OK\r\n" + bytes(range(256)) * 4)
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port)
            with pytest.raises(ncplib.DecodeError):
                await asyncio.wait_for(connection.recv(), 10)
            assert connection.is_closing()
            connection.close()
            await connection.wait_closed()

    run(main, loop=loop)


def test_server_survives_a_garbage_client() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            field.send(OK=1)

    async def main() -> None:
        async with serving(handler) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bytes(range(256)) * 64)
            await asyncio.wait_for(reader.read(), 10)  # The server hangs up on it.
            writer.close()
            await writer.wait_closed()
            async with await ncplib.connect("127.0.0.1", port) as connection:
                assert (await connection.send("DSPC", "SWEP").recv())["OK"] == 1

    run(main)
