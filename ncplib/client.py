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
import getpass
import logging
import socket
import ssl as _ssl

from ncplib._handshake import client_handshake
from ncplib._protocol import NCPProtocol
from ncplib.connection import Connection
from ncplib.errors import NetworkError, NetworkTimeoutError
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE
from ncplib.tunnel import client_tunnel

__all__ = ["connect", "default_port"]

logger = logging.getLogger(__name__)

# The CCRE CIW sent when the system has no hostname (the same as 6.1.0's).
_FALLBACK_HOSTNAME = "python3-ncplib"


def default_port(*, ssl: object, authenticate: bool) -> int:
    """
    The port used when none is given: 443 with TLS, 80 with HTTP authentication, else 9999.

    :param ssl: The ``ssl`` argument (anything true means TLS).
    :param bool authenticate: Whether the HTTP CONNECT step with credentials is used.
    :returns: The port number.
    """
    if ssl:
        return 443
    if authenticate:
        return 80
    return 9999


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in this environment (e.g. a container with no user entry)
        return ""


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
    tunnel = bool(ssl) or bool(username) or bool(password)
    if port is None:
        port = default_port(ssl=ssl, authenticate=bool(username or password))
    ssl_context: _ssl.SSLContext | None
    if ssl is True:
        ssl_context = _ssl.create_default_context()
    elif ssl is False:
        ssl_context = None
    else:
        ssl_context = ssl
    if remote_hostname is None:
        remote_hostname = f"{host}:{port}"
    # Empty identities mean the defaults, as in 6.1.0.
    hostname = hostname or socket.gethostname() or _FALLBACK_HOSTNAME
    connection_username = connection_username or _login_name()
    connection_domain = connection_domain or ""
    loop = asyncio.get_running_loop()

    def protocol_factory() -> NCPProtocol:
        return NCPProtocol(max_packet_size=max_packet_size, use_numpy=use_numpy, head_mode=tunnel)

    # Fail on bad arguments before connecting.
    protocol_factory()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
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
    connection = Connection(
        protocol,
        logger=logger,
        remote_hostname=remote_hostname,
        timeout=timeout,
        auto_erro=auto_erro,
        auto_warn=auto_warn,
        auto_ackn=auto_ackn,
    )
    try:
        if tunnel:
            await client_tunnel(protocol, username, password, timeout)
        await client_handshake(
            connection,
            hostname=hostname,
            username=connection_username,
            domain=connection_domain,
            timeout=timeout,
        )
    except BaseException:
        connection.close()
        await connection.wait_closed()
        raise
    return connection
