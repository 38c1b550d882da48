"""
Helpers for tests that use real sockets (always on 127.0.0.1, port 0).

- :func:`run` runs a coroutine function on a fresh event loop (the default one or uvloop) in
  debug mode, like :func:`asyncio.run`, and fails the test if the run left tasks behind or
  produced any asyncio noise (see :func:`no_asyncio_noise`).
- :func:`no_asyncio_noise` is a context manager that collects "Exception in callback", "Task was
  destroyed but it is pending", "Event loop is closed", unclosed-transport ``ResourceWarning``
  and never-retrieved exceptions, whether they are logged by asyncio or reported as unraisable
  exceptions, and fails if there were any.
- :func:`serving` is an async context manager running :func:`ncplib.start_server` on a free
  port of 127.0.0.1; it yields ``(server, port)`` and closes the server on exit.
- :func:`raw_server`, :func:`raw_handshake`, :func:`read_packet` and :func:`packet_bytes` help
  write a hand-made peer (plain asyncio streams) that sends exactly the bytes a test needs.
- :data:`LOOPS` names the event loops to parametrize over: ``"asyncio"`` and, when installed,
  ``"uvloop"``.

Typical use::

    @pytest.mark.parametrize("loop", LOOPS)
    def test_something(loop):
        async def main():
            async with serving(handler) as (server, port):
                async with await ncplib.connect("127.0.0.1", port) as connection:
                    ...
        run(main, loop=loop)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

import ncplib
from ncplib.packets import Packet, decode_packet, encode_packet

__all__ = [
    "LOOPS",
    "new_loop",
    "run",
    "no_asyncio_noise",
    "serving",
    "AsyncioNoise",
    "read_packet",
    "packet_bytes",
    "raw_server",
    "raw_handshake",
]

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

#: Event loop names to parametrize network tests over.
LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])

_NOISE = (
    "Exception in callback",
    "Task was destroyed but it is pending",
    "Event loop is closed",
    "unclosed",
    "exception was never retrieved",
    "Fatal error on",
    "Unhandled error in exception handler",
)


class AsyncioNoise(logging.Handler):
    """Collects asyncio log records and unraisable exceptions that signal a sloppy life cycle."""

    def __init__(self, allow: tuple[str, ...] = ()) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[str] = []
        self.allow = allow

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(a in message for a in self.allow):
            return
        if record.levelno >= logging.ERROR or any(n in message for n in _NOISE):
            self.problems.append(f"asyncio log: {message}")

    def unraisable(self, info: Any) -> None:
        self.problems.append(f"unraisable: {info.exc_type.__name__}: {info.exc_value} in {info.object!r}")


@contextlib.contextmanager
def no_asyncio_noise(allow: tuple[str, ...] = ()) -> Iterator[AsyncioNoise]:
    """
    Fails (AssertionError) if asyncio complained while the block ran.

    ``allow`` lists substrings of asyncio log messages that a test expects (for example the
    debug-mode report of a failed TLS handshake on the server side).

    Runs a garbage collection at the end so that leaked transports are finalized inside the block.
    """
    collector = AsyncioNoise(allow)
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(collector)
    old_level = asyncio_logger.level
    # WARNING, not DEBUG: every complaint is logged at WARNING or above, and debug records would
    # keep transports alive (their args) in pytest's log capture, hiding leaks from gc.collect().
    asyncio_logger.setLevel(logging.WARNING)
    old_hook = sys.unraisablehook
    sys.unraisablehook = collector.unraisable
    try:
        with warnings.catch_warnings():
            # Unclosed transports then surface as unraisable exceptions, collected above.
            warnings.simplefilter("error", ResourceWarning)
            yield collector
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
        asyncio_logger.removeHandler(collector)
        asyncio_logger.setLevel(old_level)
    assert not collector.problems, "\n".join(collector.problems)


def new_loop(loop: str = "asyncio") -> asyncio.AbstractEventLoop:
    """A new event loop of the named kind, in debug mode."""
    if loop == "uvloop":
        assert uvloop is not None
        event_loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    else:
        event_loop = asyncio.new_event_loop()
    event_loop.set_debug(True)
    # Debug mode warns about slow callbacks; a busy test machine is not a bug.
    event_loop.slow_callback_duration = 10.0
    return event_loop


def run(
    main: Callable[[], Awaitable[T]],
    *,
    loop: str = "asyncio",
    timeout: float = 60.0,
    allow: tuple[str, ...] = (),
    debug: bool = True,
) -> T:
    """
    Runs ``main()`` on a new event loop like :func:`asyncio.run`, within :func:`no_asyncio_noise`.

    Fails if ``main`` takes longer than ``timeout`` seconds, or leaves tasks running. ``allow``
    goes to :func:`no_asyncio_noise`. ``debug=False`` leaves asyncio's debug mode off, for tests
    of many connections, where its bookkeeping (a stack trace for every callback) would make the
    event loop itself the bottleneck.
    """
    with no_asyncio_noise(allow):
        # In a function of its own, so that nothing here still refers to the closed loop (and what
        # it holds) when no_asyncio_noise collects garbage.
        return _run_on_new_loop(main, loop, timeout, debug)


def _run_on_new_loop(main: Callable[[], Awaitable[T]], loop: str, timeout: float, debug: bool) -> T:
    event_loop = new_loop(loop)
    event_loop.set_debug(debug)
    try:

        async def guarded() -> T:
            return await asyncio.wait_for(main(), timeout)  # type: ignore[arg-type]

        result = event_loop.run_until_complete(guarded())
        # Let pending callbacks (connection_lost and the like) run.
        event_loop.run_until_complete(asyncio.sleep(0.01))
        leftover = [t for t in asyncio.all_tasks(event_loop) if not t.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            event_loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        assert not leftover, f"tasks left behind: {leftover}"
        event_loop.run_until_complete(event_loop.shutdown_asyncgens())
    finally:
        event_loop.close()
    return result


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[ncplib.Connection], Awaitable[None]], **kwargs: Any
) -> AsyncIterator[tuple[asyncio.AbstractServer, int]]:
    """
    Runs :func:`ncplib.start_server` with ``handler`` on 127.0.0.1, port 0.

    Keyword arguments go to :func:`ncplib.start_server`. Yields ``(server, port)``; on exit the
    server is closed and waited for (which also ends its connections).
    """
    server = await ncplib.start_server(handler, "127.0.0.1", 0, **kwargs)
    try:
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        yield server, port
    finally:
        server.close()
        await server.wait_closed()


async def read_packet(reader: asyncio.StreamReader) -> Packet:
    """Reads and decodes one NCP packet from a stream (for hand-written peers in tests)."""
    header = await reader.readexactly(12)
    size = int.from_bytes(header[8:12], "little") * 4
    return decode_packet(header + await reader.readexactly(size - 12))


def packet_bytes(
    packet_type: str, fields: list[tuple[str, int, dict[str, Any]]], packet_id: int = 1
) -> bytes:
    """Encodes one packet with the current time (for hand-written peers in tests)."""
    return encode_packet(
        packet_type,
        packet_id,
        datetime.now(timezone.utc),
        b"\0\0\0\0",
        [(name, field_id, list(params.items())) for name, field_id, params in fields],
    )


@contextlib.asynccontextmanager
async def raw_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """
    Runs a hand-written peer (an :func:`asyncio.start_server` stream handler) on 127.0.0.1, port 0.

    Yields the port. On exit the server and every connection it accepted are closed.
    """
    writers: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task[None]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # Not task.cancel(): asyncio's stream server logs an error for a cancelled handler.
        for writer in writers:
            writer.transport.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await server.wait_closed()


async def raw_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, link: Any = None
) -> Packet:
    """
    Plays the server side of the handshake by hand; returns the client's CCRE packet.

    ``link`` is the SCAR LINK value to answer with (default: echo the client's).
    """
    writer.write(packet_bytes("LINK", [("HELO", 0, {})]))
    ccre = await read_packet(reader)
    params = dict(ccre[4][0][2])
    writer.write(
        packet_bytes("LINK", [("SCAR", 1, {"LINK": params.get("LINK", 0) if link is None else link})])
    )
    await read_packet(reader)  # CARE
    writer.write(packet_bytes("LINK", [("SCON", 2, {})]))
    return ccre
