"""
ncplib.Fleet against server processes that are killed (SIGKILL) and restarted mid-stream.

- A few nodes streaming as fast as the fleet reads: one is killed and restarted on the same
  port; it reconnects and streams again while the others never stop.
- 1000 connections (10 server processes of 100 ports each), with one process in ten killed and
  restarted every few seconds for a bounded number of rounds: every node ends connected, the
  fields of each connection arrive complete and in order, the backoff stays within its bounds,
  and after ``close()`` no task, socket or timer of the fleet is left.

Every field carries a sequence number and a CRC-32 of its array (:func:`hostile_peers.checked_fields`).
``NCPLIB_SOAK=1`` runs more rounds, with more nodes restarting at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hostile_peers import StreamChecker, open_fds, raise_fd_limit
from netutil import run

import ncplib

pytestmark = [pytest.mark.load, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SOAK = os.environ.get("NCPLIB_SOAK") == "1"
NODES_PER_PROCESS = 100
PROCESSES = 10
ROUNDS = 30 if SOAK else 3
RESTARTING = 2 if SOAK else 1
LOW, HIGH = 0.05, 2.0
# The fleet saturates this process on a shared 2-core machine: a generous timeout keeps late
# keep-alives from counting as silence (this test is about what arrives, not about timing).
TIMEOUT = 20

# A server process: serves ``DSPL LOAD`` streams of checked fields on each port given (0: any
# free port), prints the ports, and serves until its stdin closes.
SERVER = """
import asyncio, sys
import ncplib
from test_fleet import streamer

async def main(timeout, rate, ports):
    handler = streamer(rate)
    servers = [await ncplib.start_server(handler, "127.0.0.1", port, timeout=timeout) for port in ports]
    print(",".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]))
"""


class NodeProcess:
    """Server process serving streams on ``count`` ports; :meth:`kill` and :meth:`restart` it."""

    def __init__(self, count: int, rate: float) -> None:
        self.rate = rate
        self.ports = [0] * count
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        ports = ",".join(map(str, self.ports))
        self.process = process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(TIMEOUT), str(self.rate), ports],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(HERE),
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"server process exited with {process.wait(10)}"
        self.ports = [int(port) for port in line.split(",")]

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to close anything."""
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self._release()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self._release()
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        self._release()

    def _release(self) -> None:
        process = self.process
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


@contextlib.contextmanager
def node_processes(count: int, per_process: int, rate: float) -> Any:
    processes = [NodeProcess(per_process, rate) for _ in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()


class Checkers:
    """One :class:`StreamChecker` per connection: each connection's stream starts at 0."""

    def __init__(self) -> None:
        self.by_connection: dict[ncplib.Connection, StreamChecker] = {}
        self.current: dict[ncplib.Node, ncplib.Connection] = {}
        self.problems: list[str] = []

    def check(self, node: ncplib.Node, field: ncplib.Field) -> None:
        connection = field.connection
        checker = self.by_connection.get(connection)
        if checker is None:
            checker = self.by_connection[connection] = StreamChecker()
            self.current[node] = connection
        elif self.current[node] is not connection:
            self.problems.append(f"{node.address}: a field of an earlier connection after a newer one")
        checker.check(field)
        if checker.problems:
            self.problems += [f"{node.address}: {problem}" for problem in checker.problems]
            checker.problems.clear()

    def fields_on_current(self, node: ncplib.Node) -> int:
        connection = node.connection
        checker = self.by_connection.get(connection) if connection is not None else None
        return 0 if checker is None else checker.next


def timers(loop: asyncio.AbstractEventLoop) -> int:
    scheduled = getattr(loop, "_scheduled", None)
    return 0 if scheduled is None else sum(not handle.cancelled() for handle in scheduled)


def test_nodes_killed_and_restarted_mid_stream_reconnect() -> None:
    with node_processes(3, 1, rate=0) as processes:
        addresses = [f"127.0.0.1:{process.ports[0]}" for process in processes]

        async def main() -> None:
            fleet = ncplib.Fleet(addresses, timeout=10, reconnect_delay=(0.05, 0.5))
            fleet.subscribe("DSPL", "LOAD")
            checkers = Checkers()
            loop = asyncio.get_running_loop()

            async def consume_until(done: Any) -> None:
                async def body() -> None:
                    async for node, field in fleet:
                        checkers.check(node, field)
                        if done():
                            return

                await asyncio.wait_for(body(), 60)

            async with fleet:
                victim, *others = fleet.nodes
                await consume_until(lambda: all(node.fields >= 200 for node in fleet.nodes))
                before = {node: node.fields for node in others}
                await loop.run_in_executor(None, processes[0].kill)
                # The others stream on while the victim is down (its fields received before the
                # kill are delivered first).
                await consume_until(lambda: not victim.connected and victim.last_error is not None)
                await consume_until(lambda: all(node.fields >= before[node] + 500 for node in others))
                assert not victim.connected
                await loop.run_in_executor(None, processes[0].start)
                await consume_until(
                    lambda: victim.reconnects == 1 and checkers.fields_on_current(victim) >= 200
                )
                assert isinstance(victim.last_error, ncplib.NetworkError | ncplib.ConnectionClosed)
                assert all(node.connected and node.reconnects == 0 for node in others)
            assert not checkers.problems, checkers.problems[:10]
            # Two connections for the victim, one for each of the others.
            assert len(checkers.by_connection) == 4

        run(main, timeout=120)


def test_a_thousand_connections_with_servers_restarting() -> None:
    nodes = NODES_PER_PROCESS * PROCESSES
    with raise_fd_limit(nodes + 1000) as enough:
        if not enough:
            pytest.skip(f"cannot open {nodes} sockets here")
        with node_processes(PROCESSES, NODES_PER_PROCESS, rate=2.0) as processes:
            addresses = [f"127.0.0.1:{port}" for process in processes for port in process.ports]
            run(lambda: _thousand(processes, addresses), timeout=240, debug=False)


async def _thousand(processes: list[NodeProcess], addresses: list[str]) -> None:
    loop = asyncio.get_running_loop()
    fds, tasks, timer_count = open_fds(), len(asyncio.all_tasks()), timers(loop)
    fleet = ncplib.Fleet(addresses, timeout=TIMEOUT, reconnect_delay=(LOW, HIGH))
    fleet.subscribe("DSPL", "LOAD")
    checkers = Checkers()
    delays: list[float] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for node, field in fleet:
            checkers.check(node, field)

    async def watch_backoff() -> None:
        while not stop.is_set():
            delays.extend(node.retry_delay for node in fleet.nodes if node.retry_delay)
            await asyncio.sleep(0.1)

    async def all_streaming(limit: float) -> None:
        # Every node connected, with fields arriving on its current connection.
        end = loop.time() + limit
        while not all(node.connected and checkers.fields_on_current(node) >= 1 for node in fleet.nodes):
            assert loop.time() < end, [repr(n) for n in fleet.nodes if not n.connected][:10]
            await asyncio.sleep(0.2)

    async with fleet:
        consumer = asyncio.create_task(consume())
        watcher = asyncio.create_task(watch_backoff())
        try:
            await all_streaming(120)
            for round_number in range(ROUNDS):
                victims = [
                    processes[(round_number * RESTARTING + k) % len(processes)] for k in range(RESTARTING)
                ]
                for victim in victims:
                    await loop.run_in_executor(None, victim.kill)
                await asyncio.sleep(1.0)
                for victim in victims:
                    await loop.run_in_executor(None, victim.start)
                await asyncio.sleep(1.0)
            await all_streaming(120)
        finally:
            stop.set()
            await watcher
        # Every node restarted at least once has reconnected.
        restarted = {port for k in range(min(ROUNDS * RESTARTING, PROCESSES)) for port in processes[k].ports}
        for node in fleet.nodes:
            assert node.reconnects >= (1 if node.port in restarted else 0), node
    await consumer  # the loop ends when the fleet closes
    assert not checkers.problems, checkers.problems[:10]
    assert delays and all(LOW <= delay <= HIGH for delay in delays)
    assert len(asyncio.all_tasks()) == tasks
    assert open_fds() == fds
    assert timers(loop) == timer_count
    print(
        f"\n{len(addresses)} nodes, {ROUNDS} rounds: "
        f"{sum(node.fields for node in fleet.nodes)} fields, "
        f"{sum(node.reconnects for node in fleet.nodes)} reconnects"
    )


def test_the_fleet_collector_of_the_benchmark_runs_sharded() -> None:
    """bench/fleet/collect_fleet.py over two worker processes: every connection delivers."""
    bench = HERE.parent / "bench" / "fleet"
    generator = subprocess.Popen(
        [sys.executable, str(bench / "loadgen.py"), "--shape", "sweep", "--rate", "40"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(bench),
    )
    try:
        assert generator.stdout is not None
        port = json.loads(generator.stdout.readline())["port"]
        done = subprocess.run(
            [sys.executable, str(bench / "collect_fleet.py"), "--port", str(port), "--connections", "20",
             "--duration", "0.5", "--workers", "2"],
            capture_output=True, text=True, timeout=120, cwd=str(bench),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.splitlines()[-1])
        assert result["workers"] == 2 and result["fewest"] > 0 and result["fields"] > 0
    finally:
        assert generator.stdin is not None
        generator.stdin.close()
        assert generator.stdout is not None
        generator.stdout.read()
        generator.stdout.close()
        generator.wait(30)
