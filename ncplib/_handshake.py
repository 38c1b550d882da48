"""
The NCP ``LINK`` handshake and timeout negotiation, for both sides.

server → ``HELO``; client → ``CCRE`` (CIW, CUSR, CDOM, LINK = the client's timeout);
server → ``SCAR`` (LINK = the negotiated timeout); client → ``CARE`` (CAR); server → ``SCON``.
The negotiated timeout is the client's clamped to :data:`MIN_TIMEOUT`..:data:`MAX_TIMEOUT`, or 0
for a legacy client, one that proposed none or proposed 0 (as 6.1.0 does). Both sides then send
keep-alives and time out by it; with 0 each side keeps its own receive timeout and sends a
keep-alive at once, then every 3 seconds.

The rules are those of the sans-IO core (:mod:`ncplib.protocol`): this module only runs the steps
over an asyncio :class:`~ncplib.Connection`, through its public methods, and hands the result to
the connection's :class:`~ncplib.protocol.Link`, which arms its keep-alives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from ncplib.connection import Connection
from ncplib.errors import NetworkTimeoutError
from ncplib.protocol import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    ClientHandshake,
    Link,
    ServerHandshake,
    negotiate_timeout,
)

__all__ = ["MIN_TIMEOUT", "MAX_TIMEOUT", "negotiate_timeout", "client_handshake", "server_handshake"]


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
    connection: Connection, link: Link, handshake: ClientHandshake, timeout: int
) -> None:
    """
    Runs the client side of the handshake (``handshake``, which keeps the node's ``HELO`` for
    :attr:`Connection.helo <ncplib.Connection.helo>`), which must be completed within ``timeout``
    seconds, then establishes ``link`` (the connection's) with the negotiated timeout.

    :raises ncplib.NCPError: if the connection fails or the server sends an error;
        :exc:`ncplib.NetworkTimeoutError` if the handshake is not completed in time.
    """
    await _within(_steps(connection, handshake), timeout)
    link.establish(handshake.negotiated or 0, asyncio.get_running_loop().time())


async def server_handshake(
    connection: Connection, link: Link, *, timeout: int, helo_params: Mapping[str, Any] | None = None
) -> None:
    """
    Runs the server side of the handshake, which must be completed within ``timeout`` seconds,
    then establishes ``link`` (the connection's) with the negotiated timeout. Sets the
    connection's ``remote_hostname`` from CIW.

    :raises ncplib.NCPError: if the connection fails; :exc:`ncplib.NetworkTimeoutError` if the
        handshake is not completed in time.
    """
    handshake = ServerHandshake(helo_params)
    name, params = handshake.hello()
    connection.send("LINK", name, **dict(params))
    await _within(_steps(connection, handshake), timeout)
    link.establish(handshake.negotiated or 0, asyncio.get_running_loop().time())


async def _steps(connection: Connection, handshake: ClientHandshake | ServerHandshake) -> None:
    # Fields other than the next step (other packet types, keep-alives) are dropped.
    while handshake.expecting:
        field = await connection.recv()
        if field.packet_type != "LINK":
            continue
        reply = handshake.receive(field.name, field)
        if isinstance(handshake, ServerHandshake) and handshake.remote_hostname is not None:
            connection.remote_hostname = handshake.remote_hostname
        if reply is not None:
            name, params = reply
            connection.send("LINK", name, **dict(params))
