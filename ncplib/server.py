"""
NCP server
==========

A connection handler is a coroutine function started for each client once the handshake is
done. It receives a :class:`~ncplib.Connection`; the connection closes when the handler returns::

    async def client_connected(connection):
        async for field in connection:
            if field.packet_type == "DSPC" and field.name == "TIME":
                field.send(ACKN=1)
                field.send(TSDC=0, TIMM=1)
            else:
                field.send(ERRO="Unknown command", ERRC=400)
                break

    server = await ncplib.start_server(client_connected, "0.0.0.0", 9999)
    async with server:
        await server.serve_forever()

If the handler raises an :exc:`~ncplib.NCPError` the server logs a warning and replies with a
``LINK`` ``ERRO`` field (``ERRO="Bad request"``, ``ERRC=400``); for any other exception it logs
the traceback and replies ``ERRO="Server error"``, ``ERRC=500``. Then it closes the connection.

Closing the server (``server.close()``, then ``await server.wait_closed()``) also cancels the
handlers of connected clients and waits for them and their connections to finish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ncplib._handshake import server_handshake
from ncplib._protocol import NCPProtocol
from ncplib.client import default_port
from ncplib.connection import Connection
from ncplib.errors import NCPError, NetworkError, NetworkTimeoutError
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE
from ncplib.packets import Param, encode_packet
from ncplib.protocol import Link
from ncplib.tunnel import server_tunnel

__all__ = ["start_server", "Server"]

logger = logging.getLogger(__name__)

Handler = Callable[[Connection], Awaitable[None]]


class _ConnectionLimit:
    """
    At most ``maximum`` connections served at once (:data:`None`: no limit). Refusals are logged
    once per burst: a warning at the first, and their count once a connection is admitted again
    (or the server closes).
    """

    __slots__ = ("maximum", "refused")

    def __init__(self, maximum: int | None) -> None:
        self.maximum = maximum
        self.refused = 0

    def admit(self, serving: int, peer: str) -> bool:
        """Whether a new connection may be served while ``serving`` others are."""
        if self.maximum is None or serving < self.maximum:
            self.end_burst()
            return True
        if not self.refused:
            logger.warning(
                "Refusing connections (first from %s): %d connections served, the maximum",
                peer,
                self.maximum,
            )
        self.refused += 1
        return False

    def end_burst(self) -> None:
        if self.refused:
            logger.warning("Refused %d connections over the maximum of %d", self.refused, self.maximum)
            self.refused = 0


class _Handlers:
    """The running connection tasks of one server."""

    __slots__ = ("limit", "tasks")

    def __init__(self, limit: _ConnectionLimit) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.limit = limit

    def add(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        self.limit.end_burst()
        for task in self.tasks:
            task.cancel()

    async def wait(self) -> None:
        # Not "while self.tasks": a finished task leaves the set in a callback that runs only
        # once we yield, and awaiting finished tasks does not yield.
        while True:
            pending = [task for task in self.tasks if not task.done()]
            if not pending:
                return
            await asyncio.wait(pending)


class Server(asyncio.AbstractServer):
    """
    The server :func:`start_server` returns, on every event loop (asyncio's, uvloop): the event
    loop's own server, by delegation, whose ``close`` and ``wait_closed`` also end the
    connections it accepted.
    """

    def __init__(self, server: asyncio.AbstractServer, handlers: _Handlers) -> None:
        self._server = server
        self._ncp_handlers = handlers

    def close(self) -> None:
        self._server.close()
        self._ncp_handlers.cancel()

    async def wait_closed(self) -> None:
        await self._ncp_handlers.wait()
        await self._server.wait_closed()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        try:
            await self._server.serve_forever()
        finally:
            self.close()
            await self.wait_closed()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (see :attr:`asyncio.Server.sockets`)."""
        return tuple(self._server.sockets)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


async def _serve(
    protocol: NCPProtocol,
    client_connected: Handler,
    *,
    timeout: int,
    tunnel: bool,
    authenticate: Callable[[str, str], bool] | None,
    helo_params: Mapping[str, Param],
) -> None:
    transport = protocol.transport
    assert transport is not None
    remote_hostname = _format_address(transport.get_extra_info("peername"))
    logger.info("Connected to %s over NCP", remote_hostname)
    link = Link(timeout, asyncio.get_running_loop().time())
    connection = Connection(
        protocol, logger=logger, remote_hostname=remote_hostname, timeout=timeout, link=link
    )
    try:
        if tunnel:
            try:
                await server_tunnel(protocol, authenticate, timeout)
            except NCPError as ex:
                logger.warning("Connection error from %s over NCP: %s", connection.remote_hostname, ex)
                return
            except Exception:  # from authenticate(): no NCP yet, so no ERRO field to send
                logger.exception("Unexpected error from %s over NCP", connection.remote_hostname)
                return
        try:
            await server_handshake(connection, link, timeout=timeout, helo_params=helo_params)
            await client_connected(connection)
        except NCPError as ex:
            logger.warning("Connection error from %s over NCP: %s", connection.remote_hostname, ex)
            connection.send("LINK", "ERRO", ERRO="Bad request", ERRC=400)
        except Exception:
            logger.exception("Unexpected error from %s over NCP", connection.remote_hostname)
            connection.send("LINK", "ERRO", ERRO="Server error", ERRC=500)
    finally:
        connection.close()
        await connection.wait_closed()


async def start_server(
    client_connected: Handler,
    host: str = "0.0.0.0",
    port: int | None = None,
    *,
    timeout: int = 60,
    start_serving: bool = True,
    ssl: _ssl.SSLContext | None = None,
    authenticate: Callable[[str, str], bool] | None = None,
    use_numpy: bool = False,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    helo_params: Mapping[str, Param] | None = None,
    max_connections: int | None = None,
) -> Server:
    """
    Creates and returns a new server on the given host and port.

    :param client_connected: A coroutine function taking a single :class:`~ncplib.Connection`
        argument representing the client connection. When the connection handler exits, the
        connection closes. If the client closes the connection, the connection handler will exit.
    :param str host: The host to bind the server to.
    :param int port: The port to bind the server to. Defaults to 9999; 443 with ``ssl``; 80 with
        ``authenticate``. Use 0 for any free port (see ``server.sockets``).
    :param int timeout: The network timeout (in seconds). Applies to: creating server, receiving
        a packet, closing connection, closing server. Clients negotiate their own timeout within
        5 to 60 seconds, which then applies to receiving.
    :param bool start_serving: Causes the created server to start accepting connections
        immediately.
    :param ssl.SSLContext ssl: Start the server using an encrypted (TLS) connection. Clients then
        send the HTTP CONNECT request too.
    :param authenticate: A callable taking a username and password argument, returning
        :data:`True` if the authentication is successful, and false if not. When present,
        authentication is mandatory.
    :param bool use_numpy: Decode data params as read-only :class:`numpy.ndarray` views of the
        received packet instead of :class:`array.array` copies (needs numpy).
    :param int max_packet_size: The largest packet accepted from a client, in bytes. A larger
        one makes :meth:`~ncplib.Connection.recv` raise :exc:`~ncplib.DecodeError` and closes the
        connection, before any memory is set aside for it.
    :param helo_params: NCP params for the ``HELO`` field that opens the handshake. Real nodes
        announce themselves there (e.g. ``NCPV``, ``SEID``, ``MACA`` strings); by default the
        field has no params, like the reference server's.
    :param int max_connections: The most connections served at once; :data:`None` (the default,
        as in ncplib 6.1.0) for no limit. A connection over the limit is closed as soon as it is
        accepted, before any NCP, and the server logs one warning when such a burst starts and
        one with the number refused when it ends. A connection counts from the moment it is
        accepted (with ``ssl``: once its TLS handshake is done; handshakes in progress end at
        ``timeout``) until it is closed.
    :raises ncplib.NetworkError: if the server cannot listen on the host and port.
    :raises ncplib.NetworkTimeoutError: if creating the server takes longer than ``timeout``.
    :raises ValueError: if ``max_packet_size`` is too small, ``max_connections`` is less than 1,
        or a ``helo_params`` name or value is invalid.
    :raises TypeError: if a ``helo_params`` value is not one of the supported value types.
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    :returns: The created :class:`Server`, an :class:`asyncio.AbstractServer` with the attributes of the
        event loop's own (such as ``sockets``, ``serve_forever`` and use as an async context
        manager), on every event loop. Its ``close`` and ``wait_closed`` also end the
        connections it accepted.
    """
    tunnel = ssl is not None or authenticate is not None
    if port is None:
        port = default_port(ssl=ssl, authenticate=authenticate is not None)
    loop = asyncio.get_running_loop()
    # Fail on bad arguments before listening.
    if max_connections is not None and max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, not {max_connections}")
    limit = _ConnectionLimit(max_connections)
    handlers = _Handlers(limit)
    NCPProtocol(max_packet_size=max_packet_size, use_numpy=use_numpy)
    helo = dict(helo_params or {})
    encode_packet("LINK", 1, datetime.now(timezone.utc), b"", [("HELO", 0, helo.items())])

    def protocol_factory() -> NCPProtocol:
        protocol = NCPProtocol(max_packet_size=max_packet_size, use_numpy=use_numpy, head_mode=tunnel)

        def on_made() -> None:
            transport = protocol.transport
            assert transport is not None
            if not limit.admit(len(handlers.tasks), _format_address(transport.get_extra_info("peername"))):
                transport.abort()
                return
            handlers.add(
                loop.create_task(
                    _serve(
                        protocol,
                        client_connected,
                        timeout=timeout,
                        tunnel=tunnel,
                        authenticate=authenticate,
                        helo_params=helo,
                    )
                )
            )

        protocol.on_made = on_made
        return protocol

    try:
        server = await asyncio.wait_for(
            loop.create_server(
                protocol_factory,
                host,
                port,
                ssl=ssl,
                start_serving=start_serving,
                # A client stuck in the TLS handshake holds no task of ours to cancel on close.
                ssl_handshake_timeout=timeout if ssl is not None and timeout > 0 else None,
            ),
            timeout,
        )
    except asyncio.TimeoutError as ex:
        raise NetworkTimeoutError(f"Timed out listening on {host}:{port}") from ex
    except OSError as ex:
        raise NetworkError(f"Could not listen on {host}:{port}: {ex}") from ex
    for sock in server.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            address = sock.getsockname()
            logger.info("Listening on %s:%s over NCP", address[0], address[1])
    return Server(server, handlers)
