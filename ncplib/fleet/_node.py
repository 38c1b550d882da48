"""One node of a :class:`~ncplib.Fleet`: its address and the state a user can watch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from ncplib._address import check_host, check_port, split_address

if TYPE_CHECKING:  # pragma: no cover
    from ncplib.connection import Connection
    from ncplib.fleet._error_log import ErrorLog

__all__ = ["Node", "Address", "address_list", "parse_address"]

#: An address as accepted by :class:`~ncplib.Fleet`: ``"host"``, ``"host:port"``,
#: ``"[IPv6]:port"`` or a ``(host, port)`` pair.
Address = str | tuple[str, int]
A = TypeVar("A", bound=Address)


def address_list(addresses: Iterable[A]) -> list[A]:
    """
    The addresses of a fleet as a list.

    :raises TypeError: if ``addresses`` is a string (or bytes), which would otherwise be taken
        as an iterable of one-character addresses.
    """
    if isinstance(addresses, (str, bytes, bytearray)):
        raise TypeError(
            f"addresses must be an iterable of addresses (e.g. a list), not a {type(addresses).__name__}:"
            f" write [{addresses!r}]"
        )
    return list(addresses)


def parse_address(address: Address, default_port: int) -> tuple[str, str, int]:
    """
    Splits an address into its text (as the node's :attr:`Node.address`), host and port.

    A string is read by ``ncplib._address.split_address`` (a bare IPv6 address is a host without
    a port); a pair's host is a host name or an IP address, IPv6 without brackets.

    :raises ValueError: if the address is not one of those forms, its host is empty or not a host
        name or IP address, or its port is not a number from 1 to 65535.
    :raises TypeError: if ``address`` is neither a string nor a ``(host, port)`` pair, or a
        pair's port is not an :class:`int` (write ``"host:port"`` for a port as text).
    :returns: ``(text, host, port)``.
    """
    if isinstance(address, tuple):
        if len(address) != 2 or not isinstance(address[0], str):
            raise TypeError(f"an address pair is (host, port), not {address!r}")
        host, port = address
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"the port of an address pair is an int, not {type(port).__name__}: {address!r}")
        check_host(host, address)
        check_port(port, address)
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return text, host, port
    if isinstance(address, str):
        text = address.strip()
        host, port = split_address(text, default_port)
        return text, host, port
    raise TypeError(f"an address is a str or a (host, port) pair, not {type(address).__name__}")


class Node:
    """
    One node of a :class:`~ncplib.Fleet`, the same object across reconnects.

    Read its attributes to watch the fleet; do not set them.
    """

    # A dict: its values document each attribute (for help() and Sphinx).
    __slots__ = {  # noqa: RUF023 - in reading order
        "_connection": "",
        "_ended": "",
        "_error_log": "",
        "_idle_since": "",
        "_logged": "",
        "_lost_reason": "",
        "_on_data": "",
        "_queued": "",
        "_was_connected": "",
        "address": 'The address as given to the fleet (a ``(host, port)`` pair as ``"host:port"``).',
        "host": "The host name or IP address connected to (:class:`str`).",
        "port": "The TCP port connected to (:class:`int`).",
        "fields": "The number of fields delivered from this node so far, over all its connections.",
        "attempts": "How many connection attempts were made, successful or not (:class:`int`).",
        "reconnects": "How many times the node connected again after its first connection.",
        "last_error": (
            "The last exception met by this node: why a connection attempt failed or a connection"
            " ended (:exc:`~ncplib.ConnectionClosed` when the node closed it,"
            " :exc:`~ncplib.NetworkError`, :exc:`~ncplib.NetworkTimeoutError`,"
            " :exc:`~ncplib.AuthenticationError`, :exc:`~ncplib.DecodeError`, ...) or the"
            " :exc:`~ncplib.CommandError` of a field the node sent (or its"
            " :exc:`~ncplib.CommandWarning`, where a warnings filter makes it an error)."
            " :data:`None` until one"
            " happens; kept after a successful reconnect (compare :attr:`changed`)."
        ),
        "changed": (
            "When :attr:`connected` last changed (the node connected, or its connection was"
            " lost), or when the fleet started if it never did: Unix time in seconds"
            " (:func:`time.time`). A failed attempt to reconnect a node that is already down does"
            " not move it, so it tells since when a node is up or down (see :attr:`last_attempt`)."
        ),
        "last_attempt": (
            "When the last connection attempt began, successful or not: Unix time in seconds"
            " (:func:`time.time`); :data:`None` before the first."
        ),
        "retry_delay": (
            "The delay in seconds before the pending reconnection attempt (0.0 when none is pending)."
        ),
    }

    def __init__(self, address: str, host: str, port: int) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.fields = 0
        self.attempts = 0
        self.reconnects = 0
        self.last_error: BaseException | None = None
        self.changed = time.time()
        self.last_attempt: float | None = None
        self.retry_delay = 0.0
        self._connection: Connection | None = None
        # Set when the current connection ended, to the reason; awaited by the node's task.
        self._ended: asyncio.Future[BaseException] | None = None
        # Why the fleet itself closed the connection (a silent node), reported instead of the
        # ConnectionClosed that the close causes.
        self._lost_reason: BaseException | None = None
        # The fleet's merger: whether the node waits in the ready ring, since when it has had
        # nothing left to read (loop time), and the callback the protocol calls on data.
        self._queued = False
        self._idle_since = 0.0
        self._on_data: Callable[[], None] | None = None
        # What to log of the errors the node reports (ERRO fields), made at the first.
        self._error_log: ErrorLog | None = None
        # The description of the last error logged at warning level (logged once per change).
        self._logged: str | None = None
        # The value of ``connected`` when ``changed`` was last set.
        self._was_connected = False

    @property
    def connection(self) -> Connection | None:
        """
        The current :class:`~ncplib.Connection`, or :data:`None` between connections. Send with
        it if you like; never receive from it (the fleet does).
        """
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether the node has a connection that is open (handshake done, subscriptions sent)."""
        connection = self._connection
        ended = self._ended
        if connection is None or ended is None:
            return False
        return not connection.is_closing() and not ended.done()

    def _note_state(self) -> None:
        # Moves ``changed`` if ``connected`` changed since it was last set.
        connected = self.connected
        if connected != self._was_connected:
            self._was_connected = connected
            self.changed = time.time()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Node {self.address!r} {state} fields={self.fields} reconnects={self.reconnects}>"
