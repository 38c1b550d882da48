# The compiled receive core of ncplib._protocol.NCPProtocol, included by _codec.pyx.
#
# It behaves as the pure-Python ncplib._receive.ReceiveCore, which is its specification (the
# documentation and the reasons for each step are there). The state lives here as typed slots,
# set by NCPProtocol.__init__; the rare paths (head mode, failure, flow control, timers) are the
# protocol's Python methods, called by name.

cimport cython

# As ncplib._receive defines them (set by _configure_receive when it imports this).
cdef Py_ssize_t _MIN_READ = 64 * 1024
cdef object _NO_WAITERS = ()


def _configure_receive(min_read, no_waiters):
    """Takes the receive core's constants from ncplib._receive (their one definition)."""
    global _MIN_READ, _NO_WAITERS
    _MIN_READ = min_read
    _NO_WAITERS = no_waiters


# nonecheck: the reader slot is typed, and an instance made without __init__ (or a reader set to
# None) must raise AttributeError, as in Python, not read through a null pointer.
@cython.nonecheck(True)
cdef class _ReceiveCore:
    """The per-packet methods of NCPProtocol: ncplib._receive.ReceiveCore, compiled."""

    # Roughly in the order of use (a read's callbacks first, then a field's hand-out, then a
    # wait), the two flags side by side: with many connections each read finds these out of the
    # CPU's caches, and every cache line the slots span counts.
    cdef public _PacketReader reader
    cdef public object _error
    cdef public object _head
    cdef public object _time
    cdef public object last_received
    cdef public object _pending_since
    cdef public object _waiter
    cdef public object _waiters
    cdef public bint _read_paused
    cdef public bint _lost
    cdef public Py_ssize_t high_water
    cdef public object on_data
    cdef public object transport
    cdef public object _new_future
    cdef public double _deadline_at
    cdef public double _wait_start
    cdef public double _wait_timeout

    def get_buffer(self, sizehint):
        cdef Py_ssize_t room
        if self._error is not None:
            return memoryview(bytearray(4096))
        if self._head is not None:
            return (<object>self)._head_view()
        view = self.reader.get_buffer(sizehint)
        if len(view) > _MIN_READ:
            room = self.high_water - self.reader._buffered()
            if len(view) > room:
                view = view[: max(room, _MIN_READ)]
        return view

    def buffer_updated(self, nbytes):
        cdef _PacketReader reader = self.reader
        now = self.last_received = self._time()
        if self._error is not None:
            return
        if self._pending_since is None:
            self._pending_since = now
        if self._head is not None:
            (<object>self)._head_updated(nbytes)
            return
        try:
            complete = reader.buffer_updated(nbytes)
        except DecodeError as ex:
            (<object>self)._fail(ex)
            return
        if complete and (self._waiter is not None or self._waiters):
            self._release_waits()
        elif not self._read_paused and reader._buffered() > self.high_water and not self._someone_waits():
            (<object>self)._pause_reading()
            self._wake()
            return
        elif not complete and not self._read_paused:
            return
        on_data = self.on_data
        if on_data is not None:
            on_data()

    def next_packet(self):
        """Decodes the next complete packet, or returns None; see ncplib._receive.ReceiveCore."""
        return self._next_packet()

    # (Also called from C, by the compiled tap of ncplib.fleet.)
    @cython.cdivision(False)
    cdef object _next_packet(self):
        cdef _PacketReader reader = self.reader
        if reader.complete:
            try:
                packet = reader.next_packet()
            except DecodeError as ex:
                (<object>self)._fail(ex)
                raise
            if packet is not None:
                self._pending_since = None
                if self._read_paused and reader._buffered() <= self.high_water // 4:
                    (<object>self)._resume_reading()
                return packet
        transport = self.transport
        if self._lost or self._error is not None or transport is None or transport.is_closing():
            (<object>self).raise_if_broken()
        if self._read_paused:
            (<object>self)._caught_up()
        return None

    def wait_data(self, timeout):
        """A future done when more bytes may complete a packet; see ncplib._receive.ReceiveCore."""
        if self._read_paused:
            (<object>self)._caught_up()
        cdef double start = 0.0
        cdef double seconds = 0.0
        waiter = self._new_future()
        if timeout > 0:
            seconds = timeout
            start = self._time()
            if start + seconds < self._deadline_at:
                (<object>self)._arm_deadline(start + seconds)
        current = self._waiter
        if current is None or current.done():
            self._waiter = waiter
            self._wait_start = start
            self._wait_timeout = seconds
        else:
            waiting = [wait for wait in self._waiters if not wait[0].done()]
            waiting.append((waiter, start, seconds))
            self._waiters = waiting
        return waiter

    def _has_news(self):
        return self._news()

    # (Also called from C, by the compiled tap of ncplib.fleet.)
    cdef inline bint _news(self):
        return self.reader.complete or self._read_paused or self._lost or self._error is not None

    cdef _release_waits(self):
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._waiters:
            for waiter, _start, _timeout in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = _NO_WAITERS

    def _wake(self):
        self._release_waits()
        on_data = self.on_data
        if on_data is not None:
            on_data()

    def _someone_waits(self):
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            return True
        for waiter, _start, _timeout in self._waiters:
            if not waiter.done():
                return True
        return False
