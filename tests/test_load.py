"""
Load: many concurrent clients against one server process (a subprocess running our server).

- 200 clients each stream fields carrying a sequence number and a CRC-32 of their array, as fast
  as flow control lets them, for a bounded time: not one field may be lost, duplicated,
  reordered or corrupted, and the server's count of fields sent must match each client's.
- 1000 idle connections stay alive on keep-alives alone for more than twice their timeout.

Figures (fields per second, the server's peak RSS) are printed (``pytest -s`` shows them).
``NCPLIB_SOAK=1`` runs longer and with more clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import netutil
import pytest
from hostile_peers import ServerProcess, StreamChecker, peak_rss_kib, raise_fd_limit, rss_kib

import ncplib

pytestmark = [pytest.mark.load, pytest.mark.slow]

T = TypeVar("T")

SOAK = os.environ.get("NCPLIB_SOAK") == "1"
#: The shortest timeout a client can negotiate: the idle connections use it.
TIMEOUT = 5
# The streaming clients saturate this process (on a shared 2-core machine its event loop runs
# timers a second or more late), so they take a timeout with more room for late keep-alives:
# this test is about what arrives, not about keep-alive timing.
STREAM_TIMEOUT = 20
STREAM_CLIENTS = 500 if SOAK else 200
STREAM_SECONDS = 120.0 if SOAK else 10.0
IDLE_CLIENTS = 2000 if SOAK else 1000
# More than twice the timeout: keep-alives (every 3 s) must have carried the connections.
IDLE_SECONDS = 6 * TIMEOUT + 1 if SOAK else 2 * TIMEOUT + 1


async def connect_all(
    port: int, count: int, batch: int = 25, timeout: int = TIMEOUT
) -> list[ncplib.Connection]:
    connections: list[ncplib.Connection] = []
    try:
        for start in range(0, count, batch):
            connections += await asyncio.gather(
                *(
                    ncplib.connect("127.0.0.1", port, timeout=timeout)
                    for _ in range(start, min(count, start + batch))
                )
            )
    except BaseException:
        await close_all(connections)
        raise
    return connections


def run(main: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """:func:`netutil.run` without asyncio's debug mode, which a thousand connections would choke."""
    return netutil.run(main, timeout=timeout, debug=False)


async def watch_lag(stop: asyncio.Event, lag: list[float]) -> None:
    """Records how late the event loop runs a 0.1 s timer (keep-alives are timers too)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.1
        await asyncio.sleep(0.1)
        lag.append(loop.time() - due)


async def close_all(connections: list[ncplib.Connection]) -> None:
    for connection in connections:
        connection.close()
    await asyncio.gather(*(connection.wait_closed() for connection in connections))


def test_concurrent_clients_stream_checked_fields_without_loss() -> None:
    results: list[tuple[int, list[str]]] = []
    lag: list[float] = []

    async def client(connection: ncplib.Connection, stop: asyncio.Event) -> None:
        checker = StreamChecker()
        connection.send("DSPL", "LOAD")
        sent = None
        stop_sent = False
        while sent is None:
            if stop.is_set() and not stop_sent:
                connection.send("DSPC", "STOP")
                stop_sent = True
            field = await connection.recv()
            if field.name == "LOAD":
                checker.check(field)
            elif field.name == "STOP":
                sent = int(field["SENT"])
            else:
                checker.problems.append(f"unexpected field {field!r}")
        if sent != checker.next:
            checker.problems.append(f"server sent {sent} fields, client checked {checker.next}")
        results.append((checker.next, checker.problems))

    async def main(server: ServerProcess) -> tuple[float, float]:
        connections = await connect_all(server.port, STREAM_CLIENTS, timeout=STREAM_TIMEOUT)
        try:
            stop = asyncio.Event()
            watcher = asyncio.ensure_future(watch_lag(stop, lag))
            tasks = [asyncio.ensure_future(client(c, stop)) for c in connections]
            started = time.perf_counter()
            done, _ = await asyncio.wait(tasks, timeout=STREAM_SECONDS)
            stop.set()
            elapsed = time.perf_counter() - started
            # Every client stops its stream and collects what is in flight; any error fails.
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            await watcher
            assert not done, "a client ended early"
        finally:
            await close_all(connections)
        return elapsed, time.perf_counter() - started

    with ServerProcess("load", TIMEOUT) as server:
        rss_before = rss_kib(server.pid)
        elapsed, total = run(lambda: main(server), timeout=STREAM_SECONDS + 180)
        peak = peak_rss_kib(server.pid)
    problems = [p for _, ps in results for p in ps]
    assert len(results) == STREAM_CLIENTS
    assert not problems, problems[:10]
    fields = sum(n for n, _ in results)
    assert all(n > 0 for n, _ in results), "a client received nothing"
    print(
        f"\nload: {STREAM_CLIENTS} clients, {fields} fields checked in {total:.1f} s "
        f"({fields / total:.0f} fields/s; streaming {elapsed:.1f} s), 0 lost/duplicated/reordered/"
        f"corrupted; server RSS {rss_before} KiB idle, peak {peak} KiB; client loop lag max "
        f"{max(lag):.2f} s (worst five {sorted(round(x, 2) for x in lag)[-5:]}, of {len(lag)})"
    )


def test_idle_connections_stay_alive_on_keepalives() -> None:
    pending_errors: list[BaseException] = []
    lag: list[float] = []

    async def main(server: ServerProcess) -> int:
        connections = await connect_all(server.port, IDLE_CLIENTS, batch=50)
        try:
            # Each client waits for a field that never comes: only keep-alives arrive, and they
            # must keep the connection from timing out, on both sides.
            waits = [asyncio.ensure_future(c.recv()) for c in connections]
            stop = asyncio.Event()
            watcher = asyncio.ensure_future(watch_lag(stop, lag))
            await asyncio.sleep(IDLE_SECONDS)
            stop.set()
            await watcher
            for wait in waits:
                if wait.done():
                    pending_errors.append(wait.exception() or RuntimeError(f"got {wait.result()!r}"))
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            assert not pending_errors, (
                f"{len(pending_errors)} connections failed, e.g. {pending_errors[:3]}; "
                f"worst timer lag here {max(lag):.2f} s"
            )
            # The server still holds every connection...
            open_count = int((await connections[0].send("DSPC", "CONN").recv())["OPEN"])
            # ... and every one still works both ways.
            for start in range(0, len(connections), 100):
                replies = await asyncio.gather(
                    *(
                        c.send("DSPC", "PING", N=i).recv()
                        for i, c in enumerate(connections[start : start + 100])
                    )
                )
                assert [r["N"] for r in replies] == list(range(len(replies)))
        finally:
            await close_all(connections)
        return open_count

    with raise_fd_limit(IDLE_CLIENTS + 256) as enough:
        if not enough:
            pytest.skip(f"cannot open {IDLE_CLIENTS} sockets here (RLIMIT_NOFILE)")
        with ServerProcess("load", TIMEOUT) as server:
            open_count = run(lambda: main(server), timeout=IDLE_SECONDS + 240)
            peak = peak_rss_kib(server.pid)
    assert open_count == IDLE_CLIENTS
    print(
        f"\nidle: {IDLE_CLIENTS} connections alive after {IDLE_SECONDS} s; server peak RSS {peak} KiB; "
        f"worst timer lag here {max(lag):.2f} s"
    )
