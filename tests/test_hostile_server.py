"""
Hostile peers against our server: the simulated node and a plain echo server, over real TCP.

Each test keeps a well-behaved client streaming on a connection of its own while hostile peers
attack the same server; that client must see no error, no silence beyond its timeout and no
lost, duplicated or corrupted field. Afterwards nothing may be left behind: tasks, transports,
file descriptors, memory.

Timeouts are the shortest a client can negotiate (5 s), so the slow-peer tests take seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from hostile_peers import (
    ServerProcess,
    StreamChecker,
    base_packet,
    checked_fields,
    client_handshake_by_hand,
    echo_handler,
    malformed_packets,
    open_fds,
    packet,
    read_field,
    read_until_closed,
    rss_kib,
)
from netutil import LOOPS, run, serving

import ncplib
from ncplib import framing
from ncplib.node import SimulatedNode
from ncplib.packets import encode_packet

pytestmark = pytest.mark.hostile

SOAK = os.environ.get("NCPLIB_SOAK") == "1"
#: The shortest timeout a client can negotiate: what the server and the good client use.
TIMEOUT = 5
KINDS = ["echo", "node"]
# Stream replies per second of the simulated node to the good client.
NODE_RATE = 20


def handler_of(kind: str) -> Callable[[ncplib.Connection], Awaitable[None]]:
    return echo_handler if kind == "echo" else SimulatedNode(rate=NODE_RATE, seed=1).handle


class GoodClient:
    """
    A well-behaved client that streams for as long as the test runs.

    Against the echo server it sends ``DSPL ECHO`` fields carrying a sequence number and a
    checksum (a few in flight) and checks every echo. Against the node it keeps a ``DSPL SWEP``
    stream running and sends a ``DSPC GPS`` command every 50 ms, checking every command is
    answered once, in order. Any error ends it; :meth:`finish` re-raises it.
    """

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.port = port
        self.fields = 0
        self.max_gap = 0.0
        self.problems: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> GoodClient:
        self.connection = await ncplib.connect("127.0.0.1", self.port, timeout=TIMEOUT)
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ncplib.NCPError):
                await self._task
        self.connection.close()
        await self.connection.wait_closed()

    async def finish(self) -> None:
        """Stops streaming, collects what is still in flight, and checks everything."""
        assert self._task is not None
        self._stop.set()
        await asyncio.wait_for(self._task, 4 * TIMEOUT)
        assert not self.problems, self.problems[:10]
        assert self.fields > 0
        assert self.max_gap < TIMEOUT

    async def _run(self) -> None:
        if self.kind == "echo":
            await self._echo()
        else:
            await self._node()

    def _received(self, last: float) -> float:
        now = asyncio.get_running_loop().time()
        self.max_gap = max(self.max_gap, now - last)
        return now

    async def _echo(self) -> None:
        connection = self.connection
        checker = StreamChecker()
        sent = 0
        last = asyncio.get_running_loop().time()
        while True:
            if not self._stop.is_set():
                while sent - self.fields < 8:
                    connection.send("DSPL", "ECHO", **checked_fields(sent))
                    sent += 1
                await connection.drain()
            elif self.fields == sent:
                break
            field = await connection.recv()
            last = self._received(last)
            checker.check(field)
            self.fields += 1
            await asyncio.sleep(0.002)  # A steady stream, not a flood: the machine is shared.
        self.problems.extend(checker.problems)
        assert sent == self.fields == checker.next

    async def _node(self) -> None:
        connection = self.connection
        loop = asyncio.get_running_loop()
        connection.send("DSPL", "SWEP", FSTA=400, FSTP=401, RESB=100000)
        commands = answers = 0
        last_answer_id = -1
        next_command = loop.time()
        last = loop.time()
        while True:
            now = loop.time()
            if not self._stop.is_set() and now >= next_command:
                connection.send("DSPC", "GPS")
                commands += 1
                next_command = now + 0.05
            if self._stop.is_set() and answers == commands:
                break
            try:
                field = await asyncio.wait_for(connection.recv(), max(0.01, next_command - now))
            except asyncio.TimeoutError:
                continue
            if field.name == "SWEP":
                last = self._received(last)
                self.fields += 1
                if len(field["PDAT"]) < 10:
                    self.problems.append(f"sweep of {len(field['PDAT'])} bins")
            elif field.name == "GPS":
                answers += 1
                if field.id <= last_answer_id:
                    self.problems.append(f"GPS answer {field.id} after {last_answer_id}")
                last_answer_id = field.id
            else:
                self.problems.append(f"unexpected field {field!r}")
        if answers != commands:
            self.problems.append(f"{commands} GPS commands, {answers} answers")


@contextlib.asynccontextmanager
async def attacked_server(kind: str) -> AsyncIterator[tuple[int, GoodClient]]:
    """
    Our server of ``kind`` in this process, with a good client streaming to it.

    On exit the good client's stream is checked, everything is closed, and no task, transport or
    file descriptor may be left.
    """
    # One connection first: some event loops (uvloop) open descriptors of their own on first use.
    async with (
        serving(echo_handler, timeout=TIMEOUT) as (_, port),
        await ncplib.connect("127.0.0.1", port, timeout=TIMEOUT),
    ):
        pass
    fds = open_fds()
    tasks = asyncio.all_tasks()
    async with serving(handler_of(kind), timeout=TIMEOUT) as (_, port), GoodClient(kind, port) as good:
        yield port, good
        await good.finish()
    await assert_no_leaks(fds, tasks)


async def assert_no_leaks(fds: int | None, tasks: set[asyncio.Task[Any]]) -> None:
    """No task but those running before, and the file descriptors open before (Linux)."""
    await asyncio.sleep(0.05)
    gc.collect()
    left = asyncio.all_tasks() - tasks
    assert not left, left
    if fds is not None:
        for _ in range(100):
            if open_fds() == fds:
                break
            await asyncio.sleep(0.02)
        assert open_fds() == fds


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def close_raw(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


# Malformed input.


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("handshake", [False, True], ids=["before_handshake", "after_handshake"])
@pytest.mark.parametrize("kind", KINDS)
def test_malformed_packets_close_only_their_connection(kind: str, handshake: bool, loop: str) -> None:
    cases = malformed_packets()

    async def attack(name: str, data: bytes, port: int) -> None:
        reader, writer = await open_raw(port)
        try:
            if handshake:
                assert await client_handshake_by_hand(reader, writer, link=TIMEOUT) == TIMEOUT
            writer.write(data)
            if name == "truncated":
                # Cut short, then closed by the peer: the server must let go of it.
                writer.write_eof()
            # Refused at once (no reply is served to a broken stream): the server closes.
            await read_until_closed(reader, 2 * TIMEOUT)
        finally:
            await close_raw(writer)

    async def main() -> None:
        async with attacked_server(kind) as (port, _):
            await asyncio.gather(*(attack(name, data, port) for name, data in cases.items()))
            # And the server still serves newcomers.
            async with await ncplib.connect("127.0.0.1", port, timeout=TIMEOUT) as connection:
                reply = await connection.send("DSPC", "GPS").recv()
                assert reply.name == "GPS"

    run(main, loop=loop)


def test_header_claims_set_no_memory_aside() -> None:
    """
    Headers claiming 4 GiB are refused from the header alone; headers claiming just under the
    maximum packet size cost memory only for the bytes really sent.
    """
    claims = {"4gib": 2**30, "16gib": 0xFFFFFFFF, "under_max": (framing.DEFAULT_MAX_PACKET_SIZE - 64) // 4}
    held: list[asyncio.StreamWriter] = []

    async def claim(words: int, port: int, refused: bool) -> None:
        reader, writer = await open_raw(port)
        await client_handshake_by_hand(reader, writer)
        header = bytearray(base_packet()[:64])
        header[8:12] = words.to_bytes(4, "little")
        writer.write(header)
        await writer.drain()
        if refused:
            await read_until_closed(reader, TIMEOUT)
            await close_raw(writer)
        else:
            held.append(writer)

    async def main() -> None:
        async with attacked_server("echo") as (port, _):
            await asyncio.sleep(0.2)
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                await asyncio.gather(
                    *(claim(claims[name], port, name != "under_max") for name in claims for _ in range(4))
                )
                await asyncio.sleep(0.3)
                # Four connections hold a 64-byte start of a 64 MiB packet each.
                grown = tracemalloc.get_traced_memory()[0] - baseline
                peak = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()
            for writer in held:
                await close_raw(writer)
            assert grown < 4 * 4 * 2**20, f"{grown / 2**20:.1f} MiB held for 4 headers"
            assert peak < 4 * 4 * 2**20 + 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"

    run(main)


# Slow, silent and out-of-order peers.


async def _slow_bytes(writer: asyncio.StreamWriter, data: bytes, interval: float = 1.0) -> None:
    for i in range(len(data)):
        if writer.is_closing():
            return
        writer.write(data[i : i + 1])
        await asyncio.sleep(interval)


@pytest.mark.parametrize(
    ("kind", "loop"), [(kind, "asyncio") for kind in KINDS] + [("echo", x) for x in LOOPS[1:]]
)
def test_slow_silent_and_out_of_order_peers_are_closed_at_the_timeout(kind: str, loop: str) -> None:
    """
    Every peer here is closed by the server within about its timeout (never served), whatever
    it keeps sending: a byte per second, commands without a handshake, the handshake out of
    order, or nothing at all.
    """
    limit = 2 * TIMEOUT + 3

    # Each peer: what it reads and writes first, then what it keeps doing (writing only).
    async def handshake(reader: Any, writer: asyncio.StreamWriter) -> None:
        await client_handshake_by_hand(reader, writer, link=TIMEOUT)

    async def helo(reader: Any, writer: asyncio.StreamWriter) -> None:
        await read_field(reader, "HELO")

    async def nothing(reader: Any, writer: asyncio.StreamWriter) -> None:
        pass

    async def slowly(data: bytes, writer: asyncio.StreamWriter) -> None:
        await _slow_bytes(writer, data)

    async def repeatedly(data: bytes, writer: asyncio.StreamWriter) -> None:
        for _ in range(int(limit * 2)):
            writer.write(data)
            await asyncio.sleep(0.5)

    async def once(data: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(data)

    ccre = packet("LINK", "CCRE", 1, CIW="x", CUSR="", CDOM="", LINK=TIMEOUT)
    keepalive = encode_packet("LINK", 0, _now(), b"", [])
    peers: dict[str, tuple[Callable[..., Awaitable[None]], Callable[..., Awaitable[None]], bytes]] = {
        "slowloris_after_handshake": (handshake, slowly, packet("DSPC", "GPS")),
        "slowloris_in_handshake": (helo, slowly, ccre),
        "silent": (nothing, once, b""),
        "silent_after_handshake": (handshake, once, b""),
        # Commands every half second, never a handshake: none may be served.
        "skips_handshake": (nothing, repeatedly, packet("DSPL", "SWEP", 3) + packet("DSPC", "GPS", 4)),
        "out_of_order": (helo, once, packet("LINK", "CARE", 2, CAR="x") + ccre),
        # Keep-alives say the link is up, but no handshake ever comes.
        "keepalives_only": (helo, repeatedly, keepalive),
    }
    outcome: dict[str, str] = {}

    async def attack(name: str, port: int) -> None:
        setup, action, data = peers[name]
        reader, writer = await open_raw(port)
        await setup(reader, writer)
        task = asyncio.ensure_future(action(data, writer))
        served: list[str] = []
        try:
            # Watch what the server sends until it closes (bounded).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + limit
            buffered = b""
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    outcome[name] = "not closed"
                    return
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), remaining)
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    outcome[name] = "closed" if not served else f"served {sorted(set(served))}"
                    return
                buffered += chunk
                if name in ("skips_handshake", "out_of_order"):
                    served.extend(m.decode() for m in (b"SWEP", b"GPS\0", b"SCON") if m in buffered)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, asyncio.IncompleteReadError):
                await task
            await close_raw(writer)

    async def main() -> None:
        async with attacked_server(kind) as (port, _):
            await asyncio.gather(*(attack(name, port) for name in peers))

    run(main, loop=loop, timeout=60)
    assert outcome == dict.fromkeys(peers, "closed")


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


# A peer that asks for a stream and never reads.


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_that_never_reads_cannot_grow_server_memory(kind: str) -> None:
    if rss_kib() is None:
        pytest.skip("needs /proc to read a process's memory")
    samples: list[int] = []

    async def never_reads(port: int, stop: asyncio.Event) -> None:
        reader, writer = await open_raw(port)
        try:
            await client_handshake_by_hand(reader, writer, link=TIMEOUT)
            if kind == "node":
                # Large replies, as fast as the node can make them: 256 KiB captures and 64 KiB
                # sweeps.
                writer.write(packet("DSPL", "TIME", 1, SAMP=65536))
                writer.write(packet("DSPL", "SWEP", 2, FSTA=400.0, FSTP=7000.0, RESB=100000))
                await stop.wait()
            else:
                # Big echo requests, as many as the server takes in.
                big = packet("DSPL", "ECHO", 1, DATA=b"x" * 256 * 1024)
                while not stop.is_set():
                    writer.write(big)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(writer.drain(), 0.2)
                    if writer.transport.get_write_buffer_size() > 4 * 2**20:
                        await asyncio.sleep(0.2)
        finally:
            writer.transport.abort()

    async def main(server: ServerProcess) -> None:
        async with GoodClient(kind, server.port) as good:
            await asyncio.sleep(0.5)
            before = rss_kib(server.pid)
            assert before is not None
            samples.append(before)
            stop = asyncio.Event()
            hostile = [asyncio.ensure_future(never_reads(server.port, stop)) for _ in range(2)]
            try:
                for _ in range(14):
                    await asyncio.sleep(0.25)
                    rss = rss_kib(server.pid)
                    assert rss is not None
                    samples.append(rss)
            finally:
                stop.set()
                await asyncio.gather(*hostile)
            await good.finish()

    # The node streams 200 replies per second: far more than a peer that never reads takes.
    with ServerProcess(kind, TIMEOUT, rate=200) as server:
        run(lambda: main(server), timeout=60)
    print(f"\nserver RSS before and while 2 peers never read ({kind}), KiB: {samples}")
    # After the first second the buffers are full; from then on memory must stay flat. Each
    # peer may cost the server its receive buffer (4 MiB high-water mark) and a reply or two.
    settled = samples[5:]
    assert max(settled) - min(settled) < 16 * 1024, samples
    assert max(samples) - samples[0] < 48 * 1024, samples


# Connect / disconnect cycles.


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """
    Keeps the log records of thousands of connections out of pytest's capture (which holds them
    all in memory, and would hide any real growth). asyncio's own handlers (the noise checker)
    still see them.
    """
    loggers = [logging.getLogger(name) for name in ("asyncio", "ncplib")]
    saved = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, saved, strict=True):
            logger.propagate = propagate


@pytest.mark.parametrize("kind", KINDS)
def test_a_thousand_connect_disconnect_cycles_leave_nothing_behind(kind: str) -> None:
    count = 10_000 if SOAK else 1000

    async def cycle(i: int, port: int) -> None:
        how = i % 5
        if how == 0:
            async with await ncplib.connect("127.0.0.1", port, timeout=TIMEOUT):
                pass
            return
        reader, writer = await open_raw(port)
        try:
            if how >= 2:
                await read_field(reader, "HELO")
            if how == 3:
                writer.write(packet("LINK", "CCRE", CIW="x", CUSR="", CDOM="", LINK=TIMEOUT))
                await read_field(reader, "SCAR")
            if how == 4:
                writer.write(packet("LINK", "CCRE", CIW="x", CUSR="", CDOM="", LINK=TIMEOUT)[:20])
                writer.transport.abort()  # A reset, mid-packet.
        finally:
            await close_raw(writer)

    async def main() -> None:
        with quiet_logs():
            await cycles(kind)

    async def cycles(kind: str) -> None:
        async with attacked_server(kind) as (port, _):
            # Warm up, then measure.
            for i in range(0, 100, 20):
                await asyncio.gather(*(cycle(j, port) for j in range(i, i + 20)))
            await asyncio.sleep(0.2)
            gc.collect()
            fds = open_fds()
            rss = rss_kib()
            for i in range(0, count, 20):
                await asyncio.gather(*(cycle(j, port) for j in range(i, i + 20)))
            await asyncio.sleep(0.3)
            gc.collect()
            # Every connection is gone on the server side too (its socket included).
            for _ in range(100):
                if open_fds() == fds:
                    break
                await asyncio.sleep(0.05)
            assert open_fds() == fds
            rss_after = rss_kib()
            if rss is not None and rss_after is not None:
                assert rss_after - rss < 16 * 1024, (rss, rss_after)

    run(main, timeout=1200 if SOAK else 120)
