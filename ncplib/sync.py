"""
Blocking NCP client
===================

:func:`connect` returns a :class:`Connection` whose methods block instead of being awaited: for
scripts, Jupyter notebooks, GUIs and test rigs with no asyncio of their own. It uses a plain
socket and one background thread of its own (for keep-alives), never an event loop, so it also
works where one is already running (a notebook cell, an asyncio program)::

    import ncplib.sync

    with ncplib.sync.connect("127.0.0.1", 9999, timeout=60) as connection:
        response = connection.send("DSPC", "SWEP", FSTA=400, FSTP=500)
        field = response.recv(timeout=5)
        print(field["PDAT"][: field["NBIN"]])

The API is that of :class:`ncplib.Connection`, :class:`ncplib.Response` and
:class:`ncplib.Field` minus ``async``: the same methods, arguments, errors and warnings, with a
``timeout`` (seconds) added to the receiving calls. The connection rules are those of the
asyncio client, from the same sans-IO core (:mod:`ncplib.protocol`).

Threads: :meth:`Connection.send` (and :meth:`Field.send`) may be called from several threads at
once; each packet is written whole. Receiving calls may be made from several threads too; they
take turns. Keep-alives go out from the background thread while the program does not read, so
a node does not drop a connection the program is merely not reading from. Received bytes are
read only when the program asks for a field: memory per connection stays bounded by one read
and one packet (the kernel's socket buffer holds the rest and slows the sender down).
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl as _ssl
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from ncplib._peer_warnings import warn_from_peer
from ncplib.errors import CommandError, CommandWarning, ConnectionClosed, NetworkError, NetworkTimeoutError
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE
from ncplib.packets import Param
from ncplib.protocol import (
    ClientHandshake,
    ClientProtocol,
    CommandErrorReceived,
    CommandWarningReceived,
    ConnectionEnded,
    FieldReceived,
    HandshakeComplete,
    Protocol,
    Request,
    client_endpoint,
    client_identity,
    coalesce,
)

__all__ = ["connect", "Connection", "Response", "Field"]

logger = logging.getLogger(__name__)

# How long close() waits for a thread blocked in the socket to let go, in seconds.
_CLOSE_WAIT = 5.0


class Field(dict[str, Any]):
    """
    A NCP field received by a :class:`Connection`: a :class:`dict` of param names to values,
    as :class:`ncplib.Field`.

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

    def __init__(self, connection: Connection, event: FieldReceived) -> None:
        super().__init__(event.params)
        self.connection = connection
        self.packet_type = event.packet_type
        self.packet_id = event.packet_id
        self.packet_timestamp = event.packet_timestamp
        self.name = event.name
        self.id = event.id

    def send(self, **params: Param) -> Response:
        """
        Sends a NCP packet containing a single field in reply to this field (repeating its
        packet type, name and id). Blocks until the packet is written.

        :raises ValueError: if a parameter name is not a valid identifier or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :raises ncplib.NetworkError: if the connection broke while writing.
        :raises ncplib.NetworkTimeoutError: if the peer took nothing for the connection's timeout.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        return self.connection._send_fields(self.packet_type, [(self.name, self.id, params.items())])

    def __repr__(self) -> str:
        return f"<Field {self.packet_type!r} {self.name!r} {dict.__repr__(self)}>"


class _Fields:
    """Iteration over ``recv()`` until the connection closes."""

    __slots__ = ()

    def recv(self, timeout: float | None = None) -> Field:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Field]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    return time.monotonic() + timeout


class Response(_Fields):
    """
    A response to a NCP packet, returned by :meth:`Connection.send`, :meth:`Connection.send_packet`
    and :meth:`Field.send`: the fields that repeat its packet type and one of its (field name,
    field id) pairs. Other fields received meanwhile are dropped.

    Iterating over it yields each reply until the connection closes::

        for field in response:
            ...
    """

    __slots__ = ("_connection", "_request")

    def __init__(self, connection: Connection, request: Request) -> None:
        self._connection = connection
        self._request = request

    def recv(self, timeout: float | None = None) -> Field:
        """
        Waits for the next :class:`Field` received in reply to the sent packet.

        :param timeout: The most seconds to wait (:data:`None`: the connection's timeout alone).
        :raises ncplib.NetworkTimeoutError: if no reply arrived within ``timeout`` seconds.
        :raises ncplib.NCPError: as :meth:`Connection.recv`.
        :returns: The next :class:`Field` received.
        """
        deadline = _deadline(timeout)
        matches = self._request.matches
        while True:
            field = self._connection._recv(deadline, timeout)
            if matches(field.packet_type, field.name, field.id):
                return field

    def recv_field(self, field_name: str, timeout: float | None = None) -> Field:
        """
        Waits for the next reply :class:`Field` named ``field_name``.

        :param str field_name: The field name, a valid identifier.
        :param timeout: The most seconds to wait (:data:`None`: the connection's timeout alone).
        :raises ncplib.NCPError: as :meth:`recv`.
        :returns: The next matching :class:`Field` received.
        """
        deadline = _deadline(timeout)
        matches = self._request.matches
        while True:
            field = self._connection._recv(deadline, timeout)
            if field.name == field_name and matches(field.packet_type, field.name, field.id):
                return field


class Connection(_Fields):
    """
    A blocking connection to a NCP server; use :func:`connect` to make one.

    Iterating over it yields each incoming :class:`Field` until the connection closes; as a
    context manager it closes the connection on exit.

    .. attribute:: logger

        The :class:`logging.Logger` used by this connection.

    .. attribute:: remote_hostname

        The identifying hostname for the remote end of the connection.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        logger: logging.Logger,
        remote_hostname: str,
    ) -> None:
        self.logger = logger
        self.remote_hostname = remote_hostname
        self._socket = sock
        self._protocol = protocol
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._recv_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closing = False
        self._closed = False
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def helo(self) -> dict[str, Any] | None:
        """
        The params of the ``HELO`` field the server sent in the handshake, as
        :attr:`ncplib.Connection.helo`: on a real node ``NCPV``, ``SEID`` and ``MACA``.
        """
        handshake = getattr(self._protocol, "handshake", None)
        return handshake.helo if isinstance(handshake, ClientHandshake) else None

    @property
    def socket(self) -> socket.socket:
        """The :class:`socket.socket` (or :class:`ssl.SSLSocket`) under the connection."""
        return self._socket

    # Receiving.

    def recv(self, timeout: float | None = None) -> Field:
        """
        Waits for the next :class:`Field` received by the connection.

        :param timeout: The most seconds to wait. :data:`None`: as long as the peer keeps the
            link alive (a packet, a keep-alive included, within the connection's timeout).
        :raises ncplib.ConnectionClosed: if the connection is closed (also after :meth:`close`).
        :raises ncplib.NetworkError: if the connection was lost.
        :raises ncplib.NetworkTimeoutError: if no field arrived within ``timeout`` seconds, or no
            complete packet within the connection's timeout. The connection stays usable.
        :raises ncplib.DecodeError: if a malformed or oversized packet arrived; the connection
            then ends.
        :raises ncplib.CommandError: for a field holding an ``ERRO`` or ``ERRC`` param (unless
            ``auto_erro`` was switched off in :func:`connect`).
        :returns: The next :class:`Field` received.
        """
        return self._recv(_deadline(timeout), timeout)

    def recv_field(self, packet_type: str, field_name: str, timeout: float | None = None) -> Field:
        """
        Waits for the next :class:`Field` with this packet type and name; others are dropped.

        :param str packet_type: The packet type, a valid identifier.
        :param str field_name: The field name, a valid identifier.
        :param timeout: The most seconds to wait, as in :meth:`recv`.
        :raises ncplib.NCPError: as :meth:`recv`.
        :returns: The next matching :class:`Field` received.
        """
        deadline = _deadline(timeout)
        while True:
            field = self._recv(deadline, timeout)
            if field.packet_type == packet_type and field.name == field_name:
                return field

    def _recv(self, deadline: float | None, timeout: float | None) -> Field:
        protocol = self._protocol
        if not self._recv_lock.acquire(
            timeout=-1 if deadline is None else max(deadline - time.monotonic(), 0)
        ):
            raise NetworkTimeoutError(f"No field received within {timeout:g} seconds")
        try:
            since = time.monotonic()
            while True:
                if self._closing:
                    raise ConnectionClosed("Connection closed")
                if protocol.error is not None:
                    raise protocol.error
                event = protocol.next_event()
                if event is None:
                    self._receive(since, deadline, timeout)
                elif isinstance(event, FieldReceived):
                    return self._field(event)
                else:
                    self._notice(event)
        finally:
            self._recv_lock.release()

    def _field(self, event: FieldReceived) -> Field:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "Received field %s %s from %s over NCP", event.packet_type, event.name, self.remote_hostname
            )
        return Field(self, event)

    def _notice(self, event: object) -> None:
        """Acts on an event that is not a field: raises or warns as the asyncio client does."""
        if isinstance(event, CommandErrorReceived):
            raise CommandError(Field(self, event.field), event.detail, event.code)
        if isinstance(event, CommandWarningReceived):
            warn_from_peer(CommandWarning(Field(self, event.field), event.detail, event.code), stacklevel=4)
        elif isinstance(event, ConnectionEnded):
            self._wakeup.set()
            raise event.error

    def _receive(self, since: float, deadline: float | None, timeout: float | None) -> None:
        """Reads what the socket has (waiting for it until a deadline) into the protocol."""
        protocol = self._protocol
        sock = self._socket
        due = protocol.receive_deadline(since)
        if not (isinstance(sock, _ssl.SSLSocket) and sock.pending()):
            now = time.monotonic()
            if deadline is not None and (due is None or deadline < due):
                if now >= deadline:
                    raise NetworkTimeoutError(f"No field received within {timeout:g} seconds")
                ready = self._selector.select(deadline - now)
            elif due is not None:
                if now >= due:
                    raise protocol.timeout_error()
                ready = self._selector.select(due - now)
            else:
                ready = self._selector.select()
            if not ready:
                return  # the loop in _recv checks the deadlines again
            if self._closing:
                raise ConnectionClosed("Connection closed")
        buffer = protocol.get_buffer()
        try:
            nbytes = sock.recv_into(buffer)
        except (BlockingIOError, _ssl.SSLWantReadError):
            return
        except TimeoutError as ex:  # a TLS record that never completes
            raise protocol.timeout_error() from ex
        except OSError as ex:
            if self._closing:
                raise ConnectionClosed("Connection closed") from None
            protocol.receive_eof()
            raise NetworkError(str(ex) or type(ex).__name__) from ex
        if nbytes:
            protocol.buffer_updated(nbytes, time.monotonic(), buffer)
        else:
            protocol.receive_eof()

    # Sending.

    def _send_fields(
        self, packet_type: str, fields: Sequence[tuple[str, int, Iterable[tuple[str, Param]]]]
    ) -> Response:
        request = Request(packet_type, [(name, field_id) for name, field_id, _ in fields])
        with self._send_lock:
            queued = not self._closing and self._protocol.send_packet(packet_type, fields, time.monotonic())
            if not queued:
                self.logger.debug(
                    "Dropped packet %s to %s: connection closing", packet_type, self.remote_hostname
                )
                return Response(self, request)
            self._write(self._protocol.data_to_send())
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("Sent packet %s to %s over NCP", packet_type, self.remote_hostname)
            for name, _, _ in fields:
                self.logger.debug("Sent field %s %s to %s over NCP", packet_type, name, self.remote_hostname)
        return Response(self, request)

    def send_packet(self, packet_type: str, **fields: Mapping[str, Param]) -> Response:
        """
        Sends a NCP packet containing multiple NCP fields. Blocks until it is written.

        :param str packet_type: The packet type, a valid identifier.
        :param \\**fields: Keyword arguments, one per field: the field name mapped to a :class:`dict`
            of parameter names and values.
        :raises ValueError: if a packet, field or parameter name is not a valid identifier, or a
            value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :raises ncplib.NetworkError: if the connection broke while writing.
        :raises ncplib.NetworkTimeoutError: if the peer took nothing for the connection's timeout.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        new_id = self._protocol.new_field_id
        return self._send_fields(
            packet_type, [(name, new_id(), params.items()) for name, params in fields.items()]
        )

    def send(self, packet_type: str, field_name: str, **params: Param) -> Response:
        """
        Sends a NCP packet containing a single NCP field. Blocks until it is written (the
        kernel took it): a peer that reads slowly slows the sender down. Safe to call from
        several threads at once.

        :param str packet_type: The packet type, a valid identifier.
        :param str field_name: The field name, a valid identifier.
        :param \\**params: Keyword arguments, one per NCP parameter.
        :raises ValueError: if a name is not a valid identifier, or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :raises ncplib.NetworkError: if the connection broke while writing.
        :raises ncplib.NetworkTimeoutError: if the peer took nothing for the connection's timeout.
        :returns: A :class:`Response` giving access to any :class:`Field` received in reply.
        """
        return self._send_fields(packet_type, [(field_name, self._protocol.new_field_id(), params.items())])

    def _write(self, buffers: Sequence[bytes | memoryview]) -> None:
        """Writes buffers (the caller holds the send lock)."""
        sock = self._socket
        try:
            for buf in coalesce(buffers):
                sock.sendall(buf)
        except TimeoutError as ex:
            raise NetworkTimeoutError(
                f"Timed out sending to {self.remote_hostname}: the peer is not reading"
            ) from ex
        except OSError as ex:
            if self._closing:
                raise ConnectionClosed("Connection closed") from None
            raise NetworkError(f"Could not send to {self.remote_hostname}: {ex}") from ex

    # Keep-alive.

    def _start_keepalive(self) -> None:
        self._thread = threading.Thread(
            target=_keepalive_loop,
            args=(weakref.ref(self), self._wakeup),
            name=f"ncplib keep-alive {self.remote_hostname}",
            daemon=True,
        )
        self._thread.start()

    def _on_timer(self) -> bool:
        """Sends a keep-alive if one is due; False once that is no longer possible."""
        with self._send_lock:
            if self._closing:
                return False
            self._protocol.handle_timer(time.monotonic())
            data = self._protocol.data_to_send()
            if data:
                try:
                    self._write(data)
                except (NetworkError, NetworkTimeoutError, ConnectionClosed) as ex:
                    # The reader finds out why when it next reads.
                    self.logger.debug("Keep-alive to %s failed: %s", self.remote_hostname, ex)
                    return False
        return True

    # Closing.

    def is_closing(self) -> bool:
        """
        Returns :data:`True` if the connection is closing (or closed), or has ended.
        """
        return self._closing or self._protocol.error is not None

    def close(self) -> None:
        """
        Closes the connection: stops the keep-alive thread, closes the socket. Returns once both
        are gone. Threads blocked in :meth:`recv` get :exc:`~ncplib.ConnectionClosed`.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closing = True
            self._closed = True
            self._protocol.close()
            self._wakeup.set()
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:  # not connected any more
                pass
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(_CLOSE_WAIT)
            # Threads inside the socket have been woken by the shutdown; let them leave it.
            got_recv = self._recv_lock.acquire(timeout=_CLOSE_WAIT)
            got_send = self._send_lock.acquire(timeout=_CLOSE_WAIT)
            try:
                self._selector.close()
                self._socket.close()
            finally:
                if got_send:
                    self._send_lock.release()
                if got_recv:
                    self._recv_lock.release()
            self.logger.info("Disconnected from %s over NCP", self.remote_hostname)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # The handshake.

    def _handshake(self) -> None:
        protocol = self._protocol
        since = time.monotonic()
        with self._send_lock:
            self._write(protocol.data_to_send())
        while True:
            if protocol.error is not None:
                raise protocol.error
            event = protocol.next_event()
            data = protocol.data_to_send()
            if data:
                with self._send_lock:
                    self._write(data)
            if event is None:
                self._receive(since, None, None)
            elif isinstance(event, HandshakeComplete):
                return
            elif isinstance(event, FieldReceived):  # pragma: no cover - the core delivers none before
                continue
            else:
                self._notice(event)


def _keepalive_loop(ref: weakref.ReferenceType[Connection], wakeup: threading.Event) -> None:
    # Holds the connection only while acting, so that an unreferenced connection can be
    # collected (its socket then warns of not having been closed).
    while True:
        connection = ref()
        if connection is None:
            return
        due = connection._protocol.next_timer()
        finalizer = weakref.finalize(connection, wakeup.set)
        del connection
        wait = None if due is None else max(due - time.monotonic(), 0.0)
        stopped = wakeup.wait(wait)
        finalizer.detach()
        if stopped:
            return
        connection = ref()
        if connection is None or not connection._on_timer():
            return
        del connection


def connect(
    host: str,
    port: int | None = None,
    *,
    remote_hostname: str | None = None,
    hostname: str | None = None,
    connection_username: str | None = None,
    connection_domain: str | None = "",
    timeout: int = 60,
    auto_erro: bool = True,
    auto_warn: bool = True,
    auto_ackn: bool = True,
    ssl: bool | _ssl.SSLContext = False,
    username: str = "",
    password: str = "",
    use_numpy: bool = False,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
) -> Connection:
    """
    Connects to a NCP server and completes the handshake; blocks until done.

    Takes the arguments of :func:`ncplib.connect`, with the same meaning and defaults.

    :param str host: The hostname of the NCP server. This can be an IP address or domain name.
    :param int port: The port number of the NCP server. Defaults to 9999; 443 with ``ssl``; 80
        with ``username`` or ``password``.
    :param str remote_hostname: The identifying hostname for the remote end of the connection.
        If omitted, this will be the host:port of the NCP server.
    :param str hostname: CCRE ``CIW``; defaults to the system hostname.
    :param str connection_username: CCRE ``CUSR``; defaults to the login name of the system user.
    :param str connection_domain: CCRE ``CDOM``; :data:`None` sends an empty one.
    :param int timeout: The network timeout (in seconds): connecting, the handshake, receiving a
        packet, writing one. It is proposed to the server, which may change it.
    :param bool auto_erro: Raise :exc:`~ncplib.CommandError` on receiving ``ERRO`` (or ``ERRC``).
    :param bool auto_warn: Issue :exc:`~ncplib.CommandWarning` on receiving ``WARN`` (or ``WARC``).
    :param bool auto_ackn: Ignore fields containing an ``ACKN`` param.
    :param ssl: Connect over TLS: :data:`True` for a default (verifying) context, or an
        :class:`ssl.SSLContext` of your own.
    :param str username: Authenticate with the node using the given username.
    :param str password: Authenticate with the node using the given password.
    :param bool use_numpy: Decode data params as read-only :class:`numpy.ndarray` views of the
        received packet instead of :class:`array.array` copies (needs numpy).
    :param int max_packet_size: The largest packet accepted from the server, in bytes.
    :raises ncplib.NCPError: if the NCP connection failed: :exc:`~ncplib.NetworkError` if the
        server cannot be reached, :exc:`~ncplib.NetworkTimeoutError` if it does not answer in
        time, :exc:`~ncplib.AuthenticationError` if it rejects the credentials,
        :exc:`~ncplib.CommandError` if it answers the handshake with an error.
    :raises ValueError: if ``max_packet_size`` is too small.
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    :returns: The client :class:`Connection`.
    """
    endpoint = client_endpoint(
        host, port, ssl=ssl, username=username, password=password, remote_hostname=remote_hostname
    )
    remote_hostname = endpoint.remote_hostname
    identity = client_identity(hostname, connection_username, connection_domain)

    def new_protocol() -> ClientProtocol:
        return ClientProtocol(
            hostname=identity[0],
            username=identity[1],
            domain=identity[2],
            credentials=endpoint.credentials,
            timeout=timeout,
            now=time.monotonic(),
            auto_erro=auto_erro,
            auto_warn=auto_warn,
            auto_ackn=auto_ackn,
            max_packet_size=max_packet_size,
            use_numpy=use_numpy,
        )

    new_protocol()  # Fail on bad arguments before connecting.
    seconds = timeout if timeout > 0 else None
    try:
        sock = socket.create_connection((host, endpoint.port), seconds)
    except TimeoutError as ex:
        raise NetworkTimeoutError(f"Timed out connecting to {remote_hostname}") from ex
    except OSError as ex:
        raise NetworkError(f"Could not connect to {remote_hostname}: {ex}") from ex
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.ssl_context is not None:
            sock = endpoint.ssl_context.wrap_socket(sock, server_hostname=host)
    except TimeoutError as ex:
        sock.close()
        raise NetworkTimeoutError(f"Timed out connecting to {remote_hostname}") from ex
    except OSError as ex:
        sock.close()
        raise NetworkError(f"Could not connect to {remote_hostname}: {ex}") from ex
    logger.info("Connected to %s over NCP", remote_hostname)
    connection = Connection(sock, new_protocol(), logger=logger, remote_hostname=remote_hostname)
    try:
        connection._handshake()
    except BaseException:
        connection.close()
        raise
    connection._start_keepalive()
    return connection
