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

    cdef public _PacketReader reader
    cdef public object _error
    cdef public object _head
    cdef public Py_ssize_t high_water
    cdef public object _time
    cdef public object _new_future
    cdef public object last_received
    cdef public object _pending_since
    cdef public object _waiters
    cdef public bint _read_paused
    cdef public object on_data
    cdef public bint _lost
    cdef public object transport
    cdef public double _deadline_at

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
        waiters = self._waiters
        if complete and waiters:
            for waiter, _start, _timeout in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = _NO_WAITERS
        elif not self._read_paused and reader._buffered() > self.high_water and not self._someone_waits():
            (<object>self)._pause_reading()
            self._wake()
            return
        elif not complete and not self._read_paused:
            return
        on_data = self.on_data
        if on_data is not None:
            on_data()

    @cython.cdivision(False)
    def next_packet(self):
        """Decodes the next complete packet, or returns None; see ncplib._receive.ReceiveCore."""
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
        waiter = self._new_future()
        if timeout > 0:
            start = self._time()
            entry = (waiter, start, timeout)
            due = start + timeout
            if due < self._deadline_at:
                (<object>self)._arm_deadline(due)
        else:
            entry = (waiter, 0.0, 0.0)
        if self._waiters:
            waiting = [wait for wait in self._waiters if not wait[0].done()]
        else:
            waiting = []
        waiting.append(entry)
        self._waiters = waiting
        return waiter

    def _has_news(self):
        return self.reader.complete or self._read_paused or self._lost or self._error is not None

    def _wake(self):
        waiters = self._waiters
        if waiters:
            for waiter, _start, _timeout in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = _NO_WAITERS
        on_data = self.on_data
        if on_data is not None:
            on_data()

    def _someone_waits(self):
        for waiter, _start, _timeout in self._waiters:
            if not waiter.done():
                return True
        return False
