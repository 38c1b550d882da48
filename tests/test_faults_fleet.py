"""
The faults of ``test_faults_client.py`` under :class:`ncplib.Fleet`: a stall, a blackhole, a
reset and a close in the middle of a packet, a node killed with ``kill -9`` and started again
on its port, and slow links (latency, a bandwidth limit, one byte per segment; latency beyond
the timeout). For each: the node's ``last_error`` says what happened (nothing is raised out of the
loop), every field of the broken connection that got through whole was delivered intact and in
order, the fleet reconnects and resumes the subscription, and once closed nothing is left
behind; over 100 reset cycles RSS stays flat.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from faultproxy import FaultProxy
from hostile_peers import Baseline, ServerProcess, StreamChecker, rss_kib
from netutil import packet_bytes, raw_handshake, raw_server, run
from test_faults_client import EXPECTED, SLOW_LINKS, TIMEOUT, seqns_forwarded

import ncplib

Fleet: Any = getattr(ncplib, "Fleet", None)

pytestmark = [
    pytest.mark.hostile,
    pytest.mark.slow,
    pytest.mark.skipif(Fleet is None, reason="ncplib.Fleet is not available"),
]

HOST = "127.0.0.1"
# A limit on waiting for something to happen (not a timing assertion).
DEADLINE = 30.0


class Streams:
    """Consumes a fleet, checking each connection's ``DSPL LOAD`` stream on its own."""

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet
        self.by_connection: dict[ncplib.Connection, StreamChecker] = {}
        self.seqns: dict[ncplib.Connection, list[int]] = {}
        self.order: list[ncplib.Connection] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for _node, field in self.fleet:
            connection = field.connection
            if connection not in self.by_connection:
                self.by_connection[connection] = StreamChecker()
                self.seqns[connection] = []
                self.order.append(connection)
            self.by_connection[connection].check(field)
            self.seqns[connection].append(int(field["SEQN"]))

    async def until(self, connections: int, fields: int) -> None:
        """Waits until the ``connections``-th connection has delivered ``fields`` fields."""
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while len(self.order) < connections or len(self.seqns[self.order[connections - 1]]) < fields:
            assert not self.task.done(), self.task
            assert loop.time() < end, f"gave up waiting for connection {connections}"
            await asyncio.sleep(0.01)

    def problems(self) -> list[str]:
        return [p for checker in self.by_connection.values() for p in checker.problems]

    async def stop(self) -> None:
        self.fleet.close()
        await asyncio.wait_for(self.task, DEADLINE)


def new_fleet(port: int) -> Any:
    fleet = Fleet([f"{HOST}:{port}"], timeout=TIMEOUT, reconnect_delay=(0.05, 0.5))
    fleet.subscribe("DSPL", "LOAD")
    return fleet


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_fleet_resumes_after_a_link_cut_mid_packet(kind: str) -> None:
    async def main(server: ServerProcess) -> None:
        baseline = Baseline()
        with FaultProxy(server.port, record=True) as proxy:
            fleet = new_fleet(proxy.port)
            async with fleet:
                streams = Streams(fleet)
                await streams.until(1, 200)
                link = proxy.links[-1]
                await proxy.cut(kind, mid_packet=kind != "blackhole")
                await streams.until(2, 100)
                node = fleet.nodes[0]
                assert isinstance(node.last_error, EXPECTED[kind]), repr(node.last_error)
                assert node.reconnects >= 1
                first = streams.order[0]
                assert streams.seqns[first] == seqns_forwarded(link)
                assert not streams.problems(), streams.problems()[:5]
                await streams.stop()
            await fleet.wait_closed()
            proxy.close_links()
        await baseline.check()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=90)


@pytest.mark.parametrize("name", sorted(SLOW_LINKS))
def test_a_fleet_over_a_slow_or_fragmented_link_loses_nothing(name: str) -> None:
    async def main(server: ServerProcess) -> None:
        baseline = Baseline()
        with FaultProxy(server.port) as proxy:
            proxy.set("down", **SLOW_LINKS[name])
            proxy.set("up", **SLOW_LINKS[name])
            fleet = new_fleet(proxy.port)
            async with fleet:
                streams = Streams(fleet)
                await streams.until(1, 100)
                node = fleet.nodes[0]
                assert node.reconnects == 0 and node.last_error is None, node.last_error
                assert not streams.problems(), streams.problems()[:5]
                await streams.stop()
            await fleet.wait_closed()
            proxy.close_links()
        await baseline.check()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=90)


def test_a_fleet_retries_while_the_latency_exceeds_the_timeout() -> None:
    """Each attempt fails at the handshake deadline; once the link is fast again, it connects."""

    async def main(server: ServerProcess) -> None:
        baseline = Baseline()
        with FaultProxy(server.port) as proxy:
            proxy.set("down", delay=TIMEOUT + 1)
            fleet = new_fleet(proxy.port)
            async with fleet:
                streams = Streams(fleet)
                node = fleet.nodes[0]
                loop = asyncio.get_running_loop()
                end = loop.time() + DEADLINE
                while node.attempts < 2:
                    assert loop.time() < end, "the fleet did not retry"
                    await asyncio.sleep(0.05)
                assert isinstance(node.last_error, ncplib.NetworkTimeoutError), repr(node.last_error)
                assert not node.connected
                proxy.set("down", delay=0.0)
                proxy.close_links()
                await streams.until(1, 50)
                assert not streams.problems(), streams.problems()[:5]
                await streams.stop()
            await fleet.wait_closed()
            proxy.close_links()
        await baseline.check()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=90)


def test_a_fleet_resumes_after_its_node_is_killed_and_restarted() -> None:
    async def main() -> None:
        server = ServerProcess("load", TIMEOUT).__enter__()
        port = server.port
        exited = False
        try:
            baseline = Baseline()
            fleet = new_fleet(port)
            async with fleet:
                streams = Streams(fleet)
                await streams.until(1, 200)
                server.kill()
                node = fleet.nodes[0]
                loop = asyncio.get_running_loop()
                end = loop.time() + DEADLINE
                # The loss is recorded once the connection is closed, just after it is lost.
                while node.connected or node.last_error is None:
                    assert loop.time() < end, "the fleet did not notice the loss"
                    await asyncio.sleep(0.01)
                assert isinstance(node.last_error, (ncplib.NetworkError, ncplib.ConnectionClosed))
                exited = True
                server.__exit__(None, None, None)
                # Refused while nothing listens; served again once the node is back on its port.
                with ServerProcess("load", TIMEOUT, port=port) as restarted:
                    await streams.until(2, 100)
                    assert not streams.problems(), streams.problems()[:5]
                    await streams.stop()
                    await fleet.wait_closed()
                    # (The restarted node's pipes stand in for those of the first.)
                    await baseline.check()
                    assert restarted.port == port
        finally:
            if not exited:
                server.__exit__(None, None, None)

    run(main, timeout=90)


def test_a_hundred_fleet_reconnections_leave_nothing_behind() -> None:
    if rss_kib() is None:
        pytest.skip("needs /proc to read a process's memory")
    figures: dict[str, Any] = {}

    async def main(server: ServerProcess) -> None:
        baseline = Baseline()
        with FaultProxy(server.port) as proxy:
            fleet = new_fleet(proxy.port)
            async with fleet:
                streams = Streams(fleet)
                for cycle in range(110):
                    if cycle == 10:
                        await asyncio.sleep(0.2)
                        gc.collect()
                        figures["rss KiB before"] = rss_kib()
                    await streams.until(cycle + 1, 20)
                    await proxy.cut(("reset", "close")[cycle % 2])
                    proxy.close_links()
                await streams.until(111, 20)
                gc.collect()
                figures["rss KiB after"] = rss_kib()
                figures["reconnects"] = fleet.nodes[0].reconnects
                assert not streams.problems(), streams.problems()[:5]
                streams.by_connection.clear()
                streams.seqns.clear()
                streams.order.clear()
                await streams.stop()
            await fleet.wait_closed()
        await baseline.check()

    with ServerProcess("load", TIMEOUT) as server:
        run(lambda: main(server), timeout=180)
    print(f"\nfleet fault cycles: {figures}")
    assert figures["reconnects"] >= 110
    assert figures["rss KiB after"] - figures["rss KiB before"] < 16 * 1024, figures


def test_a_fleet_times_out_a_node_that_trickles_bytes() -> None:
    """
    A node that completes the handshake, then sends one byte of a packet every 0.3 s: a
    :class:`~ncplib.Connection` times it out (no complete packet within the timeout), and so
    does a fleet, which then reconnects (its check once looked at the time of the last byte
    received, so the node held its connection for ever).
    """

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer)
        data = packet_bytes("DSPL", [("SWEP", 1, {"X": 1})])
        for i in range(1000):
            if writer.is_closing() or reader.at_eof():
                return
            writer.write(data[i % len(data) : i % len(data) + 1])
            await asyncio.sleep(0.3)

    async def main() -> None:
        async with raw_server(trickle) as port:
            fleet = Fleet([f"{HOST}:{port}"], timeout=TIMEOUT, reconnect_delay=(0.05, 0.5))
            async with fleet:
                streams = Streams(fleet)
                node = fleet.nodes[0]
                loop = asyncio.get_running_loop()
                end = loop.time() + 2 * TIMEOUT + 2
                while node.last_error is None:
                    if loop.time() > end:
                        break
                    await asyncio.sleep(0.1)
                await streams.stop()
            await fleet.wait_closed()
            assert isinstance(node.last_error, ncplib.NetworkTimeoutError), repr(node.last_error)

    run(main, timeout=60)
