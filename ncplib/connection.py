"""
NCP connection
==============

A :class:`Connection` is one side of an NCP connection, client or server. It sends packets,
hands out received fields, keeps the link alive and matches replies to requests.

Do not instantiate these classes directly: use :func:`ncplib.connect` for a client connection
and :func:`ncplib.start_server` for a server.

Spawn a concurrent task to handle a long-running command::

    async def handle_dspc_time(field):
        field.send(ACKN=1)
        await asyncio.sleep(10)  # Simulate a blocking task.
        field.send(TSDC=0, TIMM=1)

    async for field in connection:
        if field.packet_type == "DSPC" and field.name == "TIME":
            asyncio.create_task(handle_dspc_time(field))
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from ncplib._peer_warnings import warn_from_peer
from ncplib._protocol import NCPProtocol
from ncplib.errors import CommandError, CommandWarning, ConnectionClosed
from ncplib.packets import Packet, Param, encode_packet_buffers
from ncplib.protocol import (
    FILTERED_PARAMS,
    LOCAL_INFO,
    NOTICE_FIELDS,
    ClientHandshake,
    Link,
    filter_field,
    keepalive_packet,
    next_field_id,
)

__all__ = ["Connection", "Response", "Field"]

_UTC = timezone.utc
# recv lets the event loop run at least once every this many fields it returns.
_YIELD_EVERY = 64
# A received Field is made with dict.__new__ and filled by Field.__init__ called as a plain
# function (see Connection._recv_nowait): calling the class costs more than twice as much.
_dict_new = dict.__new__
_dict_init = dict.__init__


class Field(dict[str, Any]):
    """
    A NCP field received by a :class:`Connection`: a :class:`dict` of param names to values.

    Access the params by item access::

        print(field["FCTR"])

    .. attribute:: connection

        The :class:`Connection` that received this field.

    .. attribute:: packet_type

        The type of the NCP packet that contained this field, a valid identifier.

    .. attribute:: packet_id

        The id of the NCP packet that contained this field.

    .. attribute:: packet_timestamp

        A timezone-aware :class:`datetime.datetime` telling when the containing packet was sent.

    .. attribute:: name

        The name of the NCP field, a valid identifier.

    .. attribute:: id

        The unique :class:`int` id of this field.
    """

    __slots__ = ("connection", "id", "name", "packet_id", "packet_timestamp", "packet_type")

    connection: Connection
    packet_type: str
    packet_id: int
    packet_timestamp: datetime
    name: str
    id: int

    def __init__(
        self,
        connection: Connection,
        packet_type: str,
        packet_id: int,
        packet_timestamp: datetime,
        name: str,
        id: int,
        params: Iterable[tuple[str, Any]],
    ) -> None:
        _dict_init(self, params)
        self.connection = connection
        self.packet_type = packet_type
        self.packet_id = packet_id
        self.packet_timestamp = packet_timestamp
        self.name = name
        self.id = id

    def send(self, **params: Param) -> Response:
        """
        Sends a NCP packet containing a single field in reply to this field.

        The reply repeats this field's packet type, name and id.

        :param \\**params: Keyword arguments, one per NCP parameter. Each parameter name should be a
            valid identifier, and each parameter value one of the supported value types.
        :raises ValueError: if any of the parameter names were not a valid identifier, or any of
            the parameter values were invalid.
        :raises TypeError: if any of the parameter values were not one of the supported value types.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        return self.connection._send_packet(
            self.packet_type, [(self.name, self.id, params.items())], {(self.name, self.id)}
        )

    def __repr__(self) -> str:
        return f"<Field {self.packet_type!r} {self.name!r} {dict.__repr__(self)}>"


_field_init = Field.__init__


class _AsyncFields:
    """
    :meth:`recv`, and async iteration over it until the connection closes, for a
    :class:`Connection` (every field) and a :class:`Response` (the replies to one packet).
    """

    __slots__ = ()

    # The connection received from, and what a field must repeat to be returned (None: any).
    _connection: Connection
    _packet_type: str | None
    _expected_fields: set[tuple[str, int]] | None
    # The one (field name, field id) pair of a response the library made for one field, as
    # nearly always: matched without a tuple and a set lookup per field. None (and 0) otherwise.
    _expected_name: str | None
    _expected_id: int

    async def recv(self) -> Field:
        """
        Waits for the next :class:`Field`: for a :class:`Connection`, the next one it received;
        for a :class:`Response`, the next one received in reply to the sent packet, that is, one
        that repeats its packet type and one of its (field name, field id) pairs (other fields
        received meanwhile are dropped).

        :raises ncplib.ConnectionClosed: if the connection is closed (also after
            :meth:`Connection.close`).
        :raises ncplib.NetworkError: if the connection was lost.
        :raises ncplib.NetworkTimeoutError: if no complete packet (a keep-alive counts) arrived
            within the connection's timeout; a packet trickling in too slowly counts as none.
        :raises ncplib.DecodeError: if a malformed or oversized packet arrived; the connection is
            then closed.
        :raises ncplib.CommandError: on a client connection, for a field holding an ``ERRO`` or
            ``ERRC`` param (unless ``auto_erro`` was switched off in :func:`ncplib.connect`).
        :returns: The next :class:`Field` received.
        """
        # One loop, and no call of a step function per field: this is once per field for a task
        # waiting on each connection, and each Python call counts.
        connection = self._connection
        packet_type = self._packet_type
        expected = self._expected_fields
        expected_name = self._expected_name
        expected_id = self._expected_id
        recv_nowait = connection._recv_nowait
        while True:
            if connection._unyielded >= _YIELD_EVERY:
                # Fields already received are returned without suspending, but now and then the
                # event loop runs, so that a reader with a backlog cannot starve other
                # connections and timers (its own keep-alives included). Before taking a field:
                # a cancellation here loses nothing.
                connection._unyielded = 0
                await asyncio.sleep(0)
            field = recv_nowait()
            if field is None:
                connection._unyielded = 0
                await connection._protocol.wait_data(connection._link.timeout)
                continue
            connection._unyielded += 1
            if packet_type is None or (
                field.packet_type == packet_type
                and (
                    (field.id == expected_id and field.name == expected_name)
                    if expected_name is not None
                    else (field.name, field.id) in expected  # type: ignore[operator]
                )
            ):
                return field

    def __aiter__(self) -> _AsyncFields:
        return self

    async def __anext__(self) -> Field:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None


class Response(_AsyncFields):
    """
    A response to a NCP packet, returned by :meth:`Connection.send`, :meth:`Connection.send_packet`
    and :meth:`Field.send`.

    Gives access to the fields received in reply to the sent packet: those that repeat its packet
    type and one of its (field name, field id) pairs. Other fields received meanwhile are dropped.

    Responses can be used as async iterators to loop over each incoming :class:`Field`::

        async for field in response:
            pass

    The loop only ends when the underlying connection closes.
    """

    __slots__ = ("_connection", "_expected_fields", "_expected_id", "_expected_name", "_packet_type")

    _packet_type: str
    _expected_fields: set[tuple[str, int]]

    def __init__(
        self, connection: Connection, packet_type: str, expected_fields: set[tuple[str, int]]
    ) -> None:
        self._connection = connection
        self._packet_type = packet_type
        self._expected_fields = expected_fields
        # Matched with ``in`` (the caller's set may change, or define its own membership); a
        # response the library makes for one field is given its pair instead (_send_packet).
        self._expected_name = None
        self._expected_id = 0

    # (The same recv for both classes: see _AsyncFields.recv.)
    recv = _AsyncFields.recv

    async def recv_field(self, field_name: str) -> Field:
        """
        Waits for the next matching :class:`Field` received in reply to the sent packet.

        :param str field_name: The field name, a valid identifier.
        :raises ncplib.NCPError: if a field could not be retrieved from the connection.
        :returns: The next :class:`Field` received.
        """
        while True:
            field = await self.recv()
            if field.name == field_name:
                return field


class Connection(_AsyncFields):
    """
    A connection between a NCP client and a NCP server.

    Connections can be used as async iterators to loop over each incoming :class:`Field` (the
    loop ends when the connection closes)::

        async for field in connection:
            pass

    Connections can also be used as async context managers that close the connection on exit::

        async with connection:
            pass

    :param protocol: The protocol carrying the connection.
    :param logging.Logger logger: The logger for the connection's messages.
    :param str remote_hostname: The identifying hostname for the remote end.
    :param int timeout: Seconds of silence from the peer after which :meth:`recv` raises
        :exc:`ncplib.NetworkTimeoutError`; also bounds closing.
    :param bool auto_erro: Raise :exc:`ncplib.CommandError` for received fields with ``ERRO``.
    :param bool auto_warn: Issue :exc:`ncplib.CommandWarning` for received fields with ``WARN``.
    :param bool auto_ackn: Skip received fields with ``ACKN``.
    :param link: The connection's timing rules (:class:`ncplib.protocol.Link`), shared with the
        handshake that establishes them; a new one by default.
    :param handshake: A client's handshake (:class:`ncplib.protocol.ClientHandshake`), which
        keeps the node's ``HELO`` for :attr:`helo`.

    .. attribute:: logger

        The :class:`logging.Logger` used by this connection.

    .. attribute:: remote_hostname

        The identifying hostname for the remote end of the connection.
    """

    def __init__(
        self,
        protocol: NCPProtocol,
        *,
        logger: logging.Logger,
        remote_hostname: str,
        timeout: int,
        auto_erro: bool = False,
        auto_warn: bool = False,
        auto_ackn: bool = False,
        link: Link | None = None,
        handshake: ClientHandshake | None = None,
    ) -> None:
        # The attributes read for every field first (see NCPProtocol.__init__).
        self._closing = False
        # The fields of a packet of several not yet returned; None when there are none (most
        # packets hold one field, returned without this queue).
        self._backlog: deque[Field] | None = None
        self._protocol = protocol
        self.logger = logger
        self._filtered = auto_erro or auto_warn or auto_ackn
        # Fields returned since recv last let the event loop run (see recv).
        self._unyielded = 0
        self._loop = asyncio.get_running_loop()
        self._link = Link(timeout, self._loop.time()) if link is None else link
        self._link.on_established = self._start_keepalive
        self.remote_hostname = remote_hostname
        self._handshake = handshake
        # What recv (see _AsyncFields) receives from, and matches: everything.
        self._connection = self
        self._packet_type = None
        self._expected_fields = None
        self._expected_name = None
        self._expected_id = 0
        self._auto_erro = auto_erro
        self._auto_warn = auto_warn
        self._auto_ackn = auto_ackn
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._disconnect_logged = False
        protocol.on_lost = self._on_lost

    @property
    def _timeout(self) -> int:
        # The seconds of silence after which recv times out, as the handshake settled them.
        return self._link.timeout

    @property
    def transport(self) -> asyncio.WriteTransport:
        """The :class:`asyncio.WriteTransport` used by this connection."""
        transport = self._protocol.transport
        assert transport is not None
        return transport

    @property
    def helo(self) -> dict[str, Any] | None:
        """
        The params of the ``HELO`` field the server sent in the handshake, a :class:`dict` of
        param names to values: on a real node, ``NCPV`` (firmware version), ``SEID`` (serial
        number) and ``MACA`` (MAC address), for instance. :data:`None` on a server's connection,
        and before the handshake.

        Read-only; an addition to 6.1.0's API, which discards the ``HELO``.
        """
        return None if self._handshake is None else self._handshake.helo

    # Receiving.

    recv = _AsyncFields.recv

    def _recv_nowait(self) -> Field | None:
        """
        Returns the next field already received, or :data:`None` when none is complete yet.

        The same fields, filters and exceptions as :meth:`recv` (but no timeout: the caller
        enforces it, e.g. from the protocol's ``last_received``). Never blocks, awaits or arms a
        timer. Returning :data:`None` means the caller has caught up: reading paused for flow
        control resumes.
        """
        while True:
            if self._closing:
                raise ConnectionClosed("Connection closed")
            backlog = self._backlog
            if backlog is not None:
                field = backlog.popleft()
                if not backlog:
                    self._backlog = None
            else:
                packet = self._protocol.next_packet()
                if packet is None:
                    return None
                packet_type, packet_id, timestamp, _info, packet_fields = packet
                debug = self.logger.isEnabledFor(logging.DEBUG)
                if debug:
                    self.logger.debug(
                        "Received packet %s from %s over NCP", packet_type, self.remote_hostname
                    )
                if len(packet_fields) != 1:
                    # Several fields (or none): queued, and handed out in order by the loop.
                    self._queue_fields(packet, debug=debug)
                    continue
                # One field, the common case: straight out, not through the queue.
                ((name, field_id, params),) = packet_fields
                if debug:
                    self._log_field(packet_type, name)
                field = _dict_new(Field)
                _field_init(field, self, packet_type, packet_id, timestamp, name, field_id, params)
            if (
                self._filtered
                and (not FILTERED_PARAMS.isdisjoint(field) or field.name in NOTICE_FIELDS)
                and self._skip(field)
            ):
                continue
            return field

    def _queue_fields(self, packet: Packet, *, debug: bool = False) -> None:
        # The fields of a packet of several (or none), queued to be handed out in order.
        packet_type, packet_id, timestamp, _info, packet_fields = packet
        backlog: deque[Field] = deque()
        for name, field_id, params in packet_fields:
            if debug:
                self._log_field(packet_type, name)
            field = _dict_new(Field)
            _field_init(field, self, packet_type, packet_id, timestamp, name, field_id, params)
            backlog.append(field)
        if backlog:
            self._backlog = backlog

    def _caught_up(self) -> bool:
        """
        Whether :meth:`_recv_nowait` would now return :data:`None` with nothing to do: no field
        queued, no packet complete, no end or error to report, reading not paused.

        For a consumer that polls (see ``NCPProtocol.on_data``): after taking a field, a cheap
        test instead of a call that finds nothing. The protocol calls ``on_data`` when that
        changes. :data:`False` means only "call :meth:`_recv_nowait` again".
        """
        return self._backlog is None and not self._protocol._has_news()

    def _log_field(self, packet_type: str, name: str) -> None:
        self.logger.debug("Received field %s %s from %s over NCP", packet_type, name, self.remote_hostname)

    def _skip(self, field: Field) -> bool:
        # The client-side filters (see ncplib.protocol.filter_field), for a field that the caller
        # found holding a notice or an ACKN: True to drop the field.
        deliver, error, warning = filter_field(
            field.name, field, auto_erro=self._auto_erro, auto_warn=self._auto_warn, auto_ackn=self._auto_ackn
        )
        if error is not None:
            raise CommandError(field, *error)
        if warning is not None:
            # Pointing at the line that awaited recv (through _recv_nowait and recv).
            warn_from_peer(CommandWarning(field, *warning), stacklevel=4)
        return not deliver

    async def recv_field(self, packet_type: str, field_name: str) -> Field:
        """
        Waits for the next matching :class:`Field` received by the connection; others are dropped.

        :param str packet_type: The packet type, a valid identifier.
        :param str field_name: The field name, a valid identifier.
        :raises ncplib.NCPError: if a field could not be retrieved from the connection (see
            :meth:`recv`).
        :returns: The next matching :class:`Field` received.
        """
        while True:
            field = await self.recv()
            if field.packet_type == packet_type and field.name == field_name:
                return field

    # Sending.

    def _send_packet(
        self,
        packet_type: str,
        fields: Sequence[tuple[str, int, Iterable[tuple[str, Any]]]],
        expected: set[tuple[str, int]],
    ) -> Response:
        buffers = encode_packet_buffers(packet_type, 1, datetime.now(_UTC), LOCAL_INFO, fields)
        if self._closing or not self._protocol.write_buffers(buffers):
            self.logger.debug(
                "Dropped packet %s to %s: connection closing", packet_type, self.remote_hostname
            )
        else:
            self._link.sent(self._loop.time())
            if self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("Sent packet %s to %s over NCP", packet_type, self.remote_hostname)
                for name, _, _ in fields:
                    self.logger.debug(
                        "Sent field %s %s to %s over NCP", packet_type, name, self.remote_hostname
                    )
        response = Response(self, packet_type, expected)
        if len(fields) == 1:
            # The one (field name, field id) pair: matched without a lookup in the set.
            name, field_id, _ = fields[0]
            response._expected_name = name
            response._expected_id = field_id
        return response

    def send_packet(self, packet_type: str, **fields: Mapping[str, Param]) -> Response:
        """
        Sends a NCP packet containing multiple NCP fields.

        Prefer :meth:`send` unless you need several fields in one packet.

        :param str packet_type: The packet type, a valid identifier.
        :param \\**fields: Keyword arguments, one per field: the field name mapped to a :class:`dict`
            of parameter names and values.
        :raises ValueError: if any of the packet, field or parameter names were not a valid
            identifier, or any of the parameter values were invalid.
        :raises TypeError: if any of the parameter values were not one of the supported value types.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        encoded = [(name, next_field_id(), params.items()) for name, params in fields.items()]
        return self._send_packet(packet_type, encoded, {(name, field_id) for name, field_id, _ in encoded})

    def send(self, packet_type: str, field_name: str, **params: Param) -> Response:
        """
        Sends a NCP packet containing a single NCP field.

        This is a plain method: the packet is queued on the transport at once. Await
        :meth:`drain` to respect the peer's reading speed when sending a lot.

        :param str packet_type: The packet type, a valid identifier.
        :param str field_name: The field name, a valid identifier.
        :param \\**params: Keyword arguments, one per NCP parameter. Each parameter name should be a
            valid identifier, and each parameter value one of the supported value types.
        :raises ValueError: if any of the packet, field or parameter names were not a valid
            identifier, or any of the parameter values were invalid.
        :raises TypeError: if any of the parameter values were not one of the supported value types.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        field_id = next_field_id()
        return self._send_packet(
            packet_type, [(field_name, field_id, params.items())], {(field_name, field_id)}
        )

    async def drain(self) -> None:
        """
        Waits until the transport's write buffer is below its high-water mark.

        Use it after :meth:`send` in a loop that sends a lot, so memory stays bounded when the
        peer reads slowly. Returns at once when the buffer is not full.

        While it waits, the write buffer must shrink at least once per the connection's timeout:
        a peer that takes nothing for that long (gone without closing, or stuck) fails the
        connection with :exc:`ncplib.NetworkTimeoutError`, and the connection is then closed
        (aborted, since what the peer received of the packets sent is unknown); later calls of
        :meth:`recv`, :meth:`drain` and so on raise the same error.

        :raises ncplib.NetworkTimeoutError: if the peer took nothing sent for the connection's
            timeout while this waited; the connection is then closed.
        :raises ncplib.ConnectionClosed: if the connection is closed.
        :raises ncplib.NetworkError: if the connection was lost.
        :raises ncplib.DecodeError: if the connection was closed because of a malformed packet.
        """
        if self._closing:
            raise ConnectionClosed("Connection closed")
        await self._protocol.drain(self._timeout)

    # Keep-alive: the decisions are the link's (ncplib.protocol.Link), the timer is ours.

    def _start_keepalive(self) -> None:
        """Arms the keep-alive timer once the handshake has established the link."""
        self._stop_keepalive()
        if not self.is_closing():
            self._on_keepalive()

    def _on_keepalive(self) -> None:
        self._keepalive_handle = None
        if self.is_closing():
            return
        link = self._link
        now = self._loop.time()
        if link.keepalive_due(now):
            self._protocol.write_buffers([keepalive_packet(datetime.now(_UTC), LOCAL_INFO)])
            link.keepalive_sent(now)
        due = link.next_timer()
        if due is not None:
            self._keepalive_handle = self._loop.call_at(due, self._on_keepalive)

    def _stop_keepalive(self) -> None:
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None

    # Closing.

    def _on_lost(self) -> None:
        self._stop_keepalive()
        if not self._disconnect_logged:
            self._disconnect_logged = True
            self.logger.info("Disconnected from %s over NCP", self.remote_hostname)

    def is_closing(self) -> bool:
        """
        Returns :data:`True` if the connection is closing (or closed).

        A closing connection should not be written to: packets sent to it are dropped.
        """
        return self._closing or self._protocol.is_closing()

    def close(self) -> None:
        """
        Closes the connection. Packets already sent are flushed first.

        Using the connection as an async context manager closes it on exit.
        """
        if not self._closing:
            self._closing = True
            self._stop_keepalive()
            self._protocol.close()

    async def wait_closed(self) -> None:
        """
        Waits for the connection to finish closing, at most the connection's timeout (then the
        transport is aborted).

        Using the connection as an async context manager waits on exit.
        """
        await self._protocol.wait_closed(self._link.timeout)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()
