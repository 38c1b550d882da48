"""
A fault-injecting TCP proxy for tests (127.0.0.1 only): the link between a client and a server
or node, made as bad as a test needs.

No tool for this is installable here (no netem in the kernel, no toxiproxy), so the proxy is a
small asyncio program running its own event loop in a thread of the test process. Each accepted
client gets a :class:`Link`: a connection to the target and two pumps, ``"down"`` (server to
client) and ``"up"`` (client to server). Faults per direction, for new and open links alike:

- ``delay``: seconds added to every chunk (latency; order kept);
- ``rate``: bytes per second at most (a bandwidth limit);
- ``chunk``: the most bytes per write, with ``TCP_NODELAY`` and a drain after each write, so that
  ``chunk=1`` sends every byte in a segment of its own (fragmentation).

And cuts, on every open link (:meth:`FaultProxy.cut`), either at once or in the middle of the
next NCP packet the direction carries (the pumps track packet boundaries from the size word of
each header):

- ``"stall"``: that direction stops forwarding (and reading); the sockets stay open, the other
  direction goes on;
- ``"reset"``: both sides get a TCP reset (``SO_LINGER`` 0, then close);
- ``"close"``: both sides get a FIN (an orderly close, wherever the stream is);
- ``"blackhole"``: both directions stop, nothing is read, nothing closed: the far side is gone
  without a FIN, as when a node loses power or a route disappears.

Every link records the complete packets it forwarded down (:attr:`Link.packets_down`) when the
proxy was made with ``record=True``, so a test can check that the client received exactly what
got through before the fault. Closing the proxy aborts every link.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Direction", "FaultProxy", "Link", "CUTS"]

#: The cuts :meth:`FaultProxy.cut` knows.
CUTS = ("stall", "reset", "close", "blackhole")
_HEADER = 12
_READ = 16384


@dataclass
class Direction:
    """The faults applied to one direction of every link."""

    delay: float = 0.0
    rate: float | None = None
    chunk: int | None = None


class _Boundaries:
    """Follows NCP packet boundaries in a stream passing through; optionally keeps the packets."""

    def __init__(self, record: bool) -> None:
        self.index = 0  # complete packets seen
        self.pos = 0  # bytes of the current packet seen
        self.size = 0  # its size, once its header is complete
        self._head = bytearray()
        self._current: bytearray | None = bytearray() if record else None
        self.packets: list[bytes] = []

    def take(self, data: bytes, cut_index: int | None) -> int:
        """
        Passes ``data`` through; returns how many of its bytes to forward: all of them, or those
        before the middle of packet number ``cut_index``.
        """
        i, n = 0, len(data)
        while i < n:
            if self.size == 0:
                step = min(_HEADER - self.pos, n - i)
                self._head += data[i : i + step]
            else:
                end = self.size
                if cut_index == self.index:
                    end = max(self.size // 2, _HEADER)
                    if self.pos >= end:
                        return i
                step = min(end - self.pos, n - i)
            if self._current is not None:
                self._current += data[i : i + step]
            self.pos += step
            i += step
            if self.size == 0 and self.pos == _HEADER:
                self.size = max(int.from_bytes(self._head[8:12], "little") * 4, _HEADER + 1)
                self._head.clear()
            if self.size and self.pos == self.size:
                self.index += 1
                self.pos = self.size = 0
                if self._current is not None:
                    self.packets.append(bytes(self._current))
                    self._current.clear()
        return n


@dataclass
class _Cut:
    kind: str
    direction: str
    packet: int | None  # the packet in whose middle to cut; None: at once
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class Link:
    """One proxied connection (lives in the proxy's thread; read its counters from anywhere)."""

    def __init__(self, proxy: FaultProxy, client: tuple[Any, Any], server: tuple[Any, Any]) -> None:
        self._proxy = proxy
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.down = _Boundaries(proxy.record)
        self.up = _Boundaries(False)
        self.stopped = {"down": asyncio.Event(), "up": asyncio.Event()}
        self.cuts: list[_Cut] = []
        # Set once the link is closed: stalled pumps wait for it, holding their sockets open.
        self.released = asyncio.Event()
        #: Bytes forwarded in each direction.
        self.forwarded = {"down": 0, "up": 0}

    @property
    def packets_down(self) -> list[bytes]:
        """The complete packets forwarded from the server to the client (``record=True``)."""
        return list(self.down.packets)

    def _settings(self, direction: str) -> Direction:
        return self._proxy.directions[direction]

    def _boundaries(self, direction: str) -> _Boundaries:
        return self.down if direction == "down" else self.up

    def _pending_cut(self, direction: str) -> _Cut | None:
        for cut in self.cuts:
            if not cut.done.done() and (cut.direction == direction or cut.kind == "blackhole"):
                return cut
        return None

    def arm(self, cut: _Cut) -> None:
        if cut.packet is None or cut.kind == "blackhole":
            cut.packet = None
            self._apply(cut)
            return
        boundaries = self._boundaries(cut.direction)
        # The first packet that starts from now on.
        cut.packet = boundaries.index if boundaries.pos == 0 else boundaries.index + 1
        self.cuts.append(cut)

    def _apply(self, cut: _Cut) -> None:
        if cut.kind == "stall":
            self.stopped[cut.direction].set()
        elif cut.kind == "blackhole":
            for event in self.stopped.values():
                event.set()
        else:
            self.close(reset=cut.kind == "reset")
        if not cut.done.done():
            cut.done.set_result(None)

    def close(self, *, reset: bool) -> None:
        for writer in (self.client_writer, self.server_writer):
            transport = writer.transport
            if transport.is_closing():
                continue
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        for event in self.stopped.values():
            event.set()
        self.released.set()

    async def pump(self, direction: str) -> None:
        """Reads one side and writes the other, applying this direction's faults."""
        if direction == "down":
            reader, writer = self.server_reader, self.client_writer
        else:
            reader, writer = self.client_reader, self.server_writer
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=4)
        stopped = self.stopped[direction]
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while not stopped.is_set():
                try:
                    data = await reader.read(_READ)
                except OSError:
                    data = b""
                await queue.put((loop.time(), data))
                if not data:
                    return

        async def write() -> None:
            boundaries = self._boundaries(direction)
            while True:
                received, data = await queue.get()
                if stopped.is_set():
                    return
                if not data:
                    # The source closed: pass the FIN on (or the reset, as a close).
                    if not writer.transport.is_closing():
                        with contextlib.suppress(OSError):
                            if writer.can_write_eof():
                                writer.write_eof()
                    return
                settings = self._settings(direction)
                if settings.delay > 0:
                    await asyncio.sleep(max(0.0, received + settings.delay - loop.time()))
                while data:
                    if stopped.is_set():
                        return
                    cut = self._pending_cut(direction)
                    settings = self._settings(direction)
                    size = settings.chunk or len(data)
                    if settings.rate:
                        # Pieces of 1/20 s each, so the rate holds within a packet too.
                        size = min(size, max(1, int(settings.rate / 20)))
                    piece = data[:size]
                    count = boundaries.take(piece, cut.packet if cut is not None else None)
                    if count:
                        writer.write(piece[:count])
                        self.forwarded[direction] += count
                    data = data[count:]
                    if cut is not None and (count < len(piece) or _at_cut(boundaries, cut)):
                        if cut.kind == "reset":
                            # A reset drops what was not delivered yet: wait until the bytes
                            # before the cut are in the peer's socket, so that the link's count
                            # of what got through is exact.
                            await _delivered(writer)
                        self._apply(cut)
                        return
                    if settings.chunk or settings.rate:
                        try:
                            await writer.drain()
                        except OSError:
                            return
                    if settings.rate:
                        await asyncio.sleep(count / settings.rate)
                    if stopped.is_set():
                        return

        reading = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            if stopped.is_set():
                # Stalled: the sockets stay open (and unread) until the link is closed.
                await self.released.wait()


async def _delivered(writer: asyncio.StreamWriter, limit: float = 10.0) -> None:
    """Waits (at most ``limit`` s) until everything written is out of this side's buffers."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    sock = writer.get_extra_info("socket")
    while loop.time() < end:
        unsent = writer.transport.get_write_buffer_size()
        if not unsent and sock is not None:
            try:
                import fcntl
                import termios

                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
                unsent = struct.unpack("i", queued)[0]
            except (ImportError, OSError, AttributeError):  # not Linux: the transport's buffer only
                unsent = 0
        if not unsent:
            return
        await asyncio.sleep(0.005)


def _at_cut(boundaries: _Boundaries, cut: _Cut) -> bool:
    return (
        cut.packet == boundaries.index
        and boundaries.size > 0
        and boundaries.pos >= max(boundaries.size // 2, _HEADER)
    )


class FaultProxy:
    """
    The proxy: listens on 127.0.0.1 (:attr:`port`), forwards to ``target_port``.

    Use as a context manager (it starts and stops its thread). ``down`` and ``up`` are the
    faults of each direction (see :class:`Direction`); change them through :meth:`set`.
    ``record=True`` keeps the complete packets forwarded down on each :class:`Link`.
    """

    def __init__(
        self,
        target_port: int,
        *,
        down: Direction | None = None,
        up: Direction | None = None,
        record: bool = False,
    ) -> None:
        self.target_port = target_port
        self.directions = {"down": down or Direction(), "up": up or Direction()}
        self.record = record
        self.port = 0
        self.links: list[Link] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    # Life cycle (test thread).

    def __enter__(self) -> FaultProxy:
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, args=(started,), name="fault-proxy", daemon=True)
        self._thread.start()
        self.port = started.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        thread.join(30)

    def _call(self, function: Any, *args: Any) -> Any:
        loop = self._loop
        assert loop is not None
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(function(*args))
            except BaseException as ex:  # pragma: no cover - reported to the caller
                result.set_exception(ex)

        loop.call_soon_threadsafe(call)
        return result.result(10)

    # Faults (test thread; safe to call from the test's event loop, they do not block long).

    def set(self, direction: str, **settings: Any) -> None:
        """Changes the faults of ``direction`` (``"down"`` or ``"up"``): ``delay``, ``rate``, ``chunk``."""

        def apply() -> None:
            self.directions[direction] = Direction(**{**vars(self.directions[direction]), **settings})

        self._call(apply)

    def cut(self, kind: str, *, direction: str = "down", mid_packet: bool = True) -> asyncio.Future[None]:
        """
        Cuts every open link (see the module docstring); returns a future of the test's event
        loop that is done once every link has been cut.
        """
        assert kind in CUTS, kind

        def arm() -> list[concurrent.futures.Future[None]]:
            futures = []
            for link in self.links:
                cut = _Cut(kind, direction, 0 if mid_packet else None)
                link.arm(cut)
                futures.append(cut.done)
            return futures

        futures = self._call(arm)
        loop = asyncio.get_running_loop()
        return asyncio.ensure_future(asyncio.gather(*(asyncio.wrap_future(f, loop=loop) for f in futures)))  # type: ignore[arg-type]

    def close_links(self) -> None:
        """Aborts every link (a reset to both sides) and forgets them."""

        def close() -> None:
            for link in self.links:
                link.close(reset=True)
            self.links.clear()

        self._call(close)

    # The proxy's own thread.

    def _main(self, started: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._start(started))
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start(self, started: concurrent.futures.Future[int]) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        started.set_result(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()  # nothing listens: the client sees a reset, as from a router
            return
        for w in (writer, server[1]):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self, (reader, writer), server)
        self.links.append(link)
        try:
            await asyncio.gather(link.pump("down"), link.pump("up"))
        finally:
            for w in (writer, server[1]):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for link in self.links:
            link.close(reset=True)
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self._server.wait_closed()
        loop.call_soon(loop.stop)
