# The compiled tap of ncplib.fleet, included by _codec.pyx.
#
# It behaves as the pure-Python ncplib.fleet._tap.Tap, which is its specification (the reasons
# for each step are there). What it adds: the common packet (one field, nothing for the
# connection's filters to look at, debug logging off) is taken here, its Field built in C,
# without the calls of Fleet._take and Connection._recv_nowait; every other case goes to
# Fleet._take, before anything of it is taken here.

from ncplib.errors import CommandError, CommandWarning

cdef extern from "Python.h":
    int PyDict_MergeFromSeq2(object a, object seq2, int override) except -1
    int PyDict_Next(object p, Py_ssize_t* ppos, PyObject** pkey, PyObject** pvalue)
    int PySet_Contains(object anyset, object key) except -1

# As ncplib.fleet._tap defines them (set by _configure_tap when it imports this).
cdef object _Field = None
cdef frozenset _FILTERED_PARAMS = frozenset()
cdef object _NOTICE_FIELDS = frozenset()
cdef Py_ssize_t _TURN = 16
cdef Py_ssize_t _BATCH = 256
cdef object _dict_new = dict.__new__
# logging.DEBUG
cdef int _DEBUG = 10


def _configure_tap(field_type, filtered_params, notice_fields, turn, batch):
    """Takes the Field type and the fleet's constants from ncplib.fleet._tap."""
    global _Field, _FILTERED_PARAMS, _NOTICE_FIELDS, _TURN, _BATCH
    _Field = field_type
    _FILTERED_PARAMS = filtered_params
    _NOTICE_FIELDS = notice_fields
    _TURN = turn
    _BATCH = batch


cdef inline bint _holds_filtered(object field) except -1:
    # not FILTERED_PARAMS.isdisjoint(field), without an iterator object: a field has few params.
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    while PyDict_Next(field, &pos, &key, &value):
        if PySet_Contains(_FILTERED_PARAMS, <object>key):
            return True
    return False


@cython.final
cdef class _Tap:
    """The on_data callback of one node of a Fleet: ncplib.fleet._tap.Tap, compiled."""

    cdef readonly object fleet
    cdef readonly object node
    cdef readonly object batch
    cdef readonly object ready

    def __init__(self, fleet, node, batch, ready):
        self.fleet = fleet
        self.node = node
        self.batch = batch
        self.ready = ready

    def __call__(self):
        node = self.node
        if node._queued:
            return
        waiter = self.fleet._waiter
        if waiter is not None and len(self.batch) < _BATCH:
            connection = node._connection
            if connection is not None and self._take(connection):
                node._idle_since = connection._protocol.last_received
                if not waiter.done():
                    waiter.set_result(None)
                return
        node._queued = True
        self.ready.append(node)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    cdef bint _take(self, connection) except -1:
        # Fleet._take(node, connection, batch, TURN), with Connection._recv_nowait, for the
        # common packet.
        cdef Py_ssize_t taken = 0
        cdef _ReceiveCore core
        protocol = connection._protocol
        if not isinstance(protocol, _ReceiveCore):
            return self.fleet._take(self.node, connection, self.batch, _TURN)
        core = <_ReceiveCore>protocol
        while taken < _TURN:
            if (
                connection._closing
                or connection._backlog is not None
                or connection.logger.isEnabledFor(_DEBUG)
            ):
                return self.fleet._take(self.node, connection, self.batch, _TURN - taken)
            try:
                packet = core._next_packet()
            except Exception as ex:
                # The connection ended after every field received before the end was taken.
                self.fleet._end(self.node, ex)
                return True
            if packet is None:
                return True
            packet_fields = (<tuple>packet)[4]
            if len(<list>packet_fields) != 1:
                # Several fields (or none): queued in the connection, taken by the fleet.
                connection._queue_fields(packet)
                return self.fleet._take(self.node, connection, self.batch, _TURN - taken)
            name, field_id, params = (<list>packet_fields)[0]
            field = _dict_new(_Field)
            PyDict_MergeFromSeq2(field, params, 1)
            field.connection = connection
            field.packet_type = (<tuple>packet)[0]
            field.packet_id = (<tuple>packet)[1]
            field.packet_timestamp = (<tuple>packet)[2]
            field.name = name
            field.id = field_id
            if connection._filtered and (_holds_filtered(field) or name in _NOTICE_FIELDS):
                try:
                    if connection._skip(field):
                        continue
                except (CommandError, CommandWarning) as ex:
                    taken += 1
                    self.fleet._command_error(self.node, ex)
                    continue
            self.batch.append((self.node, field))
            taken += 1
            # Caught up (Connection._caught_up: no backlog, nothing new in the protocol)?
            if not core._news():
                return True
        return False
