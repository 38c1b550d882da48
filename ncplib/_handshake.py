"""
The NCP ``LINK`` handshake and timeout negotiation, for both sides.

server → ``HELO``; client → ``CCRE`` (CIW, CUSR, CDOM, LINK = the client's timeout);
server → ``SCAR`` (LINK = the negotiated timeout); client → ``CARE`` (CAR); server → ``SCON``.
The negotiated timeout is the client's clamped to :data:`MIN_TIMEOUT`..:data:`MAX_TIMEOUT`, or 0
for a legacy client, one that proposed none or proposed 0 (as 6.1.0 does). Both sides then send
keep-alives and time out by it; with 0 each side keeps its own receive timeout and sends a
keep-alive at once, then every 3 seconds.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Mapping
from typing import Any

from ncplib.connection import Connection
from ncplib.errors import DecodeWarning, NCPWarning, NetworkTimeoutError

__all__ = ["MIN_TIMEOUT", "MAX_TIMEOUT", "negotiate_timeout", "client_handshake", "server_handshake"]

#: The shortest timeout a server accepts, in seconds.
MIN_TIMEOUT = 5
#: The longest timeout a server accepts, in seconds.
MAX_TIMEOUT = 60


def _as_timeout(value: Any) -> int | None:
    """The value as a non-negative whole number of seconds, or :data:`None` if it is not one."""
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
    timeout = _as_timeout(proposed)
    if timeout is None:
        warnings.warn(DecodeWarning(f"Invalid connection timeout {proposed!r}"), stacklevel=2)
        return 0
    if timeout == 0:
        return 0
    return min(max(timeout, MIN_TIMEOUT), MAX_TIMEOUT)


def _apply(connection: Connection, negotiated: int, own_timeout: int) -> None:
    connection._set_timeout(negotiated if negotiated > 0 else own_timeout)
    connection._start_keepalive(negotiated)


async def _within(steps: Awaitable[None], timeout: int) -> None:
    # The handshake as a whole has the timeout: a peer that keeps sending something other than
    # the next step (fields, keep-alives) must not hold the connection forever.
    if timeout <= 0:
        await steps
        return
    try:
        await asyncio.wait_for(steps, timeout)
    except NetworkTimeoutError:
        raise
    except asyncio.TimeoutError as ex:
        raise NetworkTimeoutError(f"Handshake not completed within {timeout} seconds") from ex


async def client_handshake(
    connection: Connection, *, hostname: str, username: str, domain: str, timeout: int
) -> None:
    """
    Runs the client side of the handshake, which must be completed within ``timeout`` seconds.

    :raises ncplib.NCPError: if the connection fails or the server sends an error;
        :exc:`ncplib.NetworkTimeoutError` if the handshake is not completed in time.
    """
    await _within(_client_steps(connection, hostname, username, domain, timeout), timeout)


async def _client_steps(
    connection: Connection, hostname: str, username: str, domain: str, timeout: int
) -> None:
    helo = await connection.recv_field("LINK", "HELO")
    # Kept for the application (Connection.helo): it names the node.
    connection._helo = dict(helo)
    connection.send("LINK", "CCRE", CIW=hostname, CUSR=username, CDOM=domain, LINK=timeout)
    scar = await connection.recv_field("LINK", "SCAR")
    raw = scar.get("LINK")
    negotiated = 0
    if raw is not None:
        checked = _as_timeout(raw)
        if checked is None:
            warnings.warn(DecodeWarning(f"Invalid connection timeout {raw!r} from server"), stacklevel=2)
        else:
            negotiated = checked
            # 0 is a legacy server's answer, not a change: accepted silently, as 6.1.0 does.
            if negotiated not in (0, timeout):
                warnings.warn(NCPWarning(f"Server changed connection timeout to {negotiated}"), stacklevel=2)
    connection.send("LINK", "CARE", CAR=hostname)
    await connection.recv_field("LINK", "SCON")
    _apply(connection, negotiated, timeout)


async def server_handshake(
    connection: Connection, *, timeout: int, helo_params: Mapping[str, Any] | None = None
) -> None:
    """
    Runs the server side of the handshake, which must be completed within ``timeout`` seconds.
    Sets the connection's ``remote_hostname`` from CIW.

    :raises ncplib.NCPError: if the connection fails; :exc:`ncplib.NetworkTimeoutError` if the
        handshake is not completed in time.
    """
    await _within(_server_steps(connection, timeout, helo_params or {}), timeout)


async def _server_steps(connection: Connection, timeout: int, helo_params: Mapping[str, Any]) -> None:
    connection.send("LINK", "HELO", **helo_params)
    ccre = await connection.recv_field("LINK", "CCRE")
    hostname = ccre.get("CIW")
    if isinstance(hostname, str) and hostname:
        connection.remote_hostname = hostname
    raw = ccre.get("LINK")
    negotiated = negotiate_timeout(raw)
    if raw is not None and negotiated != raw and _as_timeout(raw) is not None:
        warnings.warn(NCPWarning(f"Changed connection timeout from {raw} to {negotiated}"), stacklevel=2)
    connection.send("LINK", "SCAR", LINK=negotiated)
    await connection.recv_field("LINK", "CARE")
    connection.send("LINK", "SCON")
    _apply(connection, negotiated, timeout)
