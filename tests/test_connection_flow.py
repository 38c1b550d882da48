"""Flow control both ways, zero-copy numpy mode and the packet size limit."""

from __future__ import annotations

import array
import asyncio
import socket

import pytest
from netutil import LOOPS, packet_bytes, raw_handshake, raw_server, run, serving

import ncplib
from ncplib import framing, protocol
from ncplib._protocol import NCPProtocol

PACKETS = 400
CHUNK = array.array("i", range(32 * 1024))  # 128 KiB per packet, 50 MiB in all.


@pytest.mark.parametrize("loop", LOOPS)
def test_slow_reader_pauses_the_sender_and_memory_stays_bounded(loop: str) -> None:
    sent: list[int] = []
    server_connections: list[ncplib.Connection] = []

    async def handler(connection: ncplib.Connection) -> None:
        server_connections.append(connection)
        await connection.recv_field("DSPC", "GO")
        for n in range(PACKETS):
            connection.send("DSPC", "DATA", N=n, DATA=CHUNK)
            await connection.drain()
            sent.append(n)
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            async with connection:
                protocol = connection._protocol
                protocol.high_water = 512 * 1024
                connection.send("DSPC", "GO")
                # Not reading: our reading pauses, then the server's writes pause.
                for _ in range(1000):
                    if (
                        server_connections
                        and server_connections[0]._protocol._write_paused
                        and protocol._read_paused
                    ):
                        break
                    await asyncio.sleep(0.01)
                assert server_connections[0]._protocol._write_paused
                assert protocol._read_paused
                assert protocol.reader.buffered <= protocol.high_water + 2 * 130 * 1024
                assert len(sent) < PACKETS
                # Now read everything: reading resumes and every packet arrives intact, in order.
                for n in range(PACKETS):
                    field = await connection.recv()
                    assert field["N"] == n
                    assert field["DATA"] == CHUNK
                    assert protocol.reader.buffered <= protocol.high_water + 2 * 130 * 1024
                assert sent == list(range(PACKETS))

    run(main, loop=loop)


def test_drain_raises_when_the_peer_vanishes() -> None:
    outcome: list[BaseException] = []

    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv_field("DSPC", "GO")
        try:
            while True:
                connection.send("DSPC", "DATA", DATA=CHUNK)
                await connection.drain()
        except ncplib.NCPError as ex:
            outcome.append(ex)

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            connection._protocol.high_water = 64 * 1024
            connection.send("DSPC", "GO")
            await connection.recv()
            connection.transport.abort()
            await connection.wait_closed()
            for _ in range(500):
                if outcome:
                    break
                await asyncio.sleep(0.01)

    run(main)
    assert len(outcome) == 1
    assert isinstance(outcome[0], (ncplib.NetworkError, ncplib.ConnectionClosed))


def test_drain_returns_at_once_when_nothing_is_queued() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            connection.send("DSPC", "SWEP")
            await asyncio.wait_for(connection.drain(), 10)

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_numpy_mode_gives_read_only_views(loop: str) -> None:
    numpy = pytest.importorskip("numpy")
    big = array.array("h", range(-30000, 30000))  # 120 KB: received into a buffer of its own.
    received: list[object] = []

    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            received.append(field["DIQT"])
            field.send(DIQT=big, PDAT=array.array("B", [1, 2, 3, 4]), NAME="x")

    async def main() -> None:
        async with serving(handler, use_numpy=True) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, use_numpy=True)
            async with connection:
                field = await connection.send("DSPC", "TIME", DIQT=numpy.arange(8, dtype=numpy.int16)).recv()
            diqt, pdat = field["DIQT"], field["PDAT"]
            for value in (diqt, pdat):
                assert isinstance(value, numpy.ndarray)
                assert not value.flags.writeable
                with pytest.raises(ValueError):
                    value[0] = 0
            assert diqt.dtype == numpy.int16
            assert diqt.tolist() == big.tolist()
            assert pdat.tolist() == [1, 2, 3, 4]
            assert field["NAME"] == "x"

    run(main, loop=loop)
    assert isinstance(received[0], numpy.ndarray)
    assert received[0].tolist() == list(range(8))


def test_oversized_packet_raises_decode_error_and_closes() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        writer.write(packet_bytes("DSPC", [("BIG", 1, {"DATA": b"x" * 200_000})]))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port, max_packet_size=64 * 1024)
            with pytest.raises(ncplib.DecodeError, match="exceeds the maximum"):
                await connection.recv()
            assert connection.is_closing()
            # Refused from its header: no buffer was set aside for the packet.
            assert connection._protocol.reader._own is None
            with pytest.raises(ncplib.NCPError):
                await connection.recv()
            connection.close()
            await connection.wait_closed()

    run(main)


def test_server_max_packet_size() -> None:
    errors: list[BaseException] = []

    async def handler(connection: ncplib.Connection) -> None:
        try:
            await connection.recv()
        except ncplib.DecodeError as ex:
            errors.append(ex)

    async def main() -> None:
        async with serving(handler, max_packet_size=framing.DEFAULT_MAX_PACKET_SIZE // 1024) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            connection.send("DSPC", "BIG", DATA=b"x" * 100_000)
            with pytest.raises((ncplib.ConnectionClosed, ncplib.NetworkError)):
                await connection.recv()
            connection.close()
            await connection.wait_closed()

    run(main)
    assert len(errors) == 1


def test_invalid_options_are_rejected_before_connecting() -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await ncplib.connect("127.0.0.1", 1, max_packet_size=8)
        with pytest.raises(ValueError):
            await ncplib.start_server(lambda c: asyncio.sleep(0), "127.0.0.1", 0, max_packet_size=8)

    run(main)


def test_time_spent_paused_does_not_count_against_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MIN_TIMEOUT", 1)

    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv_field("DSPC", "GO")
        for n in range(20):
            connection.send("DSPC", "DATA", N=n, DATA=CHUNK)
            await connection.drain()
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, timeout=2)
            async with connection:
                connection._protocol.high_water = 64 * 1024  # Less than one packet.
                connection.send("DSPC", "GO")
                # Sit on the data for longer than the timeout while reading is paused.
                for _ in range(500):
                    if connection._protocol._read_paused:
                        break
                    await asyncio.sleep(0.01)
                assert connection._protocol._read_paused
                await asyncio.sleep(2.5)
                for n in range(20):
                    assert (await connection.recv())["N"] == n

    run(main)


class Ticker:
    """Counts the passes of the event loop (a task that yields at each) until stopped."""

    def __init__(self) -> None:
        self.ticks = 0
        self._running = True
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._running:
            self.ticks += 1
            await asyncio.sleep(0)

    async def stop(self) -> None:
        self._running = False
        await self._task


@pytest.mark.parametrize("loop", LOOPS)
def test_a_send_and_drain_loop_lets_other_tasks_run_while_the_socket_takes_everything(loop: str) -> None:
    sends = 2000
    outcome: dict[str, int] = {}

    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        # A write buffer that never fills: drain() never has a reason to wait.
        connection.transport.set_write_buffer_limits(high=64 * 1024 * 1024)
        ticker = Ticker()
        await asyncio.sleep(0)
        before = ticker.ticks
        for n in range(sends):
            field.send(N=n)
            await connection.drain()
            assert not connection._protocol._write_paused
        outcome["ticks"] = ticker.ticks - before
        await ticker.stop()
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "GO")
            for n in range(sends):
                assert (await response.recv())["N"] == n

    run(main, loop=loop)
    # The other task ran now and then while the handler sent (not once per send, not never).
    assert 0 < outcome["ticks"] < sends


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_times_out_only_when_the_write_buffer_stops_moving(loop: str) -> None:
    """
    drain()'s deadline counts from the last time the write buffer shrank: a peer that reads
    slowly but steadily for several timeouts never trips it; once it stops reading, drain()
    raises :exc:`ncplib.NetworkTimeoutError` and the connection is aborted. Its timer exists only
    while drain() waits.
    """
    timeout = 0.3
    reading = {"on": True}

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while reading["on"]:
            if not await reader.read(32 * 1024):
                return
            await asyncio.sleep(0.02)
        # No more reading from here on, until the server closes this connection.
        writer.transport.pause_reading()
        for _ in range(400):
            if writer.is_closing():
                return
            await asyncio.sleep(0.05)

    async def main() -> None:
        async with raw_server(peer) as port:
            running = asyncio.get_running_loop()
            # A small kernel send buffer, so that the write buffer moves as the peer reads.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.setblocking(False)
            await running.sock_connect(sock, ("127.0.0.1", port))
            transport, protocol = await running.create_connection(
                lambda: NCPProtocol(max_packet_size=1 << 20, use_numpy=False), sock=sock
            )
            data = bytes(64 * 1024)
            try:
                waits = 0
                end = running.time() + 4 * timeout
                while running.time() < end:
                    protocol.write_buffers([data])
                    protocol.flush()
                    waits += protocol._write_paused
                    await protocol.drain(timeout)
                    assert protocol._drain_timer is None
                assert waits > 0  # drain() did wait, and the deadline never fired.
                reading["on"] = False
                with pytest.raises(ncplib.NetworkTimeoutError, match="took none of the"):
                    for _ in range(10_000):
                        protocol.write_buffers([data])
                        await asyncio.wait_for(protocol.drain(timeout), 10 * timeout)
                assert protocol.is_closing()
                with pytest.raises(ncplib.NetworkTimeoutError):
                    await protocol.drain(timeout)
            finally:
                transport.abort()
                await protocol.wait_closed(1)

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_backlog_read_back_to_back_lets_the_event_loop_run_every_64_fields(loop: str) -> None:
    backlog = 300

    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        for n in range(backlog):
            field.send(N=n)
        await connection.recv()

    async def main() -> list[int]:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "GO")
            assert (await response.recv())["N"] == 0
            # Let the rest arrive before reading it: a backlog of complete packets.
            reader = connection._protocol.reader
            held = -1
            for _ in range(200):
                if reader.buffered == held:
                    break
                held = reader.buffered
                await asyncio.sleep(0.05)
            ticker = Ticker()
            await asyncio.sleep(0)
            # How many fields each pass of the event loop returned.
            streaks: list[int] = []
            seen = ticker.ticks
            for n in range(1, backlog):
                assert (await response.recv())["N"] == n
                if ticker.ticks != seen or not streaks:
                    streaks.append(0)
                    seen = ticker.ticks
                streaks[-1] += 1
            await ticker.stop()
            return streaks

    streaks = run(main, loop=loop)
    # Fields already received come without suspending, 64 at a time, and then other tasks run.
    assert max(streaks) == 64, streaks
