"""
NCP client
==========

Connect to a NCP server with :func:`connect`. The returned :class:`~ncplib.Connection` closes
when its ``async with`` block exits::

    import ncplib

    async with await ncplib.connect("127.0.0.1", 9999) as connection:
        response = connection.send("DSPC", "TIME", SAMP=1024, FCTR=1200)
        field = await response.recv()
        print(field["TSDC"])
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl as _ssl
from collections.abc import Callable

from ncplib._handshake import client_handshake
from ncplib._protocol import NCPProtocol
from ncplib.connection import Connection
from ncplib.errors import NetworkError, NetworkTimeoutError
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE
from ncplib.protocol import ClientHandshake, Link, client_endpoint, client_identity, default_port
from ncplib.tunnel import client_tunnel

__all__ = ["connect", "default_port"]

logger = logging.getLogger(__name__)


async def connect(
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
    Connects to a NCP server.

    :param str host: The hostname of the NCP server. This can be an IP address or domain name.
    :param int port: The port number of the NCP server. Defaults to 9999; 443 with ``ssl``; 80
        with ``username`` or ``password``.
    :param str remote_hostname: The identifying hostname for the remote end of the connection.
        If omitted, this will be the host:port of the NCP server.
    :param str hostname: The identifying hostname in the client connection (CCRE ``CIW``).
        Defaults to the system hostname; an empty string also means the default, as in 6.1.0.
    :param str connection_username: The identifying username in the client connection (CCRE
        ``CUSR``). Defaults to the login name of the system user; an empty string also means
        the default, as in 6.1.0.
    :param str connection_domain: The identifying domain in the client connection (CCRE
        ``CDOM``); :data:`None` sends an empty one, as the default does.
    :param int timeout: The network timeout (in seconds). Applies to: connecting, receiving a
        packet, closing connection. It is proposed to the server, which may change it.
    :param bool auto_erro: Automatically raise a :exc:`~ncplib.CommandError` on receiving an
        ``ERRO`` (or ``ERRC``) NCP parameter; fields named ``ERRO`` are not delivered.
    :param bool auto_warn: Automatically issue a :exc:`~ncplib.CommandWarning` on receiving a
        ``WARN`` (or ``WARC``) NCP parameter; fields named ``WARN`` are not delivered.
    :param bool auto_ackn: Automatically ignore NCP fields containing an ``ACKN`` NCP parameter.
    :param ssl: Connect to the node over TLS: :data:`True` for a default (verifying)
        :class:`ssl.SSLContext`, or a context of your own.
    :param str username: Authenticate with the node using the given username.
    :param str password: Authenticate with the node using the given password.
    :param bool use_numpy: Decode data params as read-only :class:`numpy.ndarray` views of the
        received packet instead of :class:`array.array` copies (needs numpy).
    :param int max_packet_size: The largest packet accepted from the server, in bytes. A larger
        one makes :meth:`~ncplib.Connection.recv` raise :exc:`~ncplib.DecodeError` and closes the
        connection, before any memory is set aside for it.
    :raises ncplib.NCPError: if the NCP connection failed: :exc:`~ncplib.NetworkError` if the
        server cannot be reached, :exc:`~ncplib.NetworkTimeoutError` if it does not answer in
        time, :exc:`~ncplib.AuthenticationError` if it rejects the credentials,
        :exc:`~ncplib.CommandError` if it answers the handshake with an error.
    :raises ValueError: if ``max_packet_size`` is too small.
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    :returns: The client :class:`~ncplib.Connection`.
    """
    port, ssl_context, credentials, remote_hostname = client_endpoint(
        host, port, ssl=ssl, username=username, password=password, remote_hostname=remote_hostname
    )
    tunnel = credentials is not None
    # Empty identities mean the defaults, as in 6.1.0.
    hostname, connection_username, connection_domain = client_identity(
        hostname, connection_username, connection_domain
    )
    loop = asyncio.get_running_loop()

    def protocol_factory() -> NCPProtocol:
        return NCPProtocol(max_packet_size=max_packet_size, use_numpy=use_numpy, head_mode=tunnel)

    # Fail on bad arguments before connecting.
    protocol_factory()
    try:
        _, protocol = await asyncio.wait_for(
            _create_connection(
                loop,
                protocol_factory,
                host,
                port,
                ssl=ssl_context,
                ssl_handshake_timeout=timeout if ssl_context is not None and timeout > 0 else None,
            ),
            timeout,
        )
    except asyncio.TimeoutError as ex:
        raise NetworkTimeoutError(f"Timed out connecting to {remote_hostname}") from ex
    except OSError as ex:
        raise NetworkError(f"Could not connect to {remote_hostname}: {ex}") from ex
    logger.info("Connected to %s over NCP", remote_hostname)
    link = Link(timeout, loop.time())
    handshake = ClientHandshake(hostname, connection_username, connection_domain, timeout)
    connection = Connection(
        protocol,
        logger=logger,
        remote_hostname=remote_hostname,
        timeout=timeout,
        auto_erro=auto_erro,
        auto_warn=auto_warn,
        auto_ackn=auto_ackn,
        link=link,
        handshake=handshake,
    )
    try:
        if tunnel:
            await client_tunnel(protocol, username, password, timeout)
        await client_handshake(connection, link, handshake, timeout)
    except BaseException:
        connection.close()
        await connection.wait_closed()
        raise
    return connection


async def _create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], NCPProtocol],
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None,
    ssl_handshake_timeout: float | None,
) -> tuple[asyncio.BaseTransport, NCPProtocol]:
    """
    ``loop.create_connection()``, resolving the host name first where the loop is not asyncio's own.

    uvloop's ``create_connection`` leaves the future of its name lookup behind when it is
    cancelled (a timeout, a closing fleet) during the lookup: if the name then fails to resolve,
    asyncio logs "Future exception was never retrieved" (MagicStack/uvloop#437). A cancelled
    ``loop.getaddrinfo()`` leaves nothing, so there the name is looked up with it, and the
    addresses found are tried in turn, as ``create_connection`` does. asyncio's own loops, and
    IP addresses, go straight to ``create_connection``.

    :raises OSError: as ``create_connection``: :exc:`socket.gaierror` if the name does not
        resolve, the error of the only address tried, or an :exc:`OSError` naming the error of
        each address tried.
    """
    if isinstance(loop, asyncio.BaseEventLoop) or _is_ip_address(host):
        return await loop.create_connection(
            protocol_factory, host, port, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout
        )
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo() returned no address for {host!r}")
    errors: list[OSError] = []
    for _family, _type, _proto, _name, address in infos:
        try:
            return await loop.create_connection(
                protocol_factory,
                str(address[0]),
                port,
                ssl=ssl,
                # The certificate is checked against the name asked for, not the address.
                server_hostname=host if ssl is not None else None,
                ssl_handshake_timeout=ssl_handshake_timeout,
            )
        except OSError as ex:
            errors.append(ex)
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(ex) for ex in errors)}")


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True
