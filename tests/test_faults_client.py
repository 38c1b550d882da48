"""
Faults between our client and a server: a bad link (latency, a bandwidth limit, one byte per
segment), a link that breaks (a stall or a reset in the middle of a packet, a close, a blackhole)
and a server killed with ``kill -9`` and started again on the same port.

The server is our server in a subprocess streaming checked fields (``hostile_peers.load_handler``);
the faults come from :class:`faultproxy.FaultProxy` between it and the client. For every fault:
what the user sees (the exception, within the negotiated timeout), that every field that got
through before the fault arrives intact and in order, and that nothing is left behind: tasks,
sockets, timers. The time from the fault to the exception is printed (``pytest -s``) for
RELIABILITY.md; no test asserts a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faultproxy import FaultProxy, Link
from hostile_peers import Baseline, ServerProcess, StreamChecker, checked_fields, rss_kib
from netutil import LOOPS, run

import ncplib
from ncplib.packets import decode_packet

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

#: The shortest timeout a client can negotiate: faults that leave the link silent take this long.
TIMEOUT = 5
HOST = "127.0.0.1"


def seqns_forwarded(link: Link) -> list[int]:
    """The sequence numbers of the stream fields in the packets the link carried whole."""
    seqns = []
    for data in link.packets_down:
        for _name, _id, params in decode_packet(data)[4]:
            values = dict(params)
            if "SEQN" in values:
                seqns.append(int(values["SEQN"]))
    return seqns


class Stream:
    """Reads a ``DSPL LOAD`` stream of checked fields until the connection fails."""

    def __init__(self, connection: ncplib.Connection) -> None:
        self.connection = connection
        self.checker = StreamChecker()
        self.seqns: list[int] = []
        self.error: BaseException | None = None
        self.failed_at = 0.0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        self.connection.send("DSPL", "LOAD")
        try:
            while True:
                field = await self.connection.recv()
                self.checker.check(field)
                self.seqns.append(int(field["SEQN"]))
        except ncplib.NCPError as ex:
            self.error = ex
            self.failed_at = asyncio.get_running_loop().time()

    async def received(self, count: int) -> None:
        while len(self.seqns) < count:
            assert not self._task.done(), self.error
            await asyncio.sleep(0.01)

    async def failure(self, limit: float) -> BaseException:
        await asyncio.wait_for(self._task, limit)
        assert self.error is not None
        return self.error


@contextlib.asynccontextmanager
async def client(port: int) -> AsyncIterator[ncplib.Connection]:
    connection = await ncplib.connect(HOST, port, timeout=TIMEOUT)
    try:
        yield connection
    finally:
        connection.close()
        await connection.wait_closed()


@contextlib.asynccontextmanager
async def proxied(server: ServerProcess, *, record: bool = False) -> AsyncIterator[FaultProxy]:
    """
    A :class:`FaultProxy` in front of ``server``; on exit every link is closed and nothing may be
    left behind (tasks, sockets, timers) compared with before.
    """
    # Warm-up: event loops open descriptors of their own on first use.
    async with client(server.port):
        pass
    baseline = Baseline()
    with FaultProxy(server.port, record=record) as proxy:
        yield proxy
        proxy.close_links()
    await baseline.check()


#: Seconds from the fault to the exception, per fault (printed at the end of the module's runs).
DETECTED: dict[str, float] = {}

#: What the user sees for each cut of the link, in the middle of a packet from the server.
EXPECTED: dict[str, type[ncplib.NCPError]] = {
    # Nothing more arrives: the negotiated timeout.
    "stall": ncplib.NetworkTimeoutError,
    "blackhole": ncplib.NetworkTimeoutError,
    # A reset, or a FIN in the middle of a packet: the connection is lost.
    "reset": ncplib.NetworkError,
    "close": ncplib.NetworkError,
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_link_cut_mid_packet_raises_in_time_and_loses_nothing_before(kind: str, loop: str) -> None:
    async def main(server: ServerProcess) -> None:
        async with proxied(server, record=True) as proxy, client(proxy.port) as connection:
            stream = Stream(connection)
            await stream.received(200)
            link = proxy.links[-1]
            await proxy.cut(kind, mid_packet=kind != "blackhole")
            cut_at = asyncio.get_running_loop().time()
            error = await stream.failure(3 * TIMEOUT)
            DETECTED[kind] = stream.failed_at - cut_at
            print(f"\n{kind}: {type(error).__name__}({error}) {DETECTED[kind]:.2f} s after the fault")
            assert isinstance(error, EXPECTED[kind]), repr(error)
            if EXPECTED[kind] is ncplib.NetworkError:
                assert not isinstance(error, ncplib.NetworkTimeoutError)
            # Every field that got through whole arrived, intact and in order, and no other.
            assert not stream.checker.problems, stream.checker.problems[:5]
            assert stream.seqns == seqns_forwarded(link)
            # The connection stays broken, without hanging.
            with pytest.raises(ncplib.NCPError):
                await asyncio.wait_for(connection.recv(), 2 * TIMEOUT)

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), loop=loop, timeout=60)


def test_a_server_killed_and_restarted_on_its_port() -> None:
    """
    ``kill -9`` of the server mid-stream: the client sees the connection lost at once (the
    kernel closes the dead process's sockets), every field received was intact, and once the
    server listens again on the same port a new connection is served.
    """

    async def main() -> None:
        server = ServerProcess("load", TIMEOUT).__enter__()
        port = server.port
        try:
            async with client(port):
                pass
            baseline = Baseline()
            async with client(port) as connection:
                stream = Stream(connection)
                await stream.received(200)
                server.kill()
                killed_at = asyncio.get_running_loop().time()
                error = await stream.failure(3 * TIMEOUT)
                DETECTED["kill -9"] = stream.failed_at - killed_at
                print(f"\nkill -9: {type(error).__name__}({error}) {DETECTED['kill -9']:.2f} s after")
                # A FIN between packets reads as a close, one in the middle of a packet (or a
                # reset, when the dead process had unread bytes) as a lost connection.
                assert isinstance(error, (ncplib.NetworkError, ncplib.ConnectionClosed)), repr(error)
                assert not isinstance(error, ncplib.NetworkTimeoutError)
                assert not stream.checker.problems, stream.checker.problems[:5]
            with pytest.raises(ncplib.NetworkError):
                await ncplib.connect(HOST, port, timeout=TIMEOUT)
        finally:
            server.__exit__(None, None, None)
        with ServerProcess("load", TIMEOUT, port=port) as restarted:
            assert restarted.port == port
            async with client(port) as connection:
                stream = Stream(connection)
                await stream.received(50)
                assert not stream.checker.problems
            await asyncio.sleep(0)
            await stream.failure(TIMEOUT)  # ended by the close: ConnectionClosed
            assert isinstance(stream.error, ncplib.ConnectionClosed)
            # (The restarted server's pipes stand in for those of the first.)
            await baseline.check()

    run(main, timeout=60)


def test_the_server_lets_go_of_clients_that_vanished() -> None:
    """
    Clients blackholed (gone without a FIN) or stalled: the server closes their connections at
    the timeout and releases them (its own count of connections served drops back), while a
    direct client is served throughout.
    """

    async def served(connection: ncplib.Connection) -> int:
        return int((await connection.send("DSPC", "CONN").recv())["OPEN"])

    async def main(server: ServerProcess) -> None:
        async with proxied(server) as proxy, client(server.port) as direct:
            clients = [await ncplib.connect(HOST, proxy.port, timeout=TIMEOUT) for _ in range(10)]
            try:
                assert await served(direct) == 11
                await proxy.cut("blackhole", mid_packet=False)
                loop = asyncio.get_running_loop()
                start = loop.time()
                while await served(direct) > 1:
                    assert loop.time() < start + 4 * TIMEOUT, "the server kept the vanished clients"
                    await asyncio.sleep(0.1)
                DETECTED["server: vanished clients released"] = loop.time() - start
                print(f"\nserver released 10 vanished clients {loop.time() - start:.1f} s after the fault")
            finally:
                for connection in clients:
                    connection.transport.abort()
                await asyncio.gather(*(connection.wait_closed() for connection in clients))

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=60)


# Bad links that still work: everything must arrive, in order and intact.


async def echo_exchange(connection: ncplib.Connection, count: int, in_flight: int = 8) -> StreamChecker:
    """Sends ``count`` checked fields (``in_flight`` at a time) and checks every echo."""
    checker = StreamChecker()
    sent = received = 0
    while received < count:
        while sent < count and sent - received < in_flight:
            connection.send("DSPL", "ECHO", **checked_fields(sent))
            sent += 1
        await connection.drain()
        checker.check(await connection.recv())
        received += 1
    return checker


SLOW_LINKS: dict[str, dict[str, Any]] = {
    # 0.3 s each way: 0.6 s a round trip, well inside the timeout.
    "latency": {"delay": 0.3},
    # 64 KiB/s each way.
    "bandwidth": {"rate": 64 * 1024},
    # Every byte in a segment of its own, both ways.
    "fragments": {"chunk": 1},
}


@pytest.mark.parametrize("name", sorted(SLOW_LINKS))
def test_a_slow_or_fragmented_link_delivers_everything_intact(name: str) -> None:
    settings = SLOW_LINKS[name]
    count = 60

    async def main(server: ServerProcess) -> None:
        async with proxied(server) as proxy:
            proxy.set("down", **settings)
            proxy.set("up", **settings)
            loop = asyncio.get_running_loop()
            start = loop.time()
            async with client(proxy.port) as connection:
                connected = loop.time()
                checker = await echo_exchange(connection, count)
                done = loop.time()
                assert not checker.problems, checker.problems[:5]
                assert checker.next == count
                # And a stream from the server, through the same link.
                stream = Stream(connection)
                await stream.received(40)
            await stream.failure(TIMEOUT)
            assert isinstance(stream.error, ncplib.ConnectionClosed)
            assert not stream.checker.problems
            print(
                f"\n{name}: connect {connected - start:.2f} s, {count} echoes {done - connected:.2f} s, "
                f"{len(stream.seqns)} stream fields intact"
            )

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=120)


def test_latency_beyond_the_timeout_fails_connect_in_time() -> None:
    async def main(server: ServerProcess) -> None:
        async with proxied(server) as proxy:
            proxy.set("down", delay=TIMEOUT + 1)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ncplib.NetworkTimeoutError):
                await ncplib.connect(HOST, proxy.port, timeout=TIMEOUT)
            print(f"\nlatency {TIMEOUT + 1} s: connect failed after {loop.time() - start:.2f} s")

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=60)


def test_a_packet_slower_than_the_timeout_times_out() -> None:
    """
    A packet must arrive whole within the timeout: on a link too slow for a 64 KiB packet to
    cross in 5 s (8 KiB/s), the client times out although bytes keep arriving. The same rule
    closes peers that trickle bytes on purpose; the remedy is a longer timeout.
    """

    async def main(server: ServerProcess) -> None:
        async with proxied(server) as proxy, client(proxy.port) as connection:
            proxy.set("down", rate=8 * 1024)
            connection.send("DSPL", "ECHO", DATA=b"x" * 65536)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ncplib.NetworkTimeoutError):
                await asyncio.wait_for(connection.recv(), 4 * TIMEOUT)
            print(f"\n64 KiB at 8 KiB/s: timed out after {loop.time() - start:.2f} s")

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=60)


# Many cycles: nothing may accumulate.


def test_a_hundred_fault_cycles_leave_nothing_behind() -> None:
    """
    100 connections cut by a reset or a FIN mid-packet, one after another, and 100 stalled and
    blackholed at once (50 a batch): no task, socket or timer left, RSS back near its start.
    """
    if rss_kib() is None:
        pytest.skip("needs /proc to read a process's memory")
    figures: dict[str, Any] = {}

    async def cut_one(proxy: FaultProxy, kind: str) -> None:
        async with client(proxy.port) as connection:
            stream = Stream(connection)
            await stream.received(20)
            await proxy.cut(kind)
            error = await stream.failure(3 * TIMEOUT)
            assert isinstance(error, ncplib.NetworkError) and not isinstance(
                error, ncplib.NetworkTimeoutError
            )
            assert not stream.checker.problems
        proxy.close_links()

    async def stall_batch(proxy: FaultProxy, kind: str, count: int) -> None:
        connections = await asyncio.gather(
            *(ncplib.connect(HOST, proxy.port, timeout=TIMEOUT) for _ in range(count))
        )
        try:
            streams = [Stream(connection) for connection in connections]
            await asyncio.gather(*(stream.received(5) for stream in streams))
            await proxy.cut(kind, mid_packet=kind == "stall")
            errors = await asyncio.gather(*(stream.failure(3 * TIMEOUT) for stream in streams))
            assert all(isinstance(error, ncplib.NetworkTimeoutError) for error in errors), errors
            assert not any(stream.checker.problems for stream in streams)
        finally:
            for connection in connections:
                connection.close()
            await asyncio.gather(*(connection.wait_closed() for connection in connections))
            proxy.close_links()

    async def main(server: ServerProcess) -> None:
        with FaultProxy(server.port) as proxy:
            # Warm-up: a round of each, so that what is measured is growth, not first use.
            for i in range(10):
                await cut_one(proxy, ("reset", "close")[i % 2])
            await stall_batch(proxy, "stall", 50)
            await asyncio.sleep(0.2)
            baseline = Baseline()
            rss = rss_kib()
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(100):
                await cut_one(proxy, ("reset", "close")[i % 2])
            figures["cut cycles s"] = round(loop.time() - start, 1)
            await stall_batch(proxy, "stall", 50)
            await stall_batch(proxy, "blackhole", 50)
            await asyncio.sleep(0.3)
            gc.collect()
            figures["rss KiB"] = (rss, rss_kib())
            await baseline.check()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=180)
    print(f"\nfault cycles: {figures}")
    before, after = figures["rss KiB"]
    assert after - before < 16 * 1024, figures


def test_drain_against_a_blackhole_raises_within_the_timeout() -> None:
    """
    A producer (``send()`` then ``await drain()``) whose peer vanished without a FIN: its writes
    pile up until ``drain()`` blocks. It raises :exc:`ncplib.NetworkTimeoutError` once the write
    buffer has not moved for the connection's timeout, and the connection is closed.
    """

    async def main(server: ServerProcess) -> None:
        with FaultProxy(server.port) as proxy:
            connection = await ncplib.connect(HOST, proxy.port, timeout=TIMEOUT)
            try:
                await proxy.cut("blackhole", mid_packet=False)

                async def produce() -> None:
                    while True:
                        connection.send("DSPL", "ECHO", DATA=b"x" * 65536)
                        await connection.drain()

                with pytest.raises(ncplib.NetworkTimeoutError):
                    # Three times the timeout: only bounds the wait for what should happen.
                    await asyncio.wait_for(produce(), 3 * TIMEOUT)
                assert connection.is_closing()
                with pytest.raises(ncplib.NetworkTimeoutError):
                    await connection.drain()
                with pytest.raises(ncplib.NetworkTimeoutError):
                    await connection.recv()
            finally:
                connection.transport.abort()
                await connection.wait_closed()
                proxy.close_links()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=60)
