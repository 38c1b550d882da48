"""
The push hook for consumers of many connections: ``NCPProtocol.on_data``,
``Connection._recv_nowait()`` and ``NCPProtocol.last_received``.
"""

from __future__ import annotations

import array
import asyncio
import warnings

import pytest
from netutil import LOOPS, run, serving

import ncplib

CHUNK = array.array("i", range(32 * 1024))  # 128 KiB per packet


async def _until(condition: object, what: str) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("loop", LOOPS)
def test_on_data_signals_fields_that_recv_nowait_returns_without_waiting(loop: str) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        for n in range(3):
            field.send(N=n)
        connection.send("DSPC", "MORE", A=1, B="x")
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            protocol = connection._protocol
            calls = []
            protocol.on_data = lambda: calls.append(protocol.last_received)
            assert connection._recv_nowait() is None
            before = protocol.last_received
            connection.send("DSPC", "GO")
            received: list[ncplib.Field] = []
            while len(received) < 4:
                await _until(lambda: calls, "on_data")
                calls.clear()
                while (field := connection._recv_nowait()) is not None:
                    received.append(field)
            assert [f.get("N") for f in received[:3]] == [0, 1, 2]
            assert all(f.packet_type == "DSPC" and f.name == "GO" for f in received[:3])
            assert received[3].name == "MORE" and dict(received[3]) == {"A": 1, "B": "x"}
            assert received[3].connection is connection
            assert protocol.last_received >= before
            # Nothing more is buffered: None, and no timer or waiter was left behind.
            assert connection._recv_nowait() is None
            assert protocol._waiter is None and not protocol._waiters

    run(main, loop=loop)


def test_recv_nowait_filters_like_recv() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        field.send(ACKN=1)
        field.send(WARN="careful", N=1)
        field.send(N=2)
        field.send(ERRO="broken", ERRC=7)
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            ready = asyncio.Event()
            connection._protocol.on_data = ready.set
            connection.send("DSPC", "GO")
            got: list[object] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                while len(got) < 3:
                    await ready.wait()
                    ready.clear()
                    try:
                        while (field := connection._recv_nowait()) is not None:
                            got.append(field["N"])
                    except ncplib.CommandError as ex:
                        got.append(ex.code)
            # The ACKN was skipped, the WARN issued and delivered, the ERRO raised.
            assert got == [1, 2, 7]
            assert [type(w.message) for w in caught] == [ncplib.CommandWarning]

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_on_data_reports_the_end_and_recv_nowait_then_raises(loop: str) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        field.send(N=1)
        connection.close()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            ended = asyncio.Event()
            protocol = connection._protocol
            protocol.on_data = ended.set
            connection.send("DSPC", "GO")
            await _until(lambda: protocol._lost, "the connection to end")
            assert ended.is_set()
            # What arrived before the end is still delivered, then the end is raised.
            field = connection._recv_nowait()
            assert field is not None and field["N"] == 1
            with pytest.raises(ncplib.ConnectionClosed):
                connection._recv_nowait()

    run(main, loop=loop)


def test_recv_nowait_raises_connection_closed_after_close() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            connection.close()
            with pytest.raises(ncplib.ConnectionClosed):
                connection._recv_nowait()
            await connection.wait_closed()

    run(main)


def test_a_lagging_consumer_pauses_reading_until_recv_nowait_catches_up() -> None:
    packets = 60

    async def handler(connection: ncplib.Connection) -> None:
        field = await connection.recv_field("DSPC", "GO")
        for n in range(packets):
            field.send(N=n, DATA=CHUNK)
            await connection.drain()
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            protocol = connection._protocol
            protocol.high_water = 512 * 1024
            ready = asyncio.Event()
            protocol.on_data = ready.set
            connection.send("DSPC", "GO")
            await _until(lambda: protocol._read_paused, "reading to pause")
            assert protocol.reader.buffered <= protocol.high_water + 2 * 130 * 1024
            received = []
            while len(received) < packets:
                while (field := connection._recv_nowait()) is not None:
                    received.append(field["N"])
                # Caught up: reading is not paused while the consumer waits.
                assert not protocol._read_paused
                if len(received) < packets:
                    await ready.wait()
                    ready.clear()
            assert received == list(range(packets))

    run(main)
