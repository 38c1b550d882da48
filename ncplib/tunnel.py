"""
HTTP CONNECT tunnel
===================

Before any NCP, a client that authenticates (or uses TLS) sends an HTTP ``CONNECT`` request with
HTTP Basic credentials, and the server answers with an HTTP status line. Only then do NCP packets
flow over the same stream.

This module holds that step for both sides: building and parsing the request and the response
(plain functions on bytes, testable without sockets), and the two coroutines that run the step
over a connection's protocol. Everything the peer sends is bounded: the request or response head
may be at most :data:`MAX_HEAD_SIZE` bytes and :data:`MAX_HEADER_LINES` lines, and must arrive
within the connection timeout.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ncplib._wire import PACKET_HEADER_MAGIC, shown_bytes
from ncplib.errors import AuthenticationError, NetworkError

if TYPE_CHECKING:  # pragma: no cover
    from ncplib._protocol import NCPProtocol

__all__ = [
    "MAX_HEAD_SIZE",
    "MAX_HEADER_LINES",
    "TUNNEL_TARGET",
    "REALM",
    "TunnelRequest",
    "encode_request",
    "parse_request",
    "encode_response",
    "parse_response",
    "check_head_start",
    "client_tunnel",
    "server_tunnel",
]

logger = logging.getLogger(__name__)

#: The largest HTTP head (request or status line plus headers) accepted from a peer, in bytes.
MAX_HEAD_SIZE = 8192
#: The most header lines accepted from a peer.
MAX_HEADER_LINES = 64
#: The target of the CONNECT request.
TUNNEL_TARGET = "ncp.service"
#: The realm named in the ``Proxy-Authenticate`` header of a 401 answer.
REALM = "CRFS RFeye Node"
_SERVER = b"Server: python3-ncplib\r\n"

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}


class TunnelRequest:
    """
    A parsed CONNECT request.

    .. attribute:: method

        The HTTP method, e.g. ``"CONNECT"``.

    .. attribute:: target

        The request target, e.g. ``"ncp.service"``.

    .. attribute:: credentials

        ``(username, password)`` from a valid ``Proxy-Authorization: Basic`` header, else :data:`None`.
    """

    __slots__ = ("credentials", "method", "target")

    def __init__(self, method: str, target: str, credentials: tuple[str, str] | None) -> None:
        self.method = method
        self.target = target
        self.credentials = credentials


def encode_request(username: str, password: str) -> bytes:
    """
    Builds the CONNECT request a client sends.

    :param str username: The username for HTTP Basic authentication.
    :param str password: The password for HTTP Basic authentication.
    :returns: The request head, ending with a blank line.
    """
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"CONNECT {TUNNEL_TARGET} HTTP/1.1\r\nProxy-Authorization: Basic {token}\r\n\r\n".encode("ascii")


def _split_head(head: bytes) -> list[str]:
    if len(head) > MAX_HEAD_SIZE:
        raise NetworkError(f"HTTP head larger than {MAX_HEAD_SIZE} bytes")
    lines = head.decode("latin-1").split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise NetworkError("Empty HTTP head")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise NetworkError(f"More than {MAX_HEADER_LINES} HTTP header lines")
    return lines


def parse_request(head: bytes) -> TunnelRequest:
    """
    Parses the head of a client's CONNECT request.

    :param bytes head: The request line and headers, up to and including the blank line.
    :raises ncplib.NetworkError: if the head is too large or not an HTTP request.
    :returns: The parsed request.
    """
    lines = _split_head(head)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise NetworkError("Invalid HTTP request line")
    credentials: tuple[str, str] | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise NetworkError("Invalid HTTP header line")
        if name.strip().lower() != "proxy-authorization":
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic":
            continue
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        username, sep, password = decoded.partition(":")
        if sep:
            credentials = (username, password)
    return TunnelRequest(parts[0], parts[1], credentials)


def encode_response(status: int) -> bytes:
    """
    Builds the answer a server sends to a CONNECT request.

    :param int status: The HTTP status code: 200, 400, 401 or 405.
    :returns: The response head, ending with a blank line.
    """
    head = f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode("ascii")
    if status == 401:
        head += f'Proxy-Authenticate: Basic realm="{REALM}", charset="utf-8"\r\n'.encode("ascii")
    return head + _SERVER + b"\r\n"


def parse_response(head: bytes) -> None:
    """
    Checks the server's answer to a CONNECT request.

    :param bytes head: The status line and headers, up to and including the blank line.
    :raises ncplib.AuthenticationError: if the server answered ``401 Unauthorized``.
    :raises ncplib.NetworkError: if the head is malformed or the server answered anything else
        but ``200``.
    """
    lines = _split_head(head)
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise NetworkError("Invalid HTTP status line")
    if code == "200":
        return
    message = f"HTTP {code} {reason}".rstrip()
    if code == "401":
        raise AuthenticationError(message)
    raise NetworkError(message)


def check_head_start(head: bytes) -> None:
    """
    Checks the first bytes of what should be an HTTP head, so that a peer that speaks NCP at once
    (a node that does not expect the CONNECT step) is told apart from one still sending its head.

    :param bytes head: The bytes received so far, at least the 4 of a packet header magic.
    :raises ncplib.NetworkError: if they start with the NCP packet header magic, naming what was
        received.
    """
    if head[:4] == PACKET_HEADER_MAGIC:
        raise NetworkError(
            "Peer sent NCP, not an HTTP head: it does not expect the CONNECT step (a username and "
            f"password, or TLS); received {shown_bytes(head)}"
        )


async def client_tunnel(protocol: NCPProtocol, username: str, password: str, timeout: float) -> None:
    """
    Runs the client side of the CONNECT step over ``protocol``.

    :raises ncplib.AuthenticationError: if the server rejected the credentials.
    :raises ncplib.NetworkError: if the server answered badly (with NCP, for a node that does not
        expect the CONNECT step) or the connection failed.
    :raises ncplib.NetworkTimeoutError: if no complete answer came within ``timeout`` seconds.
    """
    protocol.write_raw(encode_request(username, password))
    parse_response(await protocol.read_head(timeout))


async def server_tunnel(
    protocol: NCPProtocol, authenticate: Callable[[str, str], bool] | None, timeout: float
) -> None:
    """
    Runs the server side of the CONNECT step over ``protocol``.

    With ``authenticate`` :data:`None` (TLS without authentication) any credentials are accepted.
    A rejected request is answered (401 or 405) before the error is raised.

    :raises ncplib.AuthenticationError: if the credentials were missing or rejected.
    :raises ncplib.NetworkError: if the request was not a CONNECT request, or the connection failed.
    :raises ncplib.NetworkTimeoutError: if no complete request came within ``timeout`` seconds.
    """
    try:
        request = parse_request(await protocol.read_head(timeout))
    except NetworkError:
        if not protocol.is_closing():
            protocol.write_raw(encode_response(400))
        raise
    if request.method != "CONNECT":
        protocol.write_raw(encode_response(405))
        raise NetworkError(f"HTTP method {request.method} not allowed")
    if authenticate is not None and (request.credentials is None or not authenticate(*request.credentials)):
        protocol.write_raw(encode_response(401))
        raise AuthenticationError("HTTP 401 Unauthorized")
    protocol.write_raw(encode_response(200))
