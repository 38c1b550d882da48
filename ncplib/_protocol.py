"""
The asyncio protocol under a :class:`~ncplib.Connection`.

Receiving: the protocol is an :class:`asyncio.BufferedProtocol` whose ``get_buffer`` and
``buffer_updated`` go straight to a :class:`~ncplib.framing.PacketReader`, so the kernel writes
into the reader's memory (a large packet into its own final buffer). Packets are decoded lazily,
when the connection asks for the next one, which keeps flow control simple: once more than
``high_water`` received bytes wait to be read, reading pauses, and it resumes when the
application has consumed them (or is waiting for a packet that has not fully arrived). Memory
held per connection is therefore bounded by ``high_water`` plus one packet of at most
``max_packet_size``.

Before NCP starts, the protocol can be in *head mode*: it collects an HTTP head (the CONNECT
step, see :mod:`ncplib.tunnel`) of bounded size; any bytes after the head go to the reader. A
peer whose first bytes are an NCP packet header does not do that step: it fails at once (see
:func:`ncplib.tunnel.check_head_start`). The head buffer is taken at the first read.

Sending: buffers from :func:`~ncplib.packets.encode_packet_buffers` are queued and handed to
the transport once per pass of the event loop, so a burst of small packets costs one system call.
Large buffers (array data) are never copied into a joined bytes object: transports with a real
``writelines`` (uvloop, TLS) get the list as it is; asyncio's socket transport gets small pieces
joined and large ones written one by one. ``pause_writing``/``resume_writing`` drive
:meth:`NCPProtocol.drain`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ncplib._receive import NO_WAITERS, ReceiveCore, Wait
from ncplib.codec import impl as _codec
from ncplib.errors import ConnectionClosed, DecodeError, NetworkError, NetworkTimeoutError
from ncplib.framing import PacketReader
from ncplib.tunnel import MAX_HEAD_SIZE, check_head_start

__all__ = ["NCPProtocol", "DEFAULT_HIGH_WATER"]

#: Received bytes waiting to be read above which reading from the socket pauses.
DEFAULT_HIGH_WATER = 4 * 1024 * 1024
# Buffers smaller than this are joined before writing where the transport has no real writelines.
_SMALL_BUFFER = 16 * 1024
_HEAD_END = b"\r\n\r\n"
_NEVER = float("inf")
# drain() lets the event loop run at least once every this many calls.
_DRAIN_YIELD_EVERY = 16
# Whether asyncio.Future() (no loop argument) is made faster than by loop.create_future().
_BARE_FUTURE_IS_CHEAPER = sys.version_info >= (3, 12)


def _has_native_writelines(transport: asyncio.BaseTransport) -> bool:
    """
    Whether the transport's writelines writes the buffers as they are *and* applies flow control.

    asyncio's socket transports do not qualify: before 3.12 their writelines joins everything,
    and from 3.12 it skips pause_writing (so drain() would never wait).
    """
    cls = type(transport)
    if getattr(cls, "writelines", None) is asyncio.WriteTransport.writelines:
        return False
    return cls.__module__ == "asyncio.sslproto" or not cls.__module__.startswith("asyncio.")


# The per-packet methods: compiled with the codec where it is (ncplib/_receive.pxi), else the
# pure-Python specification.
if not TYPE_CHECKING and hasattr(_codec, "_ReceiveCore"):
    ReceiveCore = _codec._ReceiveCore


class NCPProtocol(ReceiveCore, asyncio.BufferedProtocol):
    """
    Bytes in and out for one NCP connection; see the module docstring.

    :param int max_packet_size: The largest packet accepted, in bytes.
    :param bool use_numpy: Decode data params as read-only numpy views.
    :param bool head_mode: Start by collecting an HTTP head (see :meth:`read_head`).
    :param int high_water: Received bytes held before reading pauses.
    """

    transport: asyncio.Transport | None

    def __init__(
        self,
        *,
        max_packet_size: int,
        use_numpy: bool,
        head_mode: bool = False,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        loop = asyncio.get_running_loop()
        # The attributes read for every packet come first: an instance keeps its attributes in
        # the order they were first set, so these share a cache line or two. With many
        # connections, each packet finds its connection's objects out of the CPU's caches, and
        # every line touched counts.
        self.reader = PacketReader(max_packet_size=max_packet_size, use_numpy=use_numpy)
        self._error: BaseException | None = None
        # In head mode, empty until the first read: a connection that stays silent costs no
        # head buffer (see get_buffer).
        self._head: bytearray | None = bytearray() if head_mode else None
        self.set_high_water(high_water)
        # The loop's clock and futures, without a Python method call per packet where the loop
        # is asyncio's own (whose time() is time.monotonic() and create_future() a Future). A
        # Future made without a loop argument belongs to the running loop, which is this one
        # whenever a wait starts; from Python 3.12 that costs two thirds of loop.create_future()
        # (keyword parsing and a method call), but before 3.12 it costs more than half as much
        # again (the running loop is found the slow way).
        self._time: Callable[[], float] = loop.time
        self._new_future: Callable[[], asyncio.Future[None]] = loop.create_future
        if type(loop).time is asyncio.BaseEventLoop.time:
            self._time = time.monotonic
        if _BARE_FUTURE_IS_CHEAPER and type(loop).create_future is asyncio.BaseEventLoop.create_future:
            self._new_future = asyncio.Future
        self.last_received = self._time()
        # When bytes first arrived since the last packet was taken; None when none have. A wait
        # times out a timeout after this time when it is set (else after the wait's start), so
        # a peer that trickles bytes of a packet that never completes cannot hold the
        # connection forever (see wait_data).
        self._pending_since: float | None = None
        # The task waiting for a packet, if one does: its future (None, or a future already
        # done, when none waits), when the wait began (loop time) and its timeout (seconds, 0
        # for none). Waits of further tasks at the same time: (future, start, timeout) each,
        # listed (see wait_data); the shared empty tuple while there are none, as nearly always.
        self._waiter: asyncio.Future[None] | None = None
        self._wait_start = 0.0
        self._wait_timeout = 0.0
        self._waiters: list[Wait] | tuple[()] = NO_WAITERS
        self._read_paused = False
        #: Called (synchronously, from the event loop's callbacks) whenever a complete packet may
        #: have become available, and when the connection ends or fails; for a consumer that
        #: polls many connections instead of waiting on each. It must be cheap and not raise.
        self.on_data: Callable[[], None] | None = None
        self._lost = False
        self.transport = None
        # One timer per connection enforces every wait's timeout (see _on_deadline); when it
        # fires (loop time), infinite while none is armed.
        self._deadline_at = _NEVER
        self._deadline: asyncio.TimerHandle | None = None
        self._loop = loop
        self._head_len = 0
        self._head_done: bytes | None = None
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        # While drain() waits, one timer per connection watches the write buffer (see
        # _on_drain_deadline): when it last shrank, and its size then.
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drain_timeout = 0.0
        self._drain_moved_at = 0.0
        self._drain_size = 0
        self._closed: asyncio.Future[None] = loop.create_future()
        self._made = False
        self._lost_exc: BaseException | None = None
        self._write_paused = False
        # drain() calls since it last let the event loop run.
        self._drains_unyielded = 0
        self._pending: list[Any] | None = None
        self._write_buffers: Callable[[Sequence[Any]], None] = self._writelines_joined
        #: Called once the transport is gone (the connection stops its timers and logs).
        self.on_lost: Callable[[], None] | None = None
        #: Called once the connection is made (the server starts the connection's task).
        self.on_made: Callable[[], None] | None = None

    def set_high_water(self, high_water: int) -> None:
        """
        Sets the received bytes held before reading pauses (see the module docstring).

        Held bytes can never exceed ``sys.maxsize``, so a larger mark means the same and is
        stored as that (the compiled core keeps it as a C size).
        """
        self.high_water = min(high_water, sys.maxsize)

    # asyncio callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not derive from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self._made = True
        self.last_received = self._loop.time()
        if _has_native_writelines(transport):
            self._write_buffers = self.transport.writelines
        if self.on_made is not None:
            self.on_made()

    def _head_view(self) -> memoryview:
        # The room left in the head buffer, taken at the first read (see get_buffer).
        head = self._head
        assert head is not None
        if not head:
            head = self._head = bytearray(MAX_HEAD_SIZE)
        return memoryview(head)[self._head_len :]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._lost_exc = exc
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            self._deadline_at = _NEVER
        self._stop_drain_timer()
        if self.on_lost is not None:
            self.on_lost()
        self._wake()
        self._wake_drain_waiters()
        if not self._closed.done():
            self._closed.set_result(None)

    def _wake_drain_waiters(self) -> None:
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._stop_drain_timer()
        self._wake_drain_waiters()

    # Head mode.

    def _head_updated(self, nbytes: int) -> None:
        head = self._head
        assert head is not None
        start = max(self._head_len - 3, 0)
        self._head_len += nbytes
        if start == 0 and self._head_len >= 4:
            # The first 4 bytes: a peer speaking NCP at once gets a clear error, not a wait.
            try:
                check_head_start(bytes(head[: self._head_len]))
            except NetworkError as ex:
                self._fail(ex)
                return
        end = head.find(_HEAD_END, start, self._head_len)
        if end < 0:
            if self._head_len >= len(head):
                self._fail(NetworkError(f"HTTP head larger than {MAX_HEAD_SIZE} bytes"))
            return
        end += len(_HEAD_END)
        self._head_done = bytes(head[:end])
        rest = head[end : self._head_len]
        self._head = None
        # The head is complete: the clock starts again for the first packet.
        self._pending_since = self.last_received if rest else None
        if rest:
            try:
                self.reader.feed(rest)
            except DecodeError as ex:
                self._fail(ex)
                return
        self._wake()

    async def read_head(self, timeout: float) -> bytes:
        """
        Waits for the HTTP head the protocol was collecting, then switches to NCP.

        :raises ncplib.NetworkError: if the head is too large or the connection was lost.
        :raises ncplib.NetworkTimeoutError: if the head did not arrive whole within ``timeout``
            seconds of its first byte (or of the call, when none arrived).
        :returns: The head, up to and including the blank line.
        """
        while self._head_done is None:
            self.raise_if_broken()
            await self.wait_data(timeout)
        head, self._head_done = self._head_done, None
        return head

    # Receiving.

    @property
    def packet_started(self) -> float | None:
        """
        When (event-loop time, seconds) the first byte of the packet still incomplete arrived, or
        :data:`None` when none of it is held (reset whenever a packet is taken).

        For a consumer that polls (see ``on_data``) rather than waits: a packet must arrive whole
        within the timeout counted from this time, as :meth:`wait_data` enforces.
        """
        return self._pending_since

    def raise_if_broken(self) -> None:
        """
        Raises the reason no more packets can arrive, if there is one.

        :raises ncplib.NCPError: the stored error, :exc:`ncplib.NetworkError` if the connection
            was lost (or ended in the middle of a packet), or :exc:`ncplib.ConnectionClosed`.
        """
        if self._error is not None:
            raise self._error
        transport = self.transport
        if self._lost or (transport is not None and transport.is_closing()):
            if self._lost_exc is not None:
                raise NetworkError(str(self._lost_exc) or type(self._lost_exc).__name__) from self._lost_exc
            if self.reader.buffered or (self._head is not None and self._head_len):
                raise NetworkError("Connection closed in the middle of a packet")
            raise ConnectionClosed("Connection closed")

    def _arm_deadline(self, due: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_at(due, self._on_deadline)
        self._deadline_at = due

    def _open_waits(self) -> list[Wait]:
        """The waits not yet ended nor withdrawn."""
        waits = [wait for wait in self._waiters if not wait[0].done()]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waits.insert(0, (waiter, self._wait_start, self._wait_timeout))
        return waits

    def _on_deadline(self) -> None:
        self._deadline = None
        self._deadline_at = _NEVER
        loop = self._loop
        now = loop.time()
        pending = self._pending_since
        next_due: float | None = None
        for waiter, start, timeout in self._open_waits():
            if timeout <= 0:
                continue
            due = (start if pending is None else pending) + timeout
            if due <= now + 0.001:
                message = f"No complete packet received for {timeout:g} seconds"
                waiter.set_exception(NetworkTimeoutError(message))
            elif next_due is None or due < next_due:
                next_due = due
        if next_due is not None and not self._lost:
            self._arm_deadline(next_due)

    def _caught_up(self) -> None:
        """The application has read everything complete: reading paused for it resumes."""
        self._resume_reading()
        if self._pending_since is not None:
            # Time spent paused was ours, not the peer's: the packet's clock starts now.
            self._pending_since = self._loop.time()

    def _pause_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._read_paused = True
            transport.pause_reading()

    def _resume_reading(self) -> None:
        self._read_paused = False
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _fail(self, exc: BaseException) -> None:
        # Once only: the reader raises its error again at every later call of next_packet, and
        # waking again would call on_data, whose taking of packets calls next_packet: without
        # this, a consumer taking packets in on_data (a Fleet) recursed until RecursionError.
        if self._error is not None:
            return
        self._error = exc
        self.close()
        self._wake()

    # Sending.

    def write_raw(self, data: bytes) -> None:
        """Writes ``data`` (after anything queued) unless the transport is closing."""
        self.flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def write_buffers(self, buffers: Sequence[Any]) -> bool:
        """
        Queues ``buffers`` (in order) for writing unless the transport is closing.

        Buffers queued during one pass of the event loop go to the transport together, at the
        end of that pass (or at :meth:`flush`), so a burst of small packets costs one system call
        rather than one each.

        :returns: :data:`True` if queued, :data:`False` if dropped because the connection closes.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        pending = self._pending
        if pending is None:
            self._pending = list(buffers)
            self._loop.call_soon(self.flush)
        else:
            pending.extend(buffers)
        return True

    def flush(self) -> None:
        """Hands the queued buffers to the transport now."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._write_buffers(pending)

    def _writelines_joined(self, buffers: Sequence[Any]) -> None:
        # This transport's writelines would join everything into one new bytes object: join only
        # the small pieces, and write large ones as they are.
        transport = self.transport
        assert transport is not None
        small: list[Any] = []
        for buf in buffers:
            size = len(buf) if isinstance(buf, bytes) else memoryview(buf).nbytes
            if size < _SMALL_BUFFER:
                small.append(buf)
                continue
            if small:
                transport.write(b"".join(small))
                small = []
            transport.write(buf)
        if small:
            transport.write(b"".join(small) if len(small) > 1 else small[0])

    async def drain(self, timeout: float = 0) -> None:
        """
        Waits while the transport's write buffer is above its high-water mark.

        Every ``_DRAIN_YIELD_EVERY`` calls that had no reason to wait, it lets the event loop run
        once all the same: a sender that loops on ``send(); await drain()`` while the socket
        takes everything would otherwise hold the loop, and every other connection, for as long
        as it has something to send.

        :param float timeout: Seconds the write buffer may stay without shrinking while this
            waits; 0 for no limit. Past it the connection fails (and is aborted: what the peer
            got is unknown) with :exc:`ncplib.NetworkTimeoutError`, raised here and by every later
            call. One timer per connection, armed only while someone waits.
        :raises ncplib.NCPError: why the connection broke, or :exc:`ncplib.ConnectionClosed`.
        """
        self.flush()
        while True:
            if self._error is not None or self.is_closing():
                self.raise_if_broken()
                raise ConnectionClosed("Connection closed")
            if not self._write_paused:
                self._drains_unyielded += 1
                if self._drains_unyielded >= _DRAIN_YIELD_EVERY:
                    self._drains_unyielded = 0
                    await asyncio.sleep(0)
                return
            self._drains_unyielded = 0
            if timeout > 0 and self._drain_timer is None:
                self._start_drain_timer(timeout)
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def _write_buffer_size(self) -> int:
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def _start_drain_timer(self, timeout: float) -> None:
        now = self._loop.time()
        self._drain_timeout = timeout
        self._drain_moved_at = now
        self._drain_size = self._write_buffer_size()
        self._drain_timer = self._loop.call_at(now + timeout, self._on_drain_deadline)

    def _stop_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _on_drain_deadline(self) -> None:
        self._drain_timer = None
        if self._lost or not self._write_paused or all(w.done() for w in self._drain_waiters):
            # Nobody waits any more (a waiter cancelled); the next wait arms the timer again.
            return
        loop = self._loop
        now = loop.time()
        size = self._write_buffer_size()
        if size < self._drain_size:
            # The peer took something since the last look: its clock starts again.
            self._drain_size = size
            self._drain_moved_at = now
        due = self._drain_moved_at + self._drain_timeout
        if due > now + 0.001:
            self._drain_timer = loop.call_at(due, self._on_drain_deadline)
            return
        message = f"Peer took none of the {size} bytes waiting to be sent for {self._drain_timeout:g} seconds"
        if self._error is None:
            self._error = NetworkTimeoutError(message)
        transport = self.transport
        if transport is not None:
            # Nothing queued can be delivered: abort rather than wait to flush it.
            transport.abort()
        self._wake()
        self._wake_drain_waiters()

    # Closing.

    def close(self) -> None:
        """Closes the transport (queued writes are flushed first)."""
        self.flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def is_closing(self) -> bool:
        """Returns :data:`True` once the transport is closing or gone."""
        transport = self.transport
        return self._lost or (transport is not None and transport.is_closing())

    async def wait_closed(self, timeout: float) -> None:
        """
        Waits until the transport has closed; aborts it if that takes more than ``timeout`` seconds.
        """
        if self.transport is None:
            return
        if not self._closed.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), timeout if timeout > 0 else None)
            except asyncio.TimeoutError:
                self.transport.abort()
                await self._closed
