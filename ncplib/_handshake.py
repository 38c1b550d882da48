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
from ncplib.protocol import MAX_TIMEOUT, MIN_TIMEOUT, Link, accept_timeout, grant_timeout, negotiate_timeout

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
    connection: Connection, link: Link, *, hostname: str, username: str, domain: str, timeout: int
) -> None:
    """
    Runs the client side of the handshake, which must be completed within ``timeout`` seconds,
    then establishes ``link`` (the connection's) with the negotiated timeout.

    :raises ncplib.NCPError: if the connection fails or the server sends an error;
        :exc:`ncplib.NetworkTimeoutError` if the handshake is not completed in time.
    """
    await _within(_client_steps(connection, link, hostname, username, domain, timeout), timeout)


async def _client_steps(
    connection: Connection, link: Link, hostname: str, username: str, domain: str, timeout: int
) -> None:
    await connection.recv_field("LINK", "HELO")
    connection.send("LINK", "CCRE", CIW=hostname, CUSR=username, CDOM=domain, LINK=timeout)
    scar = await connection.recv_field("LINK", "SCAR")
    negotiated = accept_timeout(scar.get("LINK"), timeout)
    connection.send("LINK", "CARE", CAR=hostname)
    await connection.recv_field("LINK", "SCON")
    link.establish(negotiated, asyncio.get_running_loop().time())


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
    await _within(_server_steps(connection, link, helo_params or {}), timeout)


async def _server_steps(connection: Connection, link: Link, helo_params: Mapping[str, Any]) -> None:
    connection.send("LINK", "HELO", **helo_params)
    ccre = await connection.recv_field("LINK", "CCRE")
    hostname = ccre.get("CIW")
    if isinstance(hostname, str) and hostname:
        connection.remote_hostname = hostname
    negotiated = grant_timeout(ccre.get("LINK"))
    connection.send("LINK", "SCAR", LINK=negotiated)
    await connection.recv_field("LINK", "CARE")
    connection.send("LINK", "SCON")
    link.establish(negotiated, asyncio.get_running_loop().time())
