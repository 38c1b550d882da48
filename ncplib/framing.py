"""
Incremental NCP packet framing
==============================

:class:`PacketReader` turns a stream of received bytes into decoded packets without doing any
I/O itself, so it can sit under any transport (asyncio protocols, blocking sockets, files of
saved packets) and be tested with plain byte strings.

Two ways to feed it:

- :meth:`PacketReader.feed` copies bytes that were received elsewhere;
- :meth:`PacketReader.get_buffer` and :meth:`PacketReader.buffer_updated` let the caller receive
  straight into the reader's memory (the :class:`asyncio.BufferedProtocol` interface).

Then :meth:`PacketReader.read_packets` (or iteration) returns every packet completed so far.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from struct import Struct
from typing import TYPE_CHECKING, NoReturn

from ncplib import _wire as w
from ncplib.codec import impl as _codec
from ncplib.errors import DecodeError
from ncplib.packets import Packet

# The codec's decoder itself (ncplib.packets.decode_packet documents it), one call less per packet.
_decode_packet = _codec.decode_packet

__all__ = ["PacketReader", "DEFAULT_MAX_PACKET_SIZE"]

#: The default largest packet accepted from a peer: 64 MiB.
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024

_HEADER_PREFIX = Struct("<4s4sI")
_HEADER_SIZE = w.PACKET_HEADER_SIZE
_MAGIC = w.PACKET_HEADER_MAGIC
_MIN_SIZE = w.MIN_PACKET_SIZE
# Packets at least this large get a buffer of their own, received into directly and decoded in
# place; smaller ones are collected in the shared buffer, several per read, and copied out.
_OWN_BUFFER_SIZE = 64 * 1024
# The shared buffer a reader receives small packets into. A reader holds one only while it holds
# bytes: once everything received has been read, the buffer goes back to a small pool, so an idle
# connection holds none. It grows (a new, larger one) when unread packets fill it; a grown one is
# dropped, not pooled, so memory goes back to this size after a burst.
_SHARED_BUFFER_SIZE = 16 * 1024
# A reader whose reads fill its buffer takes a larger fresh one next time (doubling), up to this;
# larger ones are allocated for the burst and freed, never pooled.
_MAX_READ_SIZE = 256 * 1024
# Shared buffers kept for reuse, by all readers of the process: allocating and clearing one costs
# about as much as receiving a small packet, and many connections may each hold one at a time
# (all those read in one pass of the event loop). Bounded (8 MiB): beyond this, released
# buffers are freed. The pool only ever holds what was in use at once before.
_POOL_SIZE = 512
_pool: list[bytearray] = []
# What a reader holding no bytes has instead of a shared buffer; never written to (get_buffer
# takes a real one first).
_NO_BUFFER = bytearray()
# A packet's own buffer starts at most this large and grows as bytes arrive, so that memory
# follows what a peer really sent, not what its header claims (see _grow_own).
_OWN_BUFFER_START = 1024 * 1024


class PacketReader:
    """
    Splits received bytes into NCP packets and decodes them.

    :param int max_packet_size: The largest packet accepted, in bytes. A header announcing a
        larger one raises :exc:`ncplib.DecodeError` before any memory is set aside for it.
    :param bool use_numpy: Decode data params as read-only numpy arrays (see
        :func:`ncplib.packets.decode_packet`). A large packet is received into a buffer of its
        own, so those arrays view the received bytes with no copy at all.

    After a :exc:`~ncplib.DecodeError` the stream has lost its framing: the reader raises the
    same error again on every later call, and the connection should be closed. An invalid header
    behind complete packets not yet read is detected as soon as it arrives (nothing from it on
    is kept), but raised by :meth:`next_packet` once those packets have been read.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_error",
        "_next_header",
        "_own",
        "_own_filled",
        "_own_size",
        "_pending",
        "_read_size",
        "_ready",
        "_ready_bytes",
        "_start",
        "complete",
        "max_packet_size",
        "use_numpy",
    )

    def __init__(self, *, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE, use_numpy: bool = False) -> None:
        if max_packet_size < w.MIN_PACKET_SIZE:
            raise ValueError(w.MSG_MAX_PACKET_SIZE_TOO_SMALL.format(minimum=w.MIN_PACKET_SIZE))
        if use_numpy:
            import numpy  # noqa: F401  (fail now, not on the first array)
        self.max_packet_size = max_packet_size
        self.use_numpy = use_numpy
        # _NO_BUFFER while nothing is held (see _SHARED_BUFFER_SIZE).
        self._buf = _NO_BUFFER
        # The size of the next fresh shared buffer (see _MAX_READ_SIZE).
        self._read_size = _SHARED_BUFFER_SIZE
        self._start = 0
        self._end = 0
        self._own: bytearray | None = None
        self._own_filled = 0
        self._own_size = 0
        # Where the next header not yet validated starts in the shared buffer.
        self._next_header = 0
        # The error of a bad header behind complete packets: raised once they have been read.
        self._pending: DecodeError | None = None
        # Large packets received in full, waiting to be decoded, oldest first.
        self._ready: deque[bytearray] = deque()
        self._ready_bytes = 0
        self._error: DecodeError | None = None
        #: Whether :meth:`next_packet` has something to return (a packet, or an error); kept
        #: up to date by every method, so a caller can skip asking when there is nothing.
        self.complete = False

    @property
    def bytes_needed(self) -> int:
        """
        How many more bytes complete the next packet, or its header when that has not arrived.

        Always at least 1: more bytes are always welcome.
        """
        if self._own is not None:
            return self._own_size - self._own_filled
        available = self._end - self._start
        if available < w.PACKET_HEADER_SIZE:
            return w.PACKET_HEADER_SIZE - available
        size = self._packet_size(self._start)
        return max(size - available, 1)

    @property
    def buffered(self) -> int:
        """How many received bytes are held, in complete packets not yet read or in part of one."""
        held = self._end - self._start + self._ready_bytes
        if self._own is not None:
            held += self._own_filled
        return held

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """
        Returns writable memory to receive the next bytes into.

        Write into the start of it, then call :meth:`buffer_updated` with the number of bytes
        written. While a large packet is arriving this is that packet's own buffer.
        """
        if self._error is not None:
            raise self._error
        if self._own is not None:
            if self._own_filled == len(self._own):
                self._grow_own()
            return memoryview(self._own)[self._own_filled :]
        if self._start == self._end:
            self._start = self._end = self._next_header = 0
            size = self._read_size
            if len(self._buf) != size:
                if size > _SHARED_BUFFER_SIZE:
                    self._buf = bytearray(size)
                else:
                    # A buffer from the pool, or a new one. (Pooled ones have this size, unless
                    # it was changed since: tests and fuzzing do.)
                    try:
                        buf = _pool.pop()
                    except IndexError:  # (checking first would race with other threads' readers)
                        buf = _NO_BUFFER
                    if len(buf) != _SHARED_BUFFER_SIZE:
                        buf = bytearray(_SHARED_BUFFER_SIZE)
                    self._buf = buf
                    self._read_size = len(buf)
        elif len(self._buf) - self._end < 4096 or self._end > len(self._buf) // 2:
            self._compact()
            if len(self._buf) - self._end < 4096:
                # Complete packets are waiting to be read: make room rather than stall.
                # (A new buffer: the caller may still hold a view of the old one.)
                grown = bytearray(2 * len(self._buf))
                grown[: self._end] = memoryview(self._buf)[: self._end]
                self._buf = grown
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> bool:
        """
        Records that ``nbytes`` bytes were written into the memory from :meth:`get_buffer`.

        :raises ncplib.DecodeError: if the header of the next packet to read is invalid or
            announces a packet larger than ``max_packet_size``, or the reader has failed before.
        :raises ValueError: if ``nbytes`` is negative or more than the memory offered.
        :returns: Whether :meth:`next_packet` now has something to return (a packet, or the
            error of a bad header behind the packets held).
        """
        if self._error is not None:
            raise self._error
        own = self._own
        if own is not None:
            if not 0 <= nbytes <= len(own) - self._own_filled:
                raise ValueError(w.MSG_READER_OVERRUN.format(nbytes=nbytes, room=len(own) - self._own_filled))
            self._own_filled += nbytes
            if self._own_filled >= self._own_size:
                self._ready.append(own)
                self._ready_bytes += len(own)
                self._own = None
                self._own_filled = 0
                self.complete = True
            return self.complete
        if not 0 <= nbytes <= len(self._buf) - self._end:
            raise ValueError(w.MSG_READER_OVERRUN.format(nbytes=nbytes, room=len(self._buf) - self._end))
        if self._pending is None:
            end = self._end + nbytes
            # A read that filled the buffer: the peer sends faster than one buffer per pass, so
            # the next fresh buffer is larger (fewer reads); one that used little shrinks it.
            if end == len(self._buf):
                if self._read_size < _MAX_READ_SIZE:
                    self._read_size *= 2
            elif nbytes < self._read_size // 8 and self._read_size > _SHARED_BUFFER_SIZE:
                self._read_size //= 2
            self._end = end
            self._check_headers()
        # else: the stream is known to be broken; the bytes are dropped.
        complete = self.complete = (
            self._next_header > self._start or self._pending is not None or bool(self._ready)
        )
        return complete

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """
        Adds received bytes.

        :raises ncplib.DecodeError: if the header of the next packet to read is invalid or
            announces a packet larger than ``max_packet_size``, or the reader has failed before.
        """
        view = memoryview(data).cast("B")
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def read_packets(self) -> list[Packet]:
        """
        Decodes and returns every packet completed so far, oldest first.

        :raises ncplib.DecodeError: if a packet is malformed. Packets completed before it are
            lost with it; the stream cannot be resynchronised.
        """
        return list(self)

    def __iter__(self) -> Iterator[Packet]:
        """Yields each packet completed so far; see :meth:`read_packets`."""
        while True:
            packet = self.next_packet()
            if packet is None:
                return
            yield packet

    def next_packet(self) -> Packet | None:
        """
        Decodes and returns the next complete packet, or :data:`None` if none is complete yet.

        :raises ncplib.DecodeError: if the packet or its header is malformed, or the reader has
            failed before.
        """
        if self._error is not None:
            raise self._error
        try:
            if self._ready:
                own = self._ready.popleft()
                self._ready_bytes -= len(own)
                self.complete = (
                    bool(self._ready) or self._next_header > self._start or self._pending is not None
                )
                return _decode_packet(own, self.use_numpy)  # type: ignore[no-any-return]
            start = self._start
            if start < self._next_header:
                # Complete, and its header already checked when it arrived (_check_headers).
                return self._take_shared_packet(start)
            # _check_headers moves the mark past every packet complete when it arrives: the one
            # at the start is not complete yet (or a bad header stopped the stream there).
            if self._pending is not None and start == self._end:
                raise self._pending
            self.complete = False
            return None
        except DecodeError as ex:
            self._error = ex
            self.complete = True
            raise

    def _take_shared_packet(self, start: int) -> Packet:
        """Decodes the complete packet at ``start`` in the shared buffer and moves past it."""
        buf = self._buf
        end = start + int(_HEADER_PREFIX.unpack_from(buf, start)[2]) * 4
        self._start = end
        packet: Packet
        if self.use_numpy:
            # A copy of its own: the arrays view it, and the shared buffer is reused.
            packet = _decode_packet(buf[start:end], True)
        else:
            # Decoded values never refer to the buffer they came from: decode in place.
            packet = _decode_packet(memoryview(buf)[start:end], False)
        if end == self._end and self._pending is None:
            # Everything received has been read: the buffer is not needed until more arrives.
            # (_release_shared, inlined: this is once per packet on a quiet connection.)
            self._start = self._end = self._next_header = 0
            self._buf = _NO_BUFFER
            self.complete = False
            if len(buf) == _SHARED_BUFFER_SIZE and len(_pool) < _POOL_SIZE:
                _pool.append(buf)
        else:
            self.complete = end < self._next_header or self._pending is not None
        return packet

    def _release_shared(self) -> None:
        """Gives the (empty) shared buffer back to the pool; get_buffer takes one again."""
        buf = self._buf
        self._start = self._end = self._next_header = 0
        self._buf = _NO_BUFFER
        if len(buf) == _SHARED_BUFFER_SIZE and len(_pool) < _POOL_SIZE:
            _pool.append(buf)

    # Internals.

    def _packet_size(self, start: int) -> int:
        return int(_HEADER_PREFIX.unpack_from(self._buf, start)[2]) * 4

    def _compact(self) -> None:
        size = self._end - self._start
        self._buf[:size] = self._buf[self._start : self._end]
        self._next_header = max(self._next_header - self._start, 0)
        self._start = 0
        self._end = size

    def _check_headers(self) -> None:
        """
        Validates every packet header that has arrived in the shared buffer, and moves the mark
        of complete packets (``_next_header``) past those now complete.

        A bad header at the start of the held bytes raises at once. One behind complete packets
        not yet read fails the stream as soon as it arrives too (nothing from it on is kept, so
        a peer cannot make the buffer grow behind an impossible packet), but is raised once
        those packets have been read.
        """
        start = self._start
        pos = max(self._next_header, start)
        end = self._end
        buf = self._buf
        unpack_from = _HEADER_PREFIX.unpack_from
        while end - pos >= _HEADER_SIZE:
            magic, _type, size_words = unpack_from(buf, pos)
            size = size_words * 4
            if magic != _MAGIC or size < _MIN_SIZE or size > self.max_packet_size:
                problem = self._header_problem(pos, magic, size)
                if pos == start:
                    self._fail(problem)
                self._pending = DecodeError(problem)
                self._end = pos
                break
            if end - pos < size:
                if pos == start and size >= _OWN_BUFFER_SIZE:
                    self._move_to_own(size)
                    return
                break
            pos += size
        self._next_header = pos

    def _header_problem(self, pos: int, magic: bytes, size: int) -> str:
        """What is wrong with the packet header at ``pos``, giving ``magic`` and ``size`` (in bytes)."""
        if magic != w.PACKET_HEADER_MAGIC:
            head = bytes(memoryview(self._buf)[pos : min(self._end, pos + w.NOT_NCP_HEAD_SIZE + 1)])
            return w.bad_magic_message(head, "the peer sent")
        if size < w.MIN_PACKET_SIZE:
            return w.MSG_HEADER_BELOW_MINIMUM.format(size=size)
        return w.MSG_HEADER_ABOVE_MAXIMUM.format(size=size, maximum=self.max_packet_size)

    def _move_to_own(self, size: int) -> None:
        """Moves the partial large packet at the start into a buffer of its own, received into from now on."""
        start = self._start
        available = self._end - start
        start_size = max(_OWN_BUFFER_START, 2 * available)
        own = bytearray(size if 2 * start_size > size else start_size)
        own[:available] = memoryview(self._buf)[start : self._end]
        self._own = own
        self._own_filled = available
        self._own_size = size
        self._release_shared()
        # Large packets arrive into their own buffers: reads into the shared one stay small, so
        # that little of the next large packet is received there and copied out.
        self._read_size = _SHARED_BUFFER_SIZE

    def _grow_own(self) -> None:
        # A new buffer, not a resize: the caller may still hold a view of the old one. While the
        # bytes move, old and new buffers are both held: doubling only while the new buffer stays
        # within half the packet, then going straight to the packet's size, keeps that peak
        # under 1.5 times the packet (a buffer is never more than half the packet when it grows).
        own = self._own
        assert own is not None
        size = self._own_size
        grown = bytearray(size if 4 * len(own) > size else 2 * len(own))
        grown[: self._own_filled] = own
        self._own = grown

    def _fail(self, message: str) -> NoReturn:
        self._error = DecodeError(message)
        self.complete = True
        raise self._error


# The compiled codec has the same reader in C (ncplib/_framing.pxi), which reads, checks and decodes
# a packet with no Python step between: this class is its specification, used where the codec is
# pure Python.
def _apply_buffer_sizes() -> None:
    """Gives the sizes above to the compiled reader; again after changing them (tests, fuzzing)."""
    configure = getattr(_codec, "_configure_reader", None)
    if configure is not None:
        configure(_OWN_BUFFER_SIZE, _SHARED_BUFFER_SIZE, _MAX_READ_SIZE, _POOL_SIZE, _OWN_BUFFER_START)


# The pure-Python reader whichever codec is active: the compiled one is tested against it.
_PurePacketReader = PacketReader

if not TYPE_CHECKING and hasattr(_codec, "_PacketReader"):
    _apply_buffer_sizes()
    PacketReader = _codec._PacketReader
