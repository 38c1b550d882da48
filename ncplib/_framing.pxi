# The compiled packet reader, included by _codec.pyx (it decodes with _decode, in place).
#
# It behaves as the pure-Python ncplib.framing.PacketReader, which is its specification (the
# documentation and the reasons for each step are there): the same buffers, pool, growth,
# checks, errors and messages. ncplib.framing uses this class when the compiled codec is active.
#
# Memory safety: every position kept (_start <= _next_header <= _end <= len(_buf)) is checked
# before the buffer is read through a C pointer, and buffer_updated refuses a count larger than
# the room get_buffer offered.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from collections import deque as _deque

cdef extern from "Python.h":
    PyObject* PyMemoryView_GET_BASE(object view)

# Sizes, as ncplib.framing defines them (set by _configure_reader when it imports this).
cdef Py_ssize_t _own_buffer_size = 64 * 1024
cdef Py_ssize_t _shared_buffer_size = 16 * 1024
cdef Py_ssize_t _max_read_size = 256 * 1024
cdef Py_ssize_t _pool_size = 512
cdef Py_ssize_t _own_buffer_start = 1024 * 1024
# Pooled shared buffers, each as a memoryview of the whole bytearray: a reader that starts a read
# at the beginning of its buffer (nearly every read, in the fleet shape) hands out that view
# itself, with no new object per read.
cdef list _reader_pool = []
cdef bytearray _NO_BUFFER = bytearray()
cdef object _new_deque = _deque


def _configure_reader(own_buffer_size, shared_buffer_size, max_read_size, pool_size, own_buffer_start):
    """Takes the reader's buffer sizes from ncplib.framing (their one definition)."""
    global _own_buffer_size, _shared_buffer_size, _max_read_size, _pool_size, _own_buffer_start
    _own_buffer_size = own_buffer_size
    _shared_buffer_size = shared_buffer_size
    _max_read_size = max_read_size
    _pool_size = pool_size
    _own_buffer_start = own_buffer_start
    del _reader_pool[:]


cdef class _PacketReader:
    """Splits received bytes into NCP packets and decodes them: ncplib.framing.PacketReader, compiled."""

    cdef readonly bytearray _buf
    cdef object _view  # memoryview of all of _buf, or None
    cdef Py_ssize_t _start, _end, _next_header, _read_size, _own_filled, _own_size, _ready_bytes
    cdef bytearray _own_buf
    cdef object _pending
    cdef object _error
    cdef object _ready_queue  # deque of own buffers received whole, made at the first
    cdef Py_ssize_t _ready_count
    cdef readonly bint complete
    cdef public Py_ssize_t max_packet_size
    cdef public bint use_numpy

    def __init__(self, *, max_packet_size=64 * 1024 * 1024, use_numpy=False):
        if max_packet_size < MIN_PACKET_SIZE:
            raise ValueError(w.MSG_MAX_PACKET_SIZE_TOO_SMALL.format(minimum=MIN_PACKET_SIZE))
        if use_numpy:
            _numpy_module()
        self.max_packet_size = max_packet_size
        self.use_numpy = bool(use_numpy)
        self._buf = _NO_BUFFER
        self._read_size = _shared_buffer_size
        self._start = self._end = self._next_header = 0
        self._own_buf = None
        self._own_filled = self._own_size = 0
        self._pending = None
        self._ready_queue = None
        self._ready_count = 0
        self._view = None
        self._ready_bytes = 0
        self._error = None
        self.complete = False

    @property
    def _ready(self):
        return () if self._ready_queue is None else self._ready_queue

    @property
    def _own(self):
        return self._own_buf

    @property
    def bytes_needed(self):
        """How many more bytes complete the next packet, or its header; at least 1."""
        cdef Py_ssize_t available
        if self._own_buf is not None:
            return self._own_size - self._own_filled
        available = self._end - self._start
        if available < HEADER_SIZE:
            return HEADER_SIZE - available
        return max(self._packet_size(self._start) - available, 1)

    @property
    def buffered(self):
        """How many received bytes are held, in complete packets not yet read or in part of one."""
        return self._buffered()

    cdef inline Py_ssize_t _buffered(self):
        cdef Py_ssize_t held = self._end - self._start + self._ready_bytes
        if self._own_buf is not None:
            held += self._own_filled
        return held

    cpdef get_buffer(self, sizehint=-1):
        """Returns writable memory to receive the next bytes into."""
        cdef bytearray buf
        cdef Py_ssize_t size
        if self._error is not None:
            raise self._error
        if self._own_buf is not None:
            if self._own_filled == PyByteArray_GET_SIZE(self._own_buf):
                self._grow_own()
            return memoryview(self._own_buf)[self._own_filled:]
        if self._start == self._end:
            self._start = self._end = self._next_header = 0
            size = self._read_size
            if PyByteArray_GET_SIZE(self._buf) != size:
                if size > _shared_buffer_size:
                    self._set_buffer(bytearray(size))
                else:
                    view = _reader_pool.pop() if _reader_pool else None
                    if view is None or len(view) != _shared_buffer_size:
                        self._set_buffer(bytearray(_shared_buffer_size))
                    else:
                        self._buf = <bytearray><object>PyMemoryView_GET_BASE(view)
                        self._view = view
                    self._read_size = _shared_buffer_size
            if self._view is not None:
                return self._view
        elif (PyByteArray_GET_SIZE(self._buf) - self._end < 4096
              or self._end > PyByteArray_GET_SIZE(self._buf) // 2):
            self._compact()
            if PyByteArray_GET_SIZE(self._buf) - self._end < 4096:
                buf = bytearray(2 * PyByteArray_GET_SIZE(self._buf))
                memcpy(PyByteArray_AS_STRING(buf), PyByteArray_AS_STRING(self._buf), self._end)
                self._set_buffer(buf)
        return self._view[self._end:]

    cpdef buffer_updated(self, Py_ssize_t nbytes):
        """Records that ``nbytes`` bytes were written into the memory from get_buffer; True if complete."""
        cdef Py_ssize_t end
        if self._error is not None:
            raise self._error
        if self._own_buf is not None:
            if nbytes < 0 or nbytes > PyByteArray_GET_SIZE(self._own_buf) - self._own_filled:
                raise ValueError(w.MSG_READER_OVERRUN.format(
                    nbytes=nbytes, room=PyByteArray_GET_SIZE(self._own_buf) - self._own_filled
                ))
            self._own_filled += nbytes
            if self._own_filled >= self._own_size:
                if self._ready_queue is None:
                    self._ready_queue = _new_deque()
                self._ready_queue.append(self._own_buf)
                self._ready_count += 1
                self._ready_bytes += PyByteArray_GET_SIZE(self._own_buf)
                self._own_buf = None
                self._own_filled = 0
                self.complete = True
            return self.complete
        if nbytes < 0 or nbytes > PyByteArray_GET_SIZE(self._buf) - self._end:
            raise ValueError(w.MSG_READER_OVERRUN.format(
                nbytes=nbytes, room=PyByteArray_GET_SIZE(self._buf) - self._end
            ))
        if self._pending is None:
            end = self._end + nbytes
            if end == PyByteArray_GET_SIZE(self._buf):
                if self._read_size < _max_read_size:
                    self._read_size *= 2
            elif nbytes < self._read_size // 8 and self._read_size > _shared_buffer_size:
                self._read_size //= 2
            self._end = end
            self._check_headers()
        self.complete = (
            self._next_header > self._start or self._pending is not None or self._ready_count > 0
        )
        return self.complete

    def feed(self, data):
        """Adds received bytes (a copy)."""
        cdef Py_ssize_t n
        view = memoryview(data).cast("B")
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def read_packets(self):
        """Decodes and returns every packet completed so far, oldest first."""
        return list(self)

    def __iter__(self):
        while True:
            packet = self.next_packet()
            if packet is None:
                return
            yield packet

    cpdef next_packet(self):
        """Decodes and returns the next complete packet, or None if none is complete yet."""
        cdef bytearray own
        cdef Py_ssize_t start
        if self._error is not None:
            raise self._error
        try:
            if self._ready_count:
                own = self._ready_queue.popleft()
                self._ready_count -= 1
                self._ready_bytes -= PyByteArray_GET_SIZE(own)
                self.complete = (
                    self._ready_count > 0 or self._next_header > self._start or self._pending is not None
                )
                return _decode_own(own, self.use_numpy)
            start = self._start
            if start < self._next_header:
                return self._take_shared_packet(start)
            if self._pending is not None and start == self._end:
                raise self._pending
            self.complete = False
            return None
        except _DecodeError as ex:
            self._error = ex
            self.complete = True
            raise

    cdef object _take_shared_packet(self, Py_ssize_t start):
        cdef bytearray buf = self._buf
        cdef const unsigned char* p = <const unsigned char*>PyByteArray_AS_STRING(buf)
        cdef Py_ssize_t size = self._packet_size(start)
        cdef Py_ssize_t end = start + size
        self._start = end
        if self.use_numpy:
            # A copy of its own (bytes: numpy views of it are read-only), as the buffer is reused.
            copy = PyBytes_FromStringAndSize(<const char*>p + start, size)
            packet = _decode(<const unsigned char*>PyBytes_AS_STRING(copy), size, copy, True)
        else:
            packet = _decode(p + start, size, None, False)
        if end == self._end and self._pending is None:
            self.complete = False
            self._release_shared()
        else:
            self.complete = end < self._next_header or self._pending is not None
        return packet

    cdef int _release_shared(self) except -1:
        view = self._view
        self._start = self._end = self._next_header = 0
        self._buf = _NO_BUFFER
        self._view = None
        if (view is not None and len(view) == _shared_buffer_size
                and len(_reader_pool) < _pool_size):
            _reader_pool.append(view)
        return 0

    cdef int _set_buffer(self, bytearray buf) except -1:
        # A new shared buffer (the caller copies what it held).
        self._buf = buf
        self._view = memoryview(buf)
        return 0

    cdef inline Py_ssize_t _packet_size(self, Py_ssize_t start):
        return <Py_ssize_t>_le32(<const unsigned char*>PyByteArray_AS_STRING(self._buf) + start + 8) * 4

    cdef void _compact(self):
        cdef Py_ssize_t size = self._end - self._start
        cdef char* p = PyByteArray_AS_STRING(self._buf)
        memmove(p, p + self._start, size)
        self._next_header = max(self._next_header - self._start, 0)
        self._start = 0
        self._end = size

    cdef int _check_headers(self) except -1:
        cdef Py_ssize_t start = self._start
        cdef Py_ssize_t pos = max(self._next_header, start)
        cdef Py_ssize_t end = self._end
        cdef const unsigned char* p = <const unsigned char*>PyByteArray_AS_STRING(self._buf)
        cdef Py_ssize_t size
        cdef bint magic_ok
        while end - pos >= HEADER_SIZE:
            magic_ok = _le32(p + pos) == HEADER_MAGIC_WORD
            size = <Py_ssize_t>_le32(p + pos + 8) * 4
            if not magic_ok or size < MIN_PACKET_SIZE or size > self.max_packet_size:
                problem = self._header_problem(pos, magic_ok, size)
                if pos == start:
                    self._error = _DecodeError(problem)
                    self.complete = True
                    raise self._error
                self._pending = _DecodeError(problem)
                self._end = pos
                break
            if end - pos < size:
                if pos == start and size >= _own_buffer_size:
                    self._move_to_own(size)
                    return 0
                break
            pos += size
        self._next_header = pos
        return 0

    cdef str _header_problem(self, Py_ssize_t pos, bint magic_ok, Py_ssize_t size):
        cdef Py_ssize_t head_end
        if not magic_ok:
            head_end = min(self._end, pos + <Py_ssize_t>w.NOT_NCP_HEAD_SIZE + 1)
            head = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self._buf) + pos, head_end - pos)
            return w.bad_magic_message(head, "the peer sent")
        if size < MIN_PACKET_SIZE:
            return w.MSG_HEADER_BELOW_MINIMUM.format(size=size)
        return w.MSG_HEADER_ABOVE_MAXIMUM.format(size=size, maximum=self.max_packet_size)

    cdef void _move_to_own(self, Py_ssize_t size):
        cdef Py_ssize_t available = self._end - self._start
        cdef Py_ssize_t start_size = max(_own_buffer_start, 2 * available)
        cdef bytearray own = bytearray(size if 2 * start_size > size else start_size)
        memcpy(PyByteArray_AS_STRING(own), PyByteArray_AS_STRING(self._buf) + self._start, available)
        self._own_buf = own
        self._own_filled = available
        self._own_size = size
        self._release_shared()
        self._read_size = _shared_buffer_size

    cdef void _grow_own(self):
        cdef bytearray own = self._own_buf
        cdef Py_ssize_t size = self._own_size
        cdef bytearray grown = bytearray(
            size if 4 * PyByteArray_GET_SIZE(own) > size else 2 * PyByteArray_GET_SIZE(own)
        )
        memcpy(PyByteArray_AS_STRING(grown), PyByteArray_AS_STRING(own), self._own_filled)
        self._own_buf = grown


cdef object _decode_own(bytearray own, bint use_numpy):
    # A large packet received in a buffer of its own: decoded in place (numpy arrays view it).
    cdef const unsigned char* p = <const unsigned char*>PyByteArray_AS_STRING(own)
    if use_numpy:
        return _decode(p, PyByteArray_GET_SIZE(own), own, True)
    return _decode(p, PyByteArray_GET_SIZE(own), None, False)
