"""
ncplib.Fleet over real sockets: merging, subscriptions, per-node errors, reconnection, the
timeout, flow control, fairness, closing, sharding.

Servers run in this process (:func:`netutil.serving`, :func:`netutil.raw_server`) or, where a
test counts what the fleet leaves behind, in a subprocess (:class:`hostile_peers.ServerProcess`).
Deadlines only bound how long a test may wait for something to happen; nothing asserts a timing.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import inspect
import logging
import pydoc
import random
import socket
import ssl
import types
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hostile_peers import ServerProcess, StreamChecker, checked_fields, open_fds
from netutil import LOOPS, packet_bytes, raw_handshake, raw_server, run, serving

import ncplib
from ncplib._protocol import DEFAULT_HIGH_WATER
from ncplib._wire import PACKET_HEADER_SIZE
from ncplib.fleet import Backoff, run_sharded, shard
from ncplib.fleet._tap import TURN
from ncplib.node import start_node

# How long a test waits for something to happen before it fails (not a timing assertion).
DEADLINE = 30.0


async def until(predicate: Callable[[], bool], what: str, limit: float = DEADLINE) -> None:
    """Waits (polling) until ``predicate()`` holds; fails after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        assert loop.time() < end, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def consume(fleet: ncplib.Fleet, until_done: Callable[[], bool], on_field: Any = None) -> None:
    """Iterates the fleet until ``until_done()`` holds after a field (bounded by DEADLINE)."""

    async def loop() -> None:
        async for node, field in fleet:
            if on_field is not None:
                on_field(node, field)
            if until_done():
                return

    await asyncio.wait_for(loop(), DEADLINE)


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def streamer(rate: float = 0.0) -> Callable[[ncplib.Connection], Awaitable[None]]:
    """
    A server handler: ``DSPL LOAD`` streams :func:`checked_fields`, ``rate`` per second (0: as
    fast as the client reads), until the client leaves. (The server processes of
    test_fleet_load use it too.)
    """

    async def handler(connection: ncplib.Connection) -> None:
        with contextlib.suppress(ncplib.NCPError):
            async for field in connection:
                if field.packet_type == "DSPL" and field.name == "LOAD":
                    seq = 0
                    while True:
                        field.send(**checked_fields(seq))
                        seq += 1
                        await connection.drain()
                        if rate:
                            await asyncio.sleep(1 / rate)
                        elif seq % 8 == 0:
                            await asyncio.sleep(0)

    return handler


# The API.


def test_addresses_are_parsed_and_checked() -> None:
    fleet = ncplib.Fleet(["10.0.0.7", "node-12:9998", "[::1]:7000", ("h", 80), "fe80::1"])
    assert [(n.address, n.host, n.port) for n in fleet.nodes] == [
        ("10.0.0.7", "10.0.0.7", 9999),
        ("node-12:9998", "node-12", 9998),
        ("[::1]:7000", "::1", 7000),
        ("h:80", "h", 80),
        ("fe80::1", "fe80::1", 9999),
    ]
    assert ncplib.Fleet(["a"], ssl=True).nodes[0].port == 443
    assert ncplib.Fleet(["a"], username="u", password="p").nodes[0].port == 80
    for bad in ["a:0", "a:x", "a:70000", ":9", "[::1", "[::1]x"]:
        with pytest.raises(ValueError):
            ncplib.Fleet([bad])
    # Each entry is a node of its own, even the same address twice.
    twice = ncplib.Fleet(["a", "a:9999"]).nodes
    assert twice[0] is not twice[1] and (twice[0].host, twice[0].port) == (twice[1].host, twice[1].port)
    with pytest.raises(TypeError):
        ncplib.Fleet([42])  # type: ignore[list-item]
    for delay in [(2.0, 1.0), (-1.0, 1.0), (0.0, float("inf"))]:
        with pytest.raises(ValueError):
            ncplib.Fleet(["a"], reconnect_delay=delay)
    with pytest.raises(ValueError):
        ncplib.Fleet(["a"]).subscribe("DSPL", "swep")
    with pytest.raises(TypeError):
        ncplib.Fleet(["a"]).send("DSPC", "SWEP", FSTA=object())  # type: ignore[arg-type]


def test_misused_arguments_fail_up_front_with_a_clear_error() -> None:
    # A single address, not a list of them: not read as a list of one-character hosts.
    for single in ["127.0.0.1:9999", b"127.0.0.1:9999"]:
        with pytest.raises(TypeError, match="iterable of addresses"):
            ncplib.Fleet(single)  # type: ignore[arg-type]
    # A timeout that would time out every connection attempt at once.
    for timeout in [0, -1]:
        with pytest.raises(ValueError, match="timeout"):
            ncplib.Fleet(["127.0.0.1"], timeout=timeout)
    # An empty fleet's loop would wait forever.
    with pytest.raises(ValueError, match="at least one address"):
        ncplib.Fleet([])
    # A pair's port is an int; a port as text goes in "host:port".
    with pytest.raises(TypeError, match="port of an address pair is an int"):
        ncplib.Fleet([("127.0.0.1", "9999")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        ncplib.Fleet([("127.0.0.1", 0)])
    # A count of bytes; refused here, not at every node's connection later.
    for high_water in [1e6, 2.5, True]:
        with pytest.raises(TypeError, match="high_water must be an int"):
            ncplib.Fleet(["127.0.0.1"], high_water=high_water)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="high_water must be >= 1"):
        ncplib.Fleet(["127.0.0.1"], high_water=0)
    # The other arguments of connect() that would otherwise fail at every attempt, for ever.
    for timeout in [None, "10", True]:
        with pytest.raises(TypeError, match="timeout must be a number of seconds"):
            ncplib.Fleet(["127.0.0.1"], timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_packet_size must be at least 40"):
        ncplib.Fleet(["127.0.0.1"], max_packet_size=0)
    with pytest.raises(TypeError, match="max_packet_size must be an int"):
        ncplib.Fleet(["127.0.0.1"], max_packet_size=1.5e6)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ssl must be a bool or an ssl\.SSLContext"):
        ncplib.Fleet(["127.0.0.1"], ssl="yes")  # type: ignore[arg-type]
    ncplib.Fleet(["127.0.0.1"], timeout=3, max_packet_size=40, ssl=ssl.create_default_context())
    ncplib.Fleet(["127.0.0.1"], ssl=None)  # as connect() takes it: plain TCP

    # Any integer type (numpy's integers have __index__ too); a mark beyond any size means no limit.
    class Count:
        def __index__(self) -> int:
            return 1 << 20

    for high_water in [Count(), 2**100]:
        ncplib.Fleet(["127.0.0.1"], high_water=high_water)  # type: ignore[arg-type]


def test_node_attributes_are_documented_one_by_one() -> None:
    # What help(ncplib.Node) shows under each attribute.
    text = " ".join(pydoc.render_doc(ncplib.Node, renderer=pydoc.plaintext).split())
    for name in ["address", "changed", "last_attempt", "last_error", "retry_delay", "connected"]:
        doc = inspect.getdoc(getattr(ncplib.Node, name))
        assert doc and len(doc) > 20 and " ".join(doc.split()) in text, name


def test_iterating_an_unstarted_fleet_is_an_error() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="async with"):
            await ncplib.Fleet(["127.0.0.1"]).__anext__()
        # Closed before it was started: the loop ends, as it does once any fleet is closed.
        fleet = ncplib.Fleet(["127.0.0.1"])
        fleet.close()
        assert [item async for item in fleet] == []

    run(main)


def test_starting_wrongly_says_how_to_start() -> None:
    # Outside a coroutine: not asyncio's bare "no running event loop".
    with pytest.raises(RuntimeError, match="from a coroutine"):
        ncplib.Fleet(["127.0.0.1"]).start()

    async def main() -> None:
        fleet = ncplib.Fleet([("127.0.0.1", closed_port())], reconnect_delay=(0.05, 0.1))
        async with fleet:
            with pytest.raises(RuntimeError, match="already started"):
                fleet.start()
        with pytest.raises(RuntimeError, match="closed and cannot be started again"):
            async with fleet:
                pass  # pragma: no cover - not entered
        # Closed before it was ever started, too.
        never = ncplib.Fleet(["127.0.0.1"])
        never.close()
        with pytest.raises(RuntimeError, match="closed and cannot be started again"):
            async with never:
                pass  # pragma: no cover - not entered

    run(main)


def test_a_second_consumer_is_an_error_and_the_first_goes_on() -> None:
    async def main() -> None:
        fleet = ncplib.Fleet([("127.0.0.1", closed_port())], reconnect_delay=(0.05, 0.1))
        async with fleet:
            first = asyncio.ensure_future(fleet.__anext__())
            await until(lambda: fleet._consuming, "the first consumer to wait")
            with pytest.raises(RuntimeError, match="Another task"):
                await fleet.__anext__()
            # The refusal did not disturb the first consumer: it still waits, and the loop ends
            # for it when the fleet closes.
            assert not first.done()
        with pytest.raises(StopAsyncIteration):
            await first
        assert not fleet._consuming

    run(main)


def test_backoff_grows_with_full_jitter_within_its_bounds() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(7))
    ceilings = []
    for _ in range(200):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0.5 <= delay <= ceiling <= 30.0
        ceilings.append(ceiling)
    assert ceilings[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # Full jitter: the delays spread over the interval instead of sitting at its top.
    late = [backoff.next_delay() for _ in range(200)]
    assert min(late) < 10.0 and max(late) > 20.0
    backoff.reset()
    assert backoff.ceiling() == 1.0
    assert Backoff(0.0, 2.0).ceiling() == 2.0


def test_shard_splits_evenly_in_order() -> None:
    assert shard(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert shard(["a"], 3) == [["a"], [], []]
    with pytest.raises(ValueError):
        shard(["a"], 0)


def test_run_sharded_refuses_no_processes_by_its_own_name() -> None:
    with pytest.raises(ValueError, match="processes must be >= 1"):
        run_sharded(count_fields, ["127.0.0.1:1"], 0)
    # A single address, not a list of them; no address at all.
    with pytest.raises(TypeError, match="iterable of addresses"):
        run_sharded(count_fields, "127.0.0.1:1", 2)
    with pytest.raises(ValueError, match="at least one address"):
        run_sharded(count_fields, [], 2)


async def given_shard(addresses: list[str]) -> list[str]:
    """A sharded worker that connects nowhere: the addresses it was given."""
    return addresses


def test_run_sharded_gives_no_worker_an_empty_shard() -> None:
    # Fewer addresses than processes: one worker per address (any iterable of them).
    assert run_sharded(given_shard, (address for address in ["a:1", "b:2"]), 4) == [["a:1"], ["b:2"]]


# The merger, with stand-in connections: which node's field comes next.


class FakeConnection:
    """Stands in for a Connection: hands out queued fields, then None, then its end."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = list(fields)
        self.end: BaseException | None = None
        # No protocol of ours: the compiled tap leaves such a connection to the fleet's _take.
        self._protocol = types.SimpleNamespace(last_received=0.0)

    def _recv_nowait(self) -> Any:
        if self.fields:
            return self.fields.pop(0)
        if self.end is not None:
            raise self.end
        return None

    def _caught_up(self) -> bool:
        return not self.fields and self.end is None

    def is_closing(self) -> bool:
        return False


def test_merger_takes_turns_of_bounded_length() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        fleet = ncplib.Fleet(["fast", "slow", "other"])
        fleet._started = True
        fleet._loop = loop
        fast, slow, other = fleet.nodes
        for node, fields in [
            (fast, [f"f{i}" for i in range(3 * TURN)]),
            (slow, ["s0", "s1"]),
            (other, [f"o{i}" for i in range(TURN + 1)]),
        ]:
            node._connection = FakeConnection(fields)  # type: ignore[assignment]
            node._ended = loop.create_future()
            on_data = node._on_data
            assert on_data is not None
            on_data()
            on_data()  # a second call in the same pass changes nothing
        got = []
        for _ in range(3 * TURN + 2 + TURN + 1):
            node, field = await fleet.__anext__()
            got.append(field)
        # Nothing left: the consumer sleeps until a node has data, and the ring is empty.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fleet.__anext__(), 0.05)
        assert not fleet._ready
        return got

    got = run(main)
    expected = (
        [f"f{i}" for i in range(TURN)]
        + ["s0", "s1"]
        + [f"o{i}" for i in range(TURN)]
        + [f"f{i}" for i in range(TURN, 2 * TURN)]
        + ["o16"]
        + [f"f{i}" for i in range(2 * TURN, 3 * TURN)]
    )
    assert got == expected


def test_merger_takes_a_whole_round_per_pass_of_the_event_loop() -> None:
    """With many nodes ready, the consumer takes from every one of them before it lets the
    event loop run again, so it keeps up with what one pass of the loop reads."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        fleet = ncplib.Fleet([f"node-{i}" for i in range(600)])
        fleet._started = True
        fleet._loop = loop
        for node in fleet.nodes:
            node._connection = FakeConnection(["a", "b"])  # type: ignore[assignment]
            node._ended = loop.create_future()
            assert node._on_data is not None
            node._on_data()
        passes = 0

        def tick() -> None:
            nonlocal passes
            passes += 1
            if passes < 100:
                loop.call_soon(tick)

        loop.call_soon(tick)
        for _ in range(1200):
            await fleet.__anext__()
        return passes

    assert run(main) <= 1


# Real connections.


@pytest.mark.parametrize("loop", LOOPS)
def test_fields_of_every_node_arrive_with_their_node(loop: str) -> None:
    async def main() -> None:
        servers = [await start_node("127.0.0.1", 0, rate=100) for _ in range(3)]
        try:
            ports = [s.sockets[0].getsockname()[1] for s in servers]
            fleet = ncplib.Fleet([f"127.0.0.1:{port}" for port in ports], timeout=10)
            fleet.subscribe("DSPL", "SWEP", FSTA=400, FSTP=500)
            counts: dict[ncplib.Node, int] = {}

            def check(node: ncplib.Node, field: ncplib.Field) -> None:
                assert node in fleet.nodes
                assert field.connection is node.connection
                assert (field.packet_type, field.name) == ("DSPL", "SWEP")
                assert len(field["PDAT"]) == field["NBIN"]
                counts[node] = counts.get(node, 0) + 1

            async with fleet:
                await consume(fleet, lambda: len(counts) == 3 and min(counts.values()) >= 5, check)
                assert all(node.connected for node in fleet.nodes)
                assert {node: node.fields for node in fleet.nodes} == counts
                assert all(node.reconnects == 0 and node.last_error is None for node in fleet.nodes)
            assert not any(node.connected for node in fleet.nodes)
            assert [node async for node, _ in fleet] == []
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_subscriptions_are_sent_again_after_each_reconnect(loop: str) -> None:
    """The server answers each DSPL with three numbered fields and then hangs up."""
    commands: list[tuple[int, str, dict[str, Any]]] = []

    async def handler(connection: ncplib.Connection) -> None:
        number = len({n for n, _, _ in commands}) + 1
        with contextlib.suppress(ncplib.NCPError):
            async for field in connection:
                commands.append((number, field.name, dict(field)))
                if field.name == "SWEP":
                    for seq in range(3):
                        field.send(SEQN=seq, CONN=number)
                    await connection.drain()
                    connection.close()

    async def main() -> None:
        async with serving(handler) as (_, port):
            fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10, reconnect_delay=(0.01, 0.05))
            fleet.subscribe("DSPL", "GAIN", GAIN=3)
            fleet.subscribe("DSPL", "SWEP", FSTA=400)
            fleet.subscribe("DSPL", "SWEP", FSTA=410)  # replaces the one before
            got: list[tuple[int, int]] = []
            async with fleet:
                (node,) = fleet.nodes
                await consume(fleet, lambda: len(got) == 9, lambda n, f: got.append((f["CONN"], f["SEQN"])))
                assert node.reconnects >= 2
                assert isinstance(node.last_error, ncplib.ConnectionClosed)
        assert got == [(conn, seq) for conn in (1, 2, 3) for seq in range(3)]
        for number in (1, 2, 3):
            assert [(n, p) for c, n, p in commands if c == number] == [
                ("GAIN", {"GAIN": 3}),
                ("SWEP", {"FSTA": 410}),
            ]

    run(main, loop=loop)


def test_command_errors_are_reported_on_their_node(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server = await start_node("127.0.0.1", 0, rate=50)
        try:
            port = server.sockets[0].getsockname()[1]
            fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10)
            fleet.subscribe("DSPL", "SWEP")
            fleet.subscribe("DSPL", "NOPE")  # the node answers ERRO "Unknown command"
            names: list[str] = []
            async with fleet:
                (node,) = fleet.nodes
                await consume(fleet, lambda: len(names) >= 10, lambda n, f: names.append(f.name))
                assert isinstance(node.last_error, ncplib.CommandError)
                assert node.last_error.detail == "Unknown command"
                assert node.connected and node.reconnects == 0
                # A one-off command to every connected node; its reply comes through the loop.
                sent = fleet.send("NODE", "STAT")
                assert list(sent) == [node]
                replies: list[ncplib.Field] = []
                await consume(
                    fleet,
                    lambda: bool(replies),
                    lambda n, f: replies.append(f) if f.packet_type == "NODE" else None,
                )
                assert replies[0].id == sent[node] and replies[0]["OCON"] == 1
            assert set(names) == {"SWEP"}
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.WARNING, logger="ncplib.fleet"):
        run(main)
    assert any("Unknown command" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("loop", LOOPS)
def test_refused_and_unresolvable_nodes_retry_without_delaying_others(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    low, high = 0.01, 0.1

    async def main() -> None:
        server = await start_node("127.0.0.1", 0, rate=50)
        try:
            port = server.sockets[0].getsockname()[1]
            refused = f"127.0.0.1:{closed_port()}"
            fleet = ncplib.Fleet(
                [refused, "node.invalid:9999", f"127.0.0.1:{port}"], timeout=10, reconnect_delay=(low, high)
            )
            fleet.subscribe("DSPL", "SWEP")
            delays: list[float] = []
            async with fleet:
                bad_a, bad_b, good = fleet.nodes
                started = bad_a.changed
                assert bad_b.changed == started

                def watch(node: ncplib.Node, field: ncplib.Field) -> None:
                    delays.extend(n.retry_delay for n in (bad_a, bad_b) if n.retry_delay)

                await consume(
                    fleet, lambda: bad_a.attempts >= 5 and bad_b.attempts >= 3 and good.fields >= 5, watch
                )
                for node in (bad_a, bad_b):
                    assert isinstance(node.last_error, ncplib.NetworkError)
                    assert not node.connected and node.fields == 0
                    # Down since the fleet started: failed retries do not move it.
                    assert node.changed == started
                    assert node.last_attempt is not None and node.last_attempt >= started
                assert good.connected and good.last_error is None
                assert good.changed >= started
            assert delays and all(low <= delay <= high for delay in delays)
        finally:
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.WARNING, logger="ncplib.fleet"):
        run(main, loop=loop)
    # The same failure again and again is logged once per node.
    # Under the documented logger name.
    warned = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "ncplib.fleet"]
    assert sorted(warned) == ["127.0.0.1", "node.invalid"]


def test_wrong_credentials_are_retried_at_the_slowest_rate(caplog: pytest.LogCaptureFixture) -> None:
    low, high = 0.01, 0.2

    async def main() -> None:
        async def handler(connection: ncplib.Connection) -> None:
            await connection.recv()

        async with serving(handler, authenticate=lambda user, password: False) as (_, port):
            fleet = ncplib.Fleet(
                [f"127.0.0.1:{port}"], username="user", password="wrong", reconnect_delay=(low, high)
            )
            (node,) = fleet.nodes
            delays: set[float] = set()
            async with fleet:
                await until(lambda: (delays.add(node.retry_delay), node.attempts >= 4)[1], "retries")
            assert isinstance(node.last_error, ncplib.AuthenticationError)
            assert delays - {0.0} == {high}

    with caplog.at_level(logging.WARNING, logger="ncplib.fleet"):
        run(main)
    assert sum("AuthenticationError" in r.getMessage() for r in caplog.records) == 1


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def beside_a_streaming_node(
    first: RawHandler,
    second: RawHandler,
    check: Callable[[ncplib.Fleet, ncplib.Node, ncplib.Node], Awaitable[None]],
) -> None:
    """
    Runs a fleet over two hand-written peers (:func:`netutil.raw_server` handlers) and a
    simulated node streaming sweeps: awaits ``check(fleet, first_node, second_node)``, then
    checks that the simulated node streams on, unharmed.
    """
    server = await start_node("127.0.0.1", 0, rate=50)
    try:
        async with raw_server(first) as first_port, raw_server(second) as second_port:
            port = server.sockets[0].getsockname()[1]
            fleet = ncplib.Fleet(
                [f"127.0.0.1:{first_port}", f"127.0.0.1:{second_port}", f"127.0.0.1:{port}"],
                timeout=5,
                reconnect_delay=(0.01, 0.05),
            )
            fleet.subscribe("DSPL", "SWEP")
            async with fleet:
                first_node, second_node, good = fleet.nodes
                await check(fleet, first_node, second_node)
                before = good.fields
                await consume(fleet, lambda: good.fields > before)
                assert good.connected and good.last_error is None
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop", LOOPS)
def test_silent_nodes_are_caught_by_the_timeout(loop: str) -> None:
    """One node completes the handshake and goes silent, another never says a word: both time
    out and are retried, while a third node keeps streaming."""
    accepted = {"mute": 0, "silent": 0}

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted["silent"] += 1
        await raw_handshake(reader, writer, link=5)
        while await reader.read(65536):
            pass

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted["mute"] += 1
        while await reader.read(65536):
            pass

    async def check(fleet: ncplib.Fleet, silent_node: ncplib.Node, mute_node: ncplib.Node) -> None:
        # Timed out, and (for the one that completes handshakes) connected again.
        await consume(fleet, lambda: silent_node.reconnects >= 1 and accepted["mute"] >= 2)
        for node in (silent_node, mute_node):
            assert isinstance(node.last_error, ncplib.NetworkTimeoutError), node.last_error
            assert node.fields == 0
        assert accepted["silent"] >= 2

    async def main() -> None:
        await beside_a_streaming_node(silent, mute, check)

    run(main, loop=loop, timeout=60)


@pytest.mark.parametrize("loop", LOOPS)
def test_malformed_streams_are_reported_on_their_node_and_retried(loop: str) -> None:
    """After the handshake one node sends bytes that are not NCP, another a packet whose field
    overflows it: each is reported on its node as a DecodeError and reconnected, while a third
    node keeps streaming. (The reader raises its error at every later call, so the end must be
    reported once, not taken again by the tap it wakes.)"""
    accepted = {"garbage": 0, "overflow": 0}
    overflowing = bytearray(packet_bytes("DSPL", [("SWEP", 1, {"SEQN": 1})]))
    size_at = PACKET_HEADER_SIZE + 4  # the first field's size (in words), after its name
    overflowing[size_at : size_at + 4] = (0xFFFF).to_bytes(4, "little")

    def hostile(name: str, data: bytes) -> RawHandler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted[name] += 1
            await raw_handshake(reader, writer, link=5)
            writer.write(data)
            while await reader.read(65536):
                pass

        return handler

    async def check(fleet: ncplib.Fleet, garbage: ncplib.Node, overflow: ncplib.Node) -> None:
        await consume(fleet, lambda: min(accepted.values()) >= 3)
        for node in (garbage, overflow):
            assert isinstance(node.last_error, ncplib.DecodeError), node.last_error
            assert node.fields == 0 and node.reconnects >= 1
        assert "not NCP" in str(garbage.last_error)
        assert "overflows the packet" in str(overflow.last_error)

    async def main() -> None:
        await beside_a_streaming_node(
            hostile("garbage", b"\xde\xad\xbe\xef" * 16), hostile("overflow", bytes(overflowing)), check
        )

    run(main, loop=loop, timeout=60)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_lagging_consumer_pauses_reading_and_loses_nothing(loop: str) -> None:
    async def main() -> None:
        async with serving(streamer()) as (_, port):
            fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10)
            fleet.subscribe("DSPL", "LOAD")
            async with fleet:
                (node,) = fleet.nodes
                await until(lambda: node.connected, "connection")
                connection = node.connection
                assert connection is not None
                protocol = connection._protocol
                # Nobody consumes: the connection fills up to its high-water mark and stops.
                await until(lambda: protocol.transport is not None and protocol._read_paused, "pause")
                held = protocol.reader.buffered
                await asyncio.sleep(0.2)
                assert protocol.reader.buffered == held <= protocol.high_water + 64 * 1024
                checker = StreamChecker()
                await consume(fleet, lambda: checker.next >= 5000, lambda n, f: checker.check(f))
                assert not checker.problems, checker.problems[:5]
                assert node.connection is connection

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_packets_larger_than_the_high_water_mark_arrive(loop: str) -> None:
    """Reading pauses in the middle of such a packet; the fleet must let it resume."""
    size = 3 * DEFAULT_HIGH_WATER // 2

    async def handler(connection: ncplib.Connection) -> None:
        with contextlib.suppress(ncplib.NCPError):
            async for field in connection:
                for seq in range(3):
                    data = array.array("B", bytes([seq])) * size
                    field.send(SEQN=seq, DATA=data, CRC=ncplib.u32(zlib.crc32(data)))
                    await connection.drain()

    async def main() -> None:
        async with serving(handler) as (_, port):
            fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10)
            fleet.subscribe("DSPL", "HUGE")
            got: list[int] = []

            def check(node: ncplib.Node, field: ncplib.Field) -> None:
                assert len(field["DATA"]) == size and zlib.crc32(field["DATA"]) == field["CRC"]
                got.append(field["SEQN"])

            async with fleet:
                await consume(fleet, lambda: len(got) == 3, check)
                assert fleet.nodes[0].last_error is None
            assert got == [0, 1, 2]

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_close_leaves_no_task_socket_or_timer(loop: str) -> None:
    async def main() -> None:
        current_loop = asyncio.get_running_loop()

        def timers() -> int:
            scheduled = getattr(current_loop, "_scheduled", None)
            if scheduled is None:  # uvloop keeps its timers to itself
                return 0
            return sum(not handle.cancelled() for handle in scheduled)

        with ServerProcess("node", 10, rate=50) as first, ServerProcess("load", 10) as second:
            # Warm up what the event loop creates once and keeps (uvloop's resolver threads).
            async with await ncplib.connect("127.0.0.1", first.port, timeout=10):
                pass
            with pytest.raises(ncplib.NetworkError):
                await ncplib.connect("127.0.0.1", closed_port())
            fds, tasks, timer_count = open_fds(), len(asyncio.all_tasks()), timers()
            fleet = ncplib.Fleet(
                [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}", f"127.0.0.1:{closed_port()}"],
                timeout=10,
                reconnect_delay=(5.0, 10.0),
            )
            fleet.subscribe("DSPL", "SWEP")
            fleet.subscribe("DSPL", "LOAD")
            async with fleet:
                good, fast, refused = fleet.nodes
                await consume(
                    fleet, lambda: good.fields >= 3 and fast.fields >= 100 and refused.attempts >= 1
                )
                # A node in its backoff delay, two connected with data waiting: all must go.
                assert refused.retry_delay >= 5.0
                assert len(asyncio.all_tasks()) > tasks
                if hasattr(current_loop, "_scheduled"):
                    assert timers() > timer_count
            assert len(asyncio.all_tasks()) == tasks
            assert open_fds() == fds
            assert timers() == timer_count
            assert all(node.connection is None and not node.connected for node in fleet.nodes)

    run(main, loop=loop)


async def count_fields(addresses: list[str]) -> dict[str, int]:
    """A sharded worker: five sweeps from each of its nodes, then the count per address."""
    fleet = ncplib.Fleet(addresses, timeout=10)
    fleet.subscribe("DSPL", "SWEP")
    async with fleet:
        await consume(fleet, lambda: all(node.fields >= 5 for node in fleet.nodes))
        return {node.address: node.fields for node in fleet.nodes}


def test_run_sharded_runs_one_fleet_per_process() -> None:
    with ServerProcess("node", 10, rate=50) as first, ServerProcess("node", 10, rate=50) as second:
        addresses = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}", f"localhost:{first.port}"]
        results = run_sharded(count_fields, addresses, 2)
    assert [sorted(result) for result in results] == [sorted([addresses[0], addresses[2]]), [addresses[1]]]
    assert all(count >= 5 for result in results for count in result.values())
