"""
The receive core of :class:`ncplib._protocol.NCPProtocol`: what runs for every packet.

The read callbacks (``get_buffer``, ``buffer_updated``), handing out the next packet
(``next_packet``) and a task's wait for one (``wait_data``). With many connections each
delivering one packet at a time, these run once or twice per field, and their cost per field is
most of the library's own. The compiled codec has the same class in C (``ncplib/_receive.pxi``,
``ncplib._codec._ReceiveCore``); this one is its specification, used where the codec is pure
Python (see :mod:`ncplib.codec`). Both run under the whole test suite.

The core holds no state of its own: :class:`~ncplib._protocol.NCPProtocol` sets the attributes
declared below in its ``__init__`` and provides the hooks for the rare paths (head mode, failure,
flow control, timers), which the core calls by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ncplib.codec import impl as _codec
from ncplib.errors import DecodeError
from ncplib.framing import PacketReader
from ncplib.packets import Packet

__all__ = ["ReceiveCore", "MIN_READ", "NO_WAITERS", "Wait"]

#: The least room offered for one read, even at the high-water mark; smaller views are never cut.
MIN_READ = 64 * 1024
#: A task's wait for a packet: its future, when it began (loop time) and its timeout (seconds).
Wait = tuple["asyncio.Future[None]", float, float]
#: The further waits of a connection when at most one task waits on it (nearly always): a shared
#: empty tuple, so that no list of this connection's is touched per read.
NO_WAITERS: tuple[()] = ()


# The compiled core takes these from here.
_configure = getattr(_codec, "_configure_receive", None)
if _configure is not None:
    _configure(MIN_READ, NO_WAITERS)


class ReceiveCore:
    """The per-packet methods of :class:`~ncplib._protocol.NCPProtocol`; see the module docstring."""

    # Set by the protocol's __init__ (the compiled core declares them as typed slots).
    reader: PacketReader
    _error: BaseException | None
    _head: bytearray | None
    high_water: int
    _time: Callable[[], float]
    _new_future: Callable[[], asyncio.Future[None]]
    last_received: float
    _pending_since: float | None
    _waiter: asyncio.Future[None] | None
    _wait_start: float
    _wait_timeout: float
    _waiters: list[Wait] | tuple[()]
    _read_paused: bool
    on_data: Callable[[], None] | None
    _lost: bool
    transport: asyncio.Transport | None
    _deadline_at: float

    # Hooks, provided by the protocol.

    def _head_view(self) -> memoryview:
        raise NotImplementedError

    def _head_updated(self, nbytes: int) -> None:
        raise NotImplementedError

    def _fail(self, exc: BaseException) -> None:
        raise NotImplementedError

    def _pause_reading(self) -> None:
        raise NotImplementedError

    def _resume_reading(self) -> None:
        raise NotImplementedError

    def _caught_up(self) -> None:
        raise NotImplementedError

    def _arm_deadline(self, due: float) -> None:
        raise NotImplementedError

    def raise_if_broken(self) -> None:
        raise NotImplementedError

    # The read callbacks.

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._error is not None:
            # The stream is broken and the transport closing; a TLS transport may still hand
            # over data it had decrypted. Receive it into scratch memory and drop it.
            return memoryview(bytearray(4096))
        if self._head is not None:
            return self._head_view()
        view = self.reader.get_buffer(sizehint)
        # One read must not carry the held bytes far past the high-water mark (the reader's
        # buffer grows when packets wait to be read, so it can offer more room than that).
        if len(view) > MIN_READ:
            room = self.high_water - self.reader.buffered
            if len(view) > room:
                view = view[: max(room, MIN_READ)]
        return view

    def buffer_updated(self, nbytes: int) -> None:
        now = self.last_received = self._time()
        if self._error is not None:
            return
        if self._pending_since is None:
            self._pending_since = now
        if self._head is not None:
            self._head_updated(nbytes)
            return
        reader = self.reader
        try:
            complete = reader.buffer_updated(nbytes)
        except DecodeError as ex:
            self._fail(ex)
            return
        if complete and (self._waiter is not None or self._waiters):
            # Someone waits for this packet: no reason to pause.
            self._release_waits()
        elif not self._read_paused and reader.buffered > self.high_water and not self._someone_waits():
            # Nobody is waiting for a packet: stop reading until the application catches up.
            # (Never while someone waits: the packet they wait for may be the one arriving.)
            self._pause_reading()
            # Also when reading just paused inside a packet larger than the high-water mark: a
            # consumer without a waiter (on_data) must look, find no packet and so let reading
            # resume, or the packet never arrives.
            self._wake()
            return
        elif not complete and not self._read_paused:
            return
        on_data = self.on_data
        if on_data is not None:
            on_data()

    # Handing out packets and waiting for them.

    def next_packet(self) -> Packet | None:
        """
        Decodes the next complete packet, or returns :data:`None` when none is complete yet.

        Returning :data:`None` means the application has caught up: reading paused for flow
        control resumes.

        :raises ncplib.DecodeError: if the stream is malformed; the transport is then closed.
        :raises ncplib.NCPError: when nothing complete is held and no more can arrive, the
            reason (see ``raise_if_broken``).
        """
        reader = self.reader
        if reader.complete:
            try:
                packet = reader.next_packet()
            except DecodeError as ex:
                self._fail(ex)
                raise
            if packet is not None:
                # A packet arrived whole: whatever follows it gets a full timeout of its own,
                # counted from the next bytes to arrive or the next wait, whichever comes first.
                self._pending_since = None
                if self._read_paused and reader.buffered <= self.high_water // 4:
                    self._resume_reading()
                return packet
        transport = self.transport
        if self._lost or self._error is not None or transport is None or transport.is_closing():
            self.raise_if_broken()
        if self._read_paused:
            self._caught_up()
        return None

    def wait_data(self, timeout: float) -> asyncio.Future[None]:
        """
        Returns a future done when more bytes may complete a packet, or the connection ends.

        Await it at once. Cancelling it (or the task awaiting it) withdraws the wait.

        :raises ncplib.NetworkTimeoutError: (from the future) if no complete packet arrived within
            ``timeout`` seconds, counted from the first byte of the packet still incomplete, or
            from the start of the wait when none of it is held: bytes that never complete a
            packet (a peer sending one now and then) do not keep the connection alive. No
            timeout when ``timeout`` is 0.
        """
        if self._read_paused:
            self._caught_up()
        waiter = self._new_future()
        start = 0.0
        if timeout > 0:
            # A float, whatever number was given (as the compiled core keeps it).
            timeout = float(timeout)
            start = self._time()
            due = start + timeout
            # A wait is the common case, one per packet: the timer armed for an earlier wait
            # usually fires first, and _on_deadline arms it again for the waits still open.
            if due < self._deadline_at:
                self._arm_deadline(due)
        else:
            timeout = 0.0
        current = self._waiter
        if current is None or current.done():
            # The one wait, in the core's own attributes: no list, tuple or other object of the
            # connection's is made per wait, nor found out of the CPU's caches at the wake-up.
            self._waiter = waiter
            self._wait_start = start
            self._wait_timeout = timeout
        else:
            # Another task waits on the same connection (rare): the waits beyond the first are
            # listed, with those withdrawn since the last wake-up left out.
            waiting = [wait for wait in self._waiters if not wait[0].done()]
            waiting.append((waiter, start, timeout))
            self._waiters = waiting
        return waiter

    def _has_news(self) -> bool:
        """
        Whether a call of :meth:`next_packet` has something to do: a packet is complete, reading
        is paused (to resume), or the connection ended or failed (to report).
        """
        return self.reader.complete or self._read_paused or self._lost or self._error is not None

    def _release_waits(self) -> None:
        """Ends every wait: their futures done (unless withdrawn), and none left open."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._waiters:
            for waiter, _start, _timeout in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = NO_WAITERS

    def _wake(self) -> None:
        self._release_waits()
        on_data = self.on_data
        if on_data is not None:
            on_data()

    def _someone_waits(self) -> bool:
        waiter = self._waiter
        return (waiter is not None and not waiter.done()) or any(
            not waiter.done() for waiter, _start, _timeout in self._waiters
        )
