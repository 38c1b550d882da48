"""
Sans-IO NCP connection
======================

:class:`ClientProtocol` and :class:`ServerProtocol` are one side of an NCP connection as a pure
state machine: they never touch a socket, a thread, a timer or an event loop ("bring your own
I/O", as h11 and websockets do it). A front end drives them with four kinds of calls:

- **bytes in**: :meth:`~Protocol.receive_data` with the bytes read from the network (or
  :meth:`~Protocol.get_buffer` / :meth:`~Protocol.buffer_updated` to receive straight into the
  protocol's memory), :meth:`~Protocol.receive_eof` when the peer closed;
- **events out**: :meth:`~Protocol.next_event` (or :meth:`~Protocol.events_received`) returns
  what those bytes meant, one :class:`Event` at a time: :class:`FieldReceived`,
  :class:`HandshakeComplete`, :class:`TimeoutNegotiated`, :class:`ConnectionEnded` and so on;
- **bytes out**: :meth:`~Protocol.data_to_send` returns what must be written to the network, in
  order (handshake steps, keep-alives, the packets given to :meth:`~Protocol.send_packet`);
- **the clock in**: every call that needs the time takes ``now``, in seconds of any monotonic
  clock (:func:`time.monotonic`, :meth:`asyncio.loop.time() <asyncio.loop.time>`, a trio
  clock). :meth:`~Protocol.next_timer` says when :meth:`~Protocol.handle_timer` is due (a
  keep-alive to send), and :meth:`~Protocol.receive_deadline` when a wait for the next field
  should give up with :meth:`~Protocol.timeout_error`.

The protocol owns every connection rule of NCP (see ``ncp-protocol.md`` in the project's shared
notes): the optional HTTP ``CONNECT`` step before NCP (:mod:`ncplib.tunnel`), the ``LINK``
handshake, timeout negotiation, keep-alive decisions, the client's ``ERRO``/``WARN``/``ACKN``
filters and reply matching (:class:`Request`). Packets are framed and decoded by
:class:`~ncplib.framing.PacketReader` and encoded by :mod:`ncplib.packets`, with whichever codec
is active.

A minimal blocking client, to show the calls (:mod:`ncplib.sync` is the complete one)::

    import socket, time
    from ncplib.protocol import ClientProtocol, FieldReceived, HandshakeComplete

    protocol = ClientProtocol(hostname="me", username="me", now=time.monotonic())
    with socket.create_connection(("127.0.0.1", 9999)) as sock:
        while True:
            for event in protocol.events_received():
                ...
            sock.sendall(b"".join(protocol.data_to_send()))
            protocol.receive_data(sock.recv(65536), time.monotonic())

Memory is bounded: the protocol decodes a packet only when the front end asks for the next
event, so it holds at most the bytes the front end chose to read plus the fields of one packet.
"""

from __future__ import annotations

import enum
import getpass
import itertools
import socket
import ssl as _ssl
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, NamedTuple

from ncplib import _wire as w
from ncplib.errors import (
    AuthenticationError,
    ConnectionClosed,
    DecodeError,
    DecodeWarning,
    NCPError,
    NCPWarning,
    NetworkError,
    NetworkTimeoutError,
)
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE, PacketReader
from ncplib.packets import Param, encode_packet, encode_packet_buffers
from ncplib.tunnel import (
    MAX_HEAD_SIZE,
    TunnelRequest,
    encode_request,
    encode_response,
    parse_request,
    parse_response,
)

__all__ = [
    "MIN_TIMEOUT",
    "MAX_TIMEOUT",
    "LEGACY_KEEPALIVE_INTERVAL",
    "DEFAULT_PORT",
    "TLS_PORT",
    "HTTP_PORT",
    "LOCAL_INFO",
    "default_port",
    "ClientEndpoint",
    "client_endpoint",
    "client_identity",
    "as_timeout",
    "negotiate_timeout",
    "grant_timeout",
    "accept_timeout",
    "keepalive_interval",
    "keepalive_packet",
    "Link",
    "filter_field",
    "FILTERED_PARAMS",
    "NOTICE_FIELDS",
    "needs_filtering",
    "next_field_id",
    "coalesce",
    "Side",
    "State",
    "Event",
    "TunnelRequestReceived",
    "TunnelEstablished",
    "TimeoutNegotiated",
    "HandshakeComplete",
    "FieldReceived",
    "CommandErrorReceived",
    "CommandWarningReceived",
    "ConnectionEnded",
    "Request",
    "ClientHandshake",
    "ServerHandshake",
    "Protocol",
    "ClientProtocol",
    "ServerProtocol",
]

#: The shortest timeout a server accepts, in seconds.
MIN_TIMEOUT: Final = 5
#: The longest timeout a server accepts, in seconds.
MAX_TIMEOUT: Final = 60
#: Seconds between keep-alives to a legacy peer (negotiated timeout 0), as 6.1.0 sends them.
LEGACY_KEEPALIVE_INTERVAL: Final = 3
#: The keep-alive interval as a fraction of the negotiated timeout (whole seconds, rounded down).
KEEPALIVE_FRACTION: Final = 0.66
#: The port of plain NCP.
DEFAULT_PORT: Final = w.DEFAULT_PORT
#: The default port with TLS.
TLS_PORT: Final = 443
#: The default port with the HTTP ``CONNECT`` step but no TLS.
HTTP_PORT: Final = 80
#: The info word of every packet sent: the last 4 bytes of this host's MAC address.
LOCAL_INFO: Final = uuid.getnode().to_bytes(6, "big")[-4:]
# The CCRE CIW sent when the system has no hostname (the same as 6.1.0's).
_FALLBACK_HOSTNAME = "python3-ncplib"
_UTC = timezone.utc
_HEAD_END = b"\r\n\r\n"
#: Params the client-side filters look at: a field with none of them, and not named in
#: :data:`NOTICE_FIELDS`, passes them all.
FILTERED_PARAMS: Final = frozenset(("ERRO", "ERRC", "WARN", "WARC", "ACKN"))
#: Field names that are notices in themselves (never delivered while their filter is on).
NOTICE_FIELDS: Final = frozenset(("ERRO", "WARN"))
# Field ids come from one counter per process, wrapping at 2**32.
_field_ids = itertools.count()


def next_field_id() -> int:
    """
    The next field id from the process-wide counter (as 6.1.0 numbers fields), wrapping at 2**32.

    :returns: An id in ``0 .. 2**32 - 1``.
    """
    return next(_field_ids) & 0xFFFFFFFF


def default_port(*, ssl: object, authenticate: bool) -> int:
    """
    The port used when none is given: 443 with TLS, 80 with HTTP authentication, else 9999.

    :param ssl: The ``ssl`` argument (anything true means TLS).
    :param bool authenticate: Whether the HTTP CONNECT step with credentials is used.
    :returns: The port number.
    """
    if ssl:
        return TLS_PORT
    if authenticate:
        return HTTP_PORT
    return DEFAULT_PORT


class ClientEndpoint(NamedTuple):
    """Where and how a client connects, from the arguments of :func:`ncplib.connect`."""

    #: The port (given, or the default for the transport).
    port: int
    #: The TLS context, or :data:`None` for plain TCP.
    ssl_context: _ssl.SSLContext | None
    #: ``(username, password)`` for the HTTP ``CONNECT`` step, or :data:`None` when there is none.
    credentials: tuple[str, str] | None
    #: The name the connection's log messages give the server.
    remote_hostname: str


def client_endpoint(
    host: str,
    port: int | None,
    *,
    ssl: bool | _ssl.SSLContext,
    username: str,
    password: str,
    remote_hostname: str | None,
) -> ClientEndpoint:
    """
    Resolves the transport arguments of a client's ``connect()``: the default port
    (:func:`default_port`), a default verifying TLS context for ``ssl=True``, the CONNECT step
    (with TLS or credentials) and ``remote_hostname`` (``host:port`` by default).
    """
    if port is None:
        port = default_port(ssl=ssl, authenticate=bool(username or password))
    context: _ssl.SSLContext | None
    if ssl is True:
        context = _ssl.create_default_context()
    elif ssl is False:
        context = None
    else:
        context = ssl
    tunnel = bool(ssl) or bool(username) or bool(password)
    return ClientEndpoint(
        port,
        context,
        (username, password) if tunnel else None,
        f"{host}:{port}" if remote_hostname is None else remote_hostname,
    )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment (e.g. a container with no user entry)
        return ""


def client_identity(hostname: str | None, username: str | None, domain: str | None) -> tuple[str, str, str]:
    """
    The CCRE identity a client sends: empty or missing values mean the defaults, as in 6.1.0.

    :param hostname: CIW; defaults to the system hostname (``"python3-ncplib"`` if it has none).
    :param username: CUSR; defaults to the login name of the system user (empty if there is none).
    :param domain: CDOM; defaults to an empty string.
    :returns: ``(hostname, username, domain)``.
    """
    return (
        hostname or socket.gethostname() or _FALLBACK_HOSTNAME,
        username or _login_name(),
        domain or "",
    )


def as_timeout(value: Any) -> int | None:
    """
    A received ``LINK`` timeout as a non-negative whole number of seconds.

    :returns: The value (an :class:`int`, not a :class:`bool`, at least 0), or :data:`None` if
        it is not one.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return int(value)


def negotiate_timeout(proposed: Any) -> int:
    """
    The timeout a server grants for the LINK value a client proposed.

    :param proposed: The client's CCRE ``LINK`` param, or :data:`None` if it sent none.
    :returns: 0 (legacy) if the client proposed none or 0 (or something that is not a
        non-negative number, with a :exc:`~ncplib.DecodeWarning`), else the proposal clamped to
        ``MIN_TIMEOUT..MAX_TIMEOUT``.
    """
    if proposed is None:
        return 0
    timeout = as_timeout(proposed)
    if timeout is None:
        warnings.warn(DecodeWarning(f"Invalid connection timeout {proposed!r}"), stacklevel=2)
        return 0
    if timeout == 0:
        return 0
    return min(max(timeout, MIN_TIMEOUT), MAX_TIMEOUT)


def grant_timeout(proposed: Any) -> int:
    """
    The server's side of the negotiation: :func:`negotiate_timeout`, with an
    :exc:`~ncplib.NCPWarning` when the granted timeout differs from a valid proposal.

    :param proposed: The client's CCRE ``LINK`` param, or :data:`None` if it sent none.
    :returns: The timeout to send in SCAR ``LINK``.
    """
    negotiated = negotiate_timeout(proposed)
    if proposed is not None and negotiated != proposed and as_timeout(proposed) is not None:
        warnings.warn(NCPWarning(f"Changed connection timeout from {proposed} to {negotiated}"), stacklevel=2)
    return negotiated


def accept_timeout(granted: Any, proposed: int) -> int:
    """
    The client's side of the negotiation: the timeout the server granted in SCAR ``LINK``.

    :param granted: SCAR's ``LINK`` param, or :data:`None` if it sent none.
    :param int proposed: What the client proposed.
    :returns: The granted timeout, or 0 (legacy) when there is none or it is not a
        non-negative number (then with a :exc:`~ncplib.DecodeWarning`). A server that changed
        the timeout to another non-zero value gets an :exc:`~ncplib.NCPWarning`; 0 is a legacy
        server's answer, not a change, and is accepted silently, as 6.1.0 does.
    """
    if granted is None:
        return 0
    checked = as_timeout(granted)
    if checked is None:
        warnings.warn(DecodeWarning(f"Invalid connection timeout {granted!r} from server"), stacklevel=2)
        return 0
    if checked not in (0, proposed):
        warnings.warn(NCPWarning(f"Server changed connection timeout to {checked}"), stacklevel=2)
    return checked


def keepalive_interval(timeout: int) -> int:
    """
    The keep-alive interval, in whole seconds, for a negotiated timeout.

    :param int timeout: The negotiated timeout in seconds; 0 for a legacy peer.
    :returns: ``0.66 * timeout`` rounded down (at least 1), or 3 for a legacy peer (which also
        gets one keep-alive at once, when the handshake completes).
    """
    if timeout <= 0:
        return LEGACY_KEEPALIVE_INTERVAL
    return max(int(timeout * KEEPALIVE_FRACTION), 1)


def coalesce(buffers: Iterable[bytes | memoryview], small: int = 16 * 1024) -> Iterator[bytes | memoryview]:
    """
    The buffers from :meth:`Protocol.data_to_send`, ready to write one by one: each run of
    buffers smaller than ``small`` bytes joined into one (fewer system calls), larger ones (array
    data) as they are (no copy).
    """
    run: list[bytes | memoryview] = []
    for buf in buffers:
        if memoryview(buf).nbytes < small:
            run.append(buf)
            continue
        if run:
            yield b"".join(run) if len(run) > 1 else run[0]
            run = []
        yield buf
    if run:
        yield b"".join(run) if len(run) > 1 else run[0]


def keepalive_packet(timestamp: datetime, info: bytes = LOCAL_INFO) -> bytes:
    """
    A keep-alive: a ``LINK`` packet with no fields and packet id 0, stamped with whole seconds
    as 6.1.0's are.
    """
    return encode_packet("LINK", 0, timestamp.replace(microsecond=0), info, ())


def _utcnow() -> datetime:
    return datetime.now(_UTC)


class Side(enum.Enum):
    """Which end of the connection a protocol is."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    """Where a connection is in its life cycle."""

    #: The HTTP ``CONNECT`` step (only with TLS or credentials).
    TUNNEL = "tunnel"
    #: The ``LINK`` handshake.
    HANDSHAKE = "handshake"
    #: Fields flow both ways.
    OPEN = "open"
    #: Ended: by the peer, by an error, or by :meth:`Protocol.close`.
    CLOSED = "closed"


class Event:
    """Base class of everything :meth:`Protocol.next_event` returns."""

    __slots__ = ()


@dataclass(frozen=True)
class TunnelRequestReceived(Event):
    """
    Server side: the client's HTTP ``CONNECT`` request arrived. Answer it with
    :meth:`ServerProtocol.accept_tunnel` or :meth:`ServerProtocol.reject_tunnel`; until then no
    NCP event is produced.
    """

    #: The parsed request; ``request.credentials`` is ``(username, password)`` or :data:`None`.
    request: TunnelRequest


@dataclass(frozen=True)
class TunnelEstablished(Event):
    """The HTTP ``CONNECT`` step succeeded; the ``LINK`` handshake starts."""


@dataclass(frozen=True)
class TimeoutNegotiated(Event):
    """The handshake fixed the connection's timeout (sent in ``SCAR``)."""

    #: Seconds: both sides send keep-alives and time out by it; 0 is a legacy peer (keep-alives
    #: every 3 s, each side keeps its own receive timeout).
    timeout: int


@dataclass(frozen=True)
class HandshakeComplete(Event):
    """The ``LINK`` handshake is done: fields can flow, keep-alives are scheduled."""

    #: The negotiated timeout in seconds (0: a legacy peer).
    timeout: int
    #: Server side: the client's hostname from CCRE ``CIW`` (:data:`None` if it sent none).
    remote_hostname: str | None


@dataclass(slots=True, eq=False)
class FieldReceived(Event):
    """A field arrived (after the handshake, and through the client's filters)."""

    #: The type of the packet that contained it, an identifier such as ``"DSPC"``.
    packet_type: str
    #: The id of that packet.
    packet_id: int
    #: When that packet was sent: a timezone-aware UTC :class:`~datetime.datetime`.
    packet_timestamp: datetime
    #: The field name, an identifier.
    name: str
    #: The field id (a reply repeats the id of the request).
    id: int
    #: The params as ``(name, value)`` pairs, in wire order.
    params: list[tuple[str, Any]]


@dataclass(frozen=True)
class CommandErrorReceived(Event):
    """
    Client side with ``auto_erro``: a field with an ``ERRO`` or ``ERRC`` param arrived. The field
    is not delivered; the front end raises :exc:`ncplib.CommandError` for it.
    """

    field: FieldReceived
    #: The ``ERRO`` param (the server's message), or :data:`None`.
    detail: Any
    #: The ``ERRC`` param (the server's code), or :data:`None`.
    code: Any


@dataclass(frozen=True)
class CommandWarningReceived(Event):
    """
    Client side with ``auto_warn``: a field with a ``WARN`` or ``WARC`` param arrived. The front
    end issues :exc:`ncplib.CommandWarning`; the field itself follows as a
    :class:`FieldReceived` unless it is named ``WARN`` or holds ``ACKN`` (with ``auto_ackn``).
    """

    field: FieldReceived
    #: The ``WARN`` param, or :data:`None`.
    detail: Any
    #: The ``WARC`` param, or :data:`None`.
    code: Any


@dataclass(frozen=True)
class ConnectionEnded(Event):
    """
    No more fields will arrive. The front end should close its transport.

    ``error`` says why: :exc:`~ncplib.ConnectionClosed` when the peer closed between packets,
    :exc:`~ncplib.NetworkError` when it closed in the middle of one or the HTTP step failed,
    :exc:`~ncplib.AuthenticationError` when credentials were rejected,
    :exc:`~ncplib.DecodeError` when a malformed or oversized packet arrived.
    """

    error: NCPError


class Request:
    """
    What a reply to a sent packet looks like: it repeats the packet type and one of the
    (field name, field id) pairs of the request.

    :param str packet_type: The packet type sent.
    :param fields: The ``(field name, field id)`` pairs sent.
    """

    __slots__ = ("fields", "packet_type")

    def __init__(self, packet_type: str, fields: Iterable[tuple[str, int]]) -> None:
        self.packet_type = packet_type
        self.fields = frozenset(fields)

    def matches(self, packet_type: str, name: str, field_id: int) -> bool:
        """Tells whether a received field (given by its packet type, name and id) is a reply."""
        return packet_type == self.packet_type and (name, field_id) in self.fields

    def __repr__(self) -> str:
        return f"<Request {self.packet_type!r} {sorted(self.fields)!r}>"


class Link:
    """
    The timing rules of a connection: its receive timeout and its keep-alive decisions. Every
    front end (and :class:`Protocol`) keeps one; it reads no clock itself.

    :param int timeout: This side's own timeout in seconds (0 or less: none).
    :param float now: The monotonic time the connection starts.

    .. attribute:: timeout

        The seconds of silence after which a wait for a field gives up: the own timeout until
        :meth:`establish`, then the negotiated one, unless that is 0 (a legacy peer).
    """

    __slots__ = (
        "_due",
        "_interval",
        "_last_sent",
        "_postpone",
        "negotiated_timeout",
        "on_established",
        "own_timeout",
        "timeout",
    )

    def __init__(self, timeout: int, now: float) -> None:
        self.own_timeout = timeout
        self.timeout = timeout
        #: The negotiated timeout once established (0: a legacy peer), else :data:`None`.
        self.negotiated_timeout: int | None = None
        self._interval = 0
        self._postpone = True
        self._due: float | None = None
        self._last_sent = now
        #: Called at the end of :meth:`establish`, e.g. by a front end to arm its keep-alive timer.
        self.on_established: Callable[[], None] | None = None

    def establish(self, negotiated: int, now: float) -> None:
        """
        Starts the keep-alives for the negotiated timeout (the handshake is done).

        With a negotiated timeout, a keep-alive is due after ``0.66 * timeout`` seconds with
        nothing sent (each packet sent postpones it); with 0 (a legacy peer) one is due at once
        and then every 3 seconds, sent or not, as from 6.1.0.
        """
        self.negotiated_timeout = negotiated
        self.timeout = negotiated if negotiated > 0 else self.own_timeout
        self._interval = keepalive_interval(negotiated)
        self._postpone = negotiated > 0
        self._due = now if negotiated <= 0 else now + self._interval
        if self.on_established is not None:
            self.on_established()

    def sent(self, now: float) -> None:
        """Records that a packet was sent at ``now`` (it postpones the next keep-alive)."""
        self._last_sent = now

    def next_timer(self) -> float | None:
        """When :meth:`keepalive_due` should next be asked, or :data:`None` (none scheduled)."""
        return self._due

    def keepalive_due(self, now: float) -> bool:
        """
        Whether a keep-alive must be sent at ``now``; if so, send one and call
        :meth:`keepalive_sent`. If not, :meth:`next_timer` tells when to ask again.
        """
        due = self._due
        if due is None:
            return False
        if self._postpone:
            due = self._last_sent + self._interval
            if due > now + 0.01:
                self._due = due
                return False
        elif due > now + 0.01:
            return False
        return True

    def keepalive_sent(self, now: float) -> None:
        """Records that a keep-alive was sent at ``now``; the next is due an interval later."""
        self._last_sent = now
        self._due = now + self._interval

    def stop(self) -> None:
        """No more keep-alives (the connection is closing)."""
        self._due = None


def filter_field(
    name: str,
    params: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    auto_erro: bool,
    auto_warn: bool,
    auto_ackn: bool,
) -> tuple[bool, tuple[Any, Any] | None, tuple[Any, Any] | None]:
    """
    The client-side filters for one received field, in 6.1.0's order: an error wins over a
    warning; a field named ``ERRO`` or ``WARN`` is a notice in itself and never delivered while
    its filter is on; a field with an ``ACKN`` param is an acknowledgement.

    :param str name: The field name.
    :param params: Its params: a mapping, or ``(name, value)`` pairs.
    :returns: ``(deliver, error, warning)``: whether to deliver the field, and the
        ``(detail, code)`` of the :exc:`~ncplib.CommandError` to raise or the
        :exc:`~ncplib.CommandWarning` to issue (:data:`None` for none).
    """
    values: Mapping[str, Any] = params if isinstance(params, Mapping) else dict(params)
    if auto_erro:
        if "ERRO" in values or "ERRC" in values:
            return False, (values.get("ERRO"), values.get("ERRC")), None
        if name == "ERRO":
            return False, None, None
    warning = None
    if auto_warn:
        if "WARN" in values or "WARC" in values:
            warning = (values.get("WARN"), values.get("WARC"))
        if name == "WARN":
            return False, None, warning
    return not (auto_ackn and "ACKN" in values), None, warning


def needs_filtering(name: str, param_names: Iterable[str]) -> bool:
    """Whether :func:`filter_field` could do anything to a field: the usual field passes at once."""
    return name in NOTICE_FIELDS or not FILTERED_PARAMS.isdisjoint(param_names)


#: A field of the handshake to send: its name and params (packet type ``LINK``).
Step = tuple[str, list[tuple[str, Param]]]


class ClientHandshake:
    """
    The client's steps of the ``LINK`` handshake, without I/O: feed it each ``LINK`` field
    received; it answers ``HELO`` with ``CCRE`` and ``SCAR`` with ``CARE``, and is done on ``SCON``.
    Used by :class:`ClientProtocol` and by the asyncio client.

    :param str hostname: CCRE ``CIW`` and CARE ``CAR``.
    :param str username: CCRE ``CUSR``.
    :param str domain: CCRE ``CDOM``.
    :param int timeout: The timeout proposed in CCRE ``LINK``.
    """

    __slots__ = ("domain", "expecting", "helo", "hostname", "negotiated", "timeout", "username")

    def __init__(self, hostname: str, username: str, domain: str, timeout: int) -> None:
        self.hostname = hostname
        self.username = username
        self.domain = domain
        self.timeout = timeout
        #: The name of the next field of the handshake, or ``""`` once it is done.
        self.expecting = "HELO"
        #: The negotiated timeout once SCAR arrived (see :func:`accept_timeout`), else None.
        self.negotiated: int | None = None
        #: The params of the server's ``HELO`` (a real node names itself there: ``NCPV``,
        #: ``SEID``, ``MACA``), once it arrived, else None.
        self.helo: dict[str, Any] | None = None

    def receive(self, name: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Step | None:
        """
        Takes a ``LINK`` field received; fields other than the next step are ignored.

        :returns: The field to send in reply, or :data:`None`.
        """
        if name != self.expecting:
            return None
        if name == "HELO":
            self.expecting = "SCAR"
            self.helo = dict(params)
            return "CCRE", [
                ("CIW", self.hostname),
                ("CUSR", self.username),
                ("CDOM", self.domain),
                ("LINK", self.timeout),
            ]
        if name == "SCAR":
            self.expecting = "SCON"
            values: Mapping[str, Any] = params if isinstance(params, Mapping) else dict(params)
            self.negotiated = accept_timeout(values.get("LINK"), self.timeout)
            return "CARE", [("CAR", self.hostname)]
        self.expecting = ""
        return None


class ServerHandshake:
    """
    The server's steps of the ``LINK`` handshake, without I/O: send :meth:`hello`, then feed it
    each ``LINK`` field received; it answers ``CCRE`` with ``SCAR`` (the granted timeout, see
    :func:`grant_timeout`) and ``CARE`` with ``SCON``, and is then done. Used by
    :class:`ServerProtocol` and by the asyncio server.

    :param helo_params: Params of the ``HELO`` field.
    """

    __slots__ = ("expecting", "helo_params", "negotiated", "remote_hostname")

    def __init__(self, helo_params: Mapping[str, Param] | None = None) -> None:
        self.helo_params = dict(helo_params or {})
        #: The name of the next field of the handshake, or ``""`` once it is done.
        self.expecting = "CCRE"
        #: The granted timeout once CCRE arrived, else None.
        self.negotiated: int | None = None
        #: The client's hostname from CCRE ``CIW`` (None if it sent none or an empty one).
        self.remote_hostname: str | None = None

    def hello(self) -> Step:
        """The ``HELO`` field that opens the handshake."""
        return "HELO", list(self.helo_params.items())

    def receive(self, name: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Step | None:
        """
        Takes a ``LINK`` field received; fields other than the next step are ignored.

        :returns: The field to send in reply, or :data:`None`.
        """
        if name != self.expecting:
            return None
        if name == "CCRE":
            self.expecting = "CARE"
            values: Mapping[str, Any] = params if isinstance(params, Mapping) else dict(params)
            hostname = values.get("CIW")
            if isinstance(hostname, str) and hostname:
                self.remote_hostname = hostname
            self.negotiated = grant_timeout(values.get("LINK"))
            return "SCAR", [("LINK", self.negotiated)]
        self.expecting = ""
        return "SCON", []


class Protocol:
    """
    The part common to both sides; instantiate :class:`ClientProtocol` or :class:`ServerProtocol`.

    :param int timeout: This side's timeout in seconds (0 or less: none). It bounds the CONNECT
        step and the handshake; the client proposes it; after the handshake it is replaced by
        the negotiated one, unless that is 0 (a legacy peer).
    :param float now: The monotonic time the connection starts (the handshake clock starts then).
    :param bool auto_erro: Turn fields with ``ERRO``/``ERRC`` into :class:`CommandErrorReceived`.
    :param bool auto_warn: Announce fields with ``WARN``/``WARC`` by :class:`CommandWarningReceived`.
    :param bool auto_ackn: Drop fields with ``ACKN``.
    :param int max_packet_size: The largest packet accepted, in bytes.
    :param bool use_numpy: Decode data params as read-only numpy views (needs numpy).
    :param clock: Returns the wall-clock time stamped on packets sent (a UTC datetime).
    :param bytes info: The info word of packets sent (at most 4 bytes).
    :param field_ids: Returns the id of each new field sent; defaults to :func:`next_field_id`.
    :raises ValueError: if ``max_packet_size`` is too small.
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    """

    side: Side

    def __init__(
        self,
        *,
        timeout: int = 60,
        now: float = 0.0,
        tunnel: bool = False,
        auto_erro: bool = False,
        auto_warn: bool = False,
        auto_ackn: bool = False,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        use_numpy: bool = False,
        clock: Callable[[], datetime] = _utcnow,
        info: bytes = LOCAL_INFO,
        field_ids: Callable[[], int] = next_field_id,
    ) -> None:
        self.reader = PacketReader(max_packet_size=max_packet_size, use_numpy=use_numpy)
        #: The connection's timeouts and keep-alive decisions.
        self.link = Link(timeout, now)
        self.state = State.TUNNEL if tunnel else State.HANDSHAKE
        self.auto_erro = auto_erro
        self.auto_warn = auto_warn
        self.auto_ackn = auto_ackn
        self._filtered = auto_erro or auto_warn or auto_ackn
        self._clock = clock
        self._info = info
        self._field_ids = field_ids
        self._events: deque[Event] = deque()
        self._out: list[bytes | memoryview] = []
        self._head: bytearray | None = bytearray() if tunnel else None
        self._eof = False
        self._ended = False
        #: Why the connection ended (once a :class:`ConnectionEnded` was produced), else None.
        self.error: NCPError | None = None
        self._failure: NCPError | None = None
        self._phase_started = now
        self._last_received = now
        self._pending_since: float | None = None
        self._last_packet = now

    # Bytes in.

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """
        Writable memory to receive the next bytes into (zero copy); then call :meth:`buffer_updated`.

        Before NCP starts (the CONNECT step) it is scratch memory that :meth:`buffer_updated`
        copies from.
        """
        if self._head is not None or self._failure is not None:
            return memoryview(bytearray(max(sizehint, 4096) if sizehint > 0 else 4096))
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float, buffer: memoryview | None = None) -> None:
        """
        Records that ``nbytes`` bytes were written into the memory from :meth:`get_buffer`.

        :param buffer: That memory, needed only when it was scratch memory (during the CONNECT
            step); the front end passes back what :meth:`get_buffer` returned.
        """
        if self._head is not None or self._failure is not None:
            if buffer is not None:
                self.receive_data(buffer[:nbytes], now)
            return
        self._received(now)
        try:
            self.reader.buffer_updated(nbytes)
        except DecodeError as ex:
            self._failure = ex

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """
        Feeds bytes received from the peer. Nothing is decoded yet: see :meth:`next_event`.

        :param data: The bytes, exactly as received.
        :param float now: The monotonic time they arrived.
        """
        if not data or self._eof or self._failure is not None:
            return
        self._received(now)
        view = memoryview(data).cast("B")
        head = self._head
        if head is not None:
            start = max(len(head) - 3, 0)
            head += view
            end = head.find(_HEAD_END, start)
            if end < 0:
                if len(head) > MAX_HEAD_SIZE:
                    self._failure = NetworkError(f"HTTP head larger than {MAX_HEAD_SIZE} bytes")
                return
            end += len(_HEAD_END)
            if end > MAX_HEAD_SIZE:
                self._failure = NetworkError(f"HTTP head larger than {MAX_HEAD_SIZE} bytes")
                return
            self._head = None
            rest = head[end:]
            # The head is complete: the clock starts again for the first packet.
            self._pending_since = now if rest else None
            self._head_received(bytes(head[:end]), now)
            view = memoryview(rest)
        if view:
            try:
                self.reader.feed(view)
            except DecodeError as ex:
                self._failure = ex

    def _received(self, now: float) -> None:
        self._last_received = now
        if self._pending_since is None:
            self._pending_since = now

    def receive_eof(self) -> None:
        """Records that the peer closed its end: a :class:`ConnectionEnded` follows the last field."""
        self._eof = True

    def _head_received(self, head: bytes, now: float) -> None:
        raise NotImplementedError

    # Events out.

    def next_event(self, now: float | None = None) -> Event | None:
        """
        The next event, or :data:`None` when more bytes are needed (or the connection ended and
        its :class:`ConnectionEnded` was returned already).

        Decodes at most one packet per call, so unread packets stay compact in the receive buffer.

        :param now: The monotonic time (default: that of the last bytes received); a packet read
            now starts the timeout of the bytes after it.
        """
        events = self._events
        while not events:
            if self._ended:
                return None
            packet = None
            if self.state is not State.TUNNEL:
                try:
                    packet = self.reader.next_packet()
                except DecodeError as ex:
                    self._end(ex)
                    continue
            if packet is None:
                # Nothing more to read: the end, if it has come, else a wait for more bytes.
                if self._failure is not None:
                    self._end(self._failure)
                elif self._eof:
                    self._end_at_eof()
                else:
                    return None
                continue
            # A packet arrived whole: whatever follows it gets a full timeout of its own.
            self._last_packet = self._last_received if now is None else now
            self._pending_since = self._last_packet if self.reader.buffered else None
            packet_type, packet_id, timestamp, _info, fields = packet
            for name, field_id, params in fields:
                self._field(FieldReceived(packet_type, packet_id, timestamp, name, field_id, params))
        return events.popleft()

    def events_received(self, now: float | None = None) -> list[Event]:
        """Every event the bytes received so far make (see :meth:`next_event`)."""
        events = []
        while (event := self.next_event(now)) is not None:
            events.append(event)
        return events

    def _end_at_eof(self) -> None:
        if self.reader.buffered or self._head:
            self._end(NetworkError("Connection closed in the middle of a packet"))
        else:
            self._end(ConnectionClosed("Connection closed"))

    def _end(self, error: NCPError) -> None:
        self._ended = True
        self.error = error
        self.state = State.CLOSED
        self.link.stop()
        self._events.append(ConnectionEnded(error))

    def _fail(self, error: NCPError) -> None:
        """Ends the connection at once (the CONNECT step failed): nothing after it is read."""
        self._failure = error
        self._events.clear()

    def _field(self, field: FieldReceived) -> None:
        if self._filtered and not self._filter(field):
            return
        if self.state is State.OPEN:
            self._events.append(field)
        else:
            self._handshake_field(field)

    def _filter(self, field: FieldReceived) -> bool:
        """True: deliver the field; the notices it carries become events (see :func:`filter_field`)."""
        if not needs_filtering(field.name, [name for name, _ in field.params]):
            return True
        deliver, error, warning = filter_field(
            field.name,
            field.params,
            auto_erro=self.auto_erro,
            auto_warn=self.auto_warn,
            auto_ackn=self.auto_ackn,
        )
        if error is not None:
            self._events.append(CommandErrorReceived(field, *error))
        if warning is not None:
            self._events.append(CommandWarningReceived(field, *warning))
        return deliver

    def _handshake_field(self, field: FieldReceived) -> None:
        raise NotImplementedError

    def _send_step(self, step: Step, now: float | None = None) -> None:
        name, params = step
        self.send_packet(
            "LINK", [(name, self._field_ids(), params)], self._last_received if now is None else now
        )

    def _complete(self, negotiated: int) -> None:
        now = self._last_received
        self.state = State.OPEN
        self.link.establish(negotiated, now)
        # A legacy peer gets its first keep-alive at once.
        self.handle_timer(now)

    @property
    def timeout(self) -> int:
        """The seconds of silence after which a wait for a field gives up (0 or less: never)."""
        return self.link.timeout

    @property
    def own_timeout(self) -> int:
        """This side's own timeout, the one proposed by a client."""
        return self.link.own_timeout

    @property
    def negotiated_timeout(self) -> int | None:
        """The negotiated timeout once the handshake is done (0: a legacy peer), else None."""
        return self.link.negotiated_timeout

    # Bytes out.

    def data_to_send(self) -> list[bytes | memoryview]:
        """
        The buffers to write to the network, in order; each is returned once.

        Large array and raw values are views of the values given to :meth:`send_packet`: write
        them before modifying those values.
        """
        out, self._out = self._out, []
        return out

    def send_packet(
        self, packet_type: str, fields: Sequence[tuple[str, int, Iterable[tuple[str, Param]]]], now: float
    ) -> bool:
        """
        Encodes a packet (packet id 1, as 6.1.0 sends) and queues it for :meth:`data_to_send`.

        Sending postpones the next keep-alive (unless the peer is a legacy one).

        :param str packet_type: The packet type, an identifier.
        :param fields: ``(field name, field id, params)`` triples; params as ``(name, value)``.
        :param float now: The monotonic time.
        :raises ValueError: if a name is not a valid identifier or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :returns: :data:`True` if queued; :data:`False` if dropped because the connection ended.
        """
        buffers = encode_packet_buffers(packet_type, 1, self._clock(), self._info, fields)
        if self.state is State.CLOSED:
            return False
        self._out.extend(buffers)
        self.link.sent(now)
        return True

    def send(self, packet_type: str, field_name: str, params: Mapping[str, Param], now: float) -> Request:
        """
        Sends a packet of one new field (with the next field id) and says what its replies look like.

        :raises ValueError: if a name is not a valid identifier or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :returns: The :class:`Request` that matches the replies.
        """
        field_id = self._field_ids()
        self.send_packet(packet_type, [(field_name, field_id, params.items())], now)
        return Request(packet_type, [(field_name, field_id)])

    def new_field_id(self) -> int:
        """An id for a new field to send."""
        return self._field_ids()

    # The clock.

    def next_timer(self) -> float | None:
        """
        When :meth:`handle_timer` is next due (monotonic seconds), or :data:`None` if nothing is
        scheduled (before the handshake completes, and after the connection ended).
        """
        return self.link.next_timer()

    def handle_timer(self, now: float) -> None:
        """
        Does what is due at ``now``: sends a keep-alive (a ``LINK`` packet with no fields, packet
        id 0, a whole-second timestamp) when the interval passed with nothing sent.
        """
        if self.state is State.OPEN and self.link.keepalive_due(now):
            self._out.append(keepalive_packet(self._clock(), self._info))
            self.link.keepalive_sent(now)

    def receive_deadline(self, waiting_since: float) -> float | None:
        """
        When a wait for the next event that started at ``waiting_since`` times out, or :data:`None`.

        After the handshake: ``timeout`` seconds from the first byte of the packet still
        incomplete, or when none of it is held from ``waiting_since`` or the last packet read
        (a keep-alive counts), whichever is later, so that bytes that never complete a packet
        do not keep the connection alive. Before: the CONNECT step and the
        handshake must each be completed within the timeout.
        """
        timeout = self.timeout
        if timeout <= 0:
            return None
        if self.state is not State.OPEN:
            return self._phase_started + timeout
        pending = self._pending_since
        if pending is None:
            return max(waiting_since, self._last_packet) + timeout
        return pending + timeout

    def timeout_error(self) -> NetworkTimeoutError:
        """The error to raise when :meth:`receive_deadline` passed."""
        if self.state is State.HANDSHAKE:
            return NetworkTimeoutError(f"Handshake not completed within {self.timeout} seconds")
        return NetworkTimeoutError(f"No complete packet received for {self.timeout:g} seconds")

    # Closing.

    def close(self) -> None:
        """Ends the connection on this side: no more events or keep-alives; sends are dropped."""
        self.state = State.CLOSED
        self.link.stop()
        self._ended = True
        self._events.clear()


class ClientProtocol(Protocol):
    """
    The client side. Waits for ``HELO``, sends ``CCRE``, reads the negotiated timeout from
    ``SCAR``, sends ``CARE`` and completes on ``SCON``. With ``credentials`` it first sends the
    HTTP ``CONNECT`` request and checks the answer.

    :param str hostname: CCRE ``CIW`` and CARE ``CAR`` (see :func:`client_identity`).
    :param str username: CCRE ``CUSR``.
    :param str domain: CCRE ``CDOM``.
    :param credentials: ``(username, password)`` for the CONNECT step, or :data:`None` for none.
        TLS always needs the step: pass ``("", "")`` then.
    :param int timeout: Proposed to the server in CCRE ``LINK``; see :class:`Protocol`.

    The filters are on by default, as in :func:`ncplib.connect`. Other parameters as in
    :class:`Protocol`. Issues :exc:`~ncplib.NCPWarning` if the server changes the timeout to
    another non-zero value, :exc:`~ncplib.DecodeWarning` if SCAR's ``LINK`` is not a
    non-negative number (it is then taken as 0).
    """

    side = Side.CLIENT

    def __init__(
        self,
        *,
        hostname: str,
        username: str,
        domain: str = "",
        credentials: tuple[str, str] | None = None,
        auto_erro: bool = True,
        auto_warn: bool = True,
        auto_ackn: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(
            tunnel=credentials is not None,
            auto_erro=auto_erro,
            auto_warn=auto_warn,
            auto_ackn=auto_ackn,
            **options,
        )
        self.handshake = ClientHandshake(hostname, username, domain, self.link.own_timeout)
        if credentials is not None:
            self._out.append(encode_request(*credentials))

    def _head_received(self, head: bytes, now: float) -> None:
        try:
            parse_response(head)
        except NCPError as ex:
            self._fail(ex)
            return
        self.state = State.HANDSHAKE
        self._phase_started = now
        self._events.append(TunnelEstablished())

    def _handshake_field(self, field: FieldReceived) -> None:
        # Anything but the next step (other fields, keep-alives) is dropped.
        if field.packet_type != "LINK":
            return
        handshake = self.handshake
        reply = handshake.receive(field.name, field.params)
        if reply is not None:
            self._send_step(reply)
        if field.name == "SCAR" and reply is not None:
            self._events.append(TimeoutNegotiated(handshake.negotiated or 0))
        elif handshake.expecting == "" and self.state is State.HANDSHAKE:
            self._complete(handshake.negotiated or 0)
            self._events.append(HandshakeComplete(handshake.negotiated or 0, None))


class ServerProtocol(Protocol):
    """
    The server side. Sends ``HELO`` (at once, or once the CONNECT step is accepted), answers
    ``CCRE`` with ``SCAR`` (the negotiated timeout, see :func:`negotiate_timeout`), and ``CARE``
    with ``SCON``.

    :param bool tunnel: Expect the HTTP ``CONNECT`` step first (TLS or authentication).
    :param helo_params: Params of the ``HELO`` field (real nodes send ``NCPV``, ``SEID``, ``MACA``).

    The filters are off by default, as on a server :class:`~ncplib.Connection`. Other parameters
    as in :class:`Protocol`. Issues :exc:`~ncplib.NCPWarning` when the granted timeout differs
    from the client's proposal.

    :raises ValueError: if a ``helo_params`` name or value is invalid.
    :raises TypeError: if a ``helo_params`` value is not one of the supported value types.
    """

    side = Side.SERVER

    def __init__(
        self,
        *,
        tunnel: bool = False,
        helo_params: Mapping[str, Param] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(tunnel=tunnel, **options)
        self.handshake = ServerHandshake(helo_params)
        self._request: TunnelRequest | None = None
        # Bad params fail now, not when a client connects.
        encode_packet("LINK", 1, _utcnow(), b"", [("HELO", 0, self.handshake.helo_params.items())])
        if not tunnel:
            self._send_helo(self._phase_started)

    @property
    def remote_hostname(self) -> str | None:
        """The client's hostname from CCRE ``CIW``, once received (else :data:`None`)."""
        return self.handshake.remote_hostname

    def _send_helo(self, now: float) -> None:
        self._send_step(self.handshake.hello(), now)

    def _head_received(self, head: bytes, now: float) -> None:
        try:
            request = parse_request(head)
        except NCPError as ex:
            self._out.append(encode_response(400))
            self._fail(ex)
            return
        if request.method != "CONNECT":
            self._out.append(encode_response(405))
            self._fail(NetworkError(f"HTTP method {request.method} not allowed"))
            return
        self._request = request
        self._events.append(TunnelRequestReceived(request))

    def accept_tunnel(self, now: float) -> None:
        """
        Answers the CONNECT request with ``200 OK`` and starts the handshake (sends ``HELO``).

        :raises RuntimeError: if no CONNECT request is waiting for an answer.
        """
        if self._request is None or self.state is not State.TUNNEL:
            raise RuntimeError("No CONNECT request to answer")
        self._request = None
        self._out.append(encode_response(200))
        self.state = State.HANDSHAKE
        self._phase_started = now
        self._send_helo(now)

    def reject_tunnel(self) -> None:
        """
        Answers the CONNECT request with ``401 Unauthorized``; the connection then ends with
        :exc:`~ncplib.AuthenticationError`.

        :raises RuntimeError: if no CONNECT request is waiting for an answer.
        """
        if self._request is None or self.state is not State.TUNNEL:
            raise RuntimeError("No CONNECT request to answer")
        self._request = None
        self._out.append(encode_response(401))
        self._fail(AuthenticationError("HTTP 401 Unauthorized"))

    def _handshake_field(self, field: FieldReceived) -> None:
        if field.packet_type != "LINK":
            return
        handshake = self.handshake
        reply = handshake.receive(field.name, field.params)
        if reply is None:
            return
        if reply[0] == "SCAR":
            self._events.append(TimeoutNegotiated(handshake.negotiated or 0))
        self._send_step(reply)
        if handshake.expecting == "":
            self._complete(handshake.negotiated or 0)
            self._events.append(HandshakeComplete(handshake.negotiated or 0, handshake.remote_hostname))
