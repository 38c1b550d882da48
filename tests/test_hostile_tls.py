"""
Hostile peers on the TLS port and on the authentication step (the HTTP CONNECT request).

Servers: ours with authentication, over TLS and over plain TCP, at a 2 s server timeout (the
CONNECT head and the TLS handshake must be done within it). Throughout, a good client
(authenticated, over TLS) sends checked fields and checks every echo. Each hostile peer must be
answered with the right HTTP status or closed promptly, never let in; afterwards nothing is left
behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hostile_peers import Baseline, EchoLoop, packet
from netutil import run, serving

import ncplib
from ncplib import tunnel

pytestmark = pytest.mark.hostile

USER, PASSWORD = "bob", "s3cret"
#: The server's timeout: the CONNECT head and the TLS handshake must be done within it.
SERVER_TIMEOUT = 2
#: The good client's (negotiated) timeout.
TIMEOUT = 5
HOST = "127.0.0.1"
# In debug mode asyncio reports each failed TLS handshake of an incoming connection.
ALLOW = ("Error on transport creation for incoming connection",)


def check_credentials(username: str, password: str) -> bool:
    return (username, password) == (USER, PASSWORD)


@pytest.fixture(scope="module")
def contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts(certificate)


def tls_contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    return server_context, ssl.create_default_context(cafile=str(cert))


class GoodClient:
    """An authenticated client echoing checked fields until :meth:`finish` checks them."""

    def __init__(self, port: int, context: ssl.SSLContext | None) -> None:
        self.port, self.context = port, context

    async def __aenter__(self) -> GoodClient:
        self.connection = await ncplib.connect(
            HOST, self.port, ssl=self.context or False, username=USER, password=PASSWORD, timeout=TIMEOUT
        )
        self.echoes = EchoLoop(self.connection)
        return self

    async def finish(self) -> None:
        await self.echoes.finish(2 * TIMEOUT)

    async def __aexit__(self, *exc: object) -> None:
        await self.echoes.cancel()
        self.connection.close()
        await self.connection.wait_closed()


@contextlib.asynccontextmanager
async def attacked(tls: ssl.SSLContext | None, client_context: ssl.SSLContext | None) -> AsyncIterator[int]:
    """Our authenticating server (over TLS if ``tls``), a good client on it; checks leaks after."""
    async with (
        serving(echo, timeout=SERVER_TIMEOUT, ssl=tls, authenticate=check_credentials) as (_, port),
        GoodClient(port, client_context),
    ):
        pass
    baseline = Baseline()
    async with (
        serving(echo, timeout=SERVER_TIMEOUT, ssl=tls, authenticate=check_credentials) as (_, port),
        GoodClient(port, client_context) as good,
    ):
        yield port
        await good.finish()
    await baseline.check()


async def echo(connection: ncplib.Connection) -> None:
    with contextlib.suppress(ncplib.NCPError):
        async for field in connection:
            field.send(**field)


def basic(value: bytes) -> bytes:
    return b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: " + value + b"\r\n\r\n"


def credentials(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


#: Requests and what the server must answer: an HTTP status, or "closed" (no answer at all).
REQUESTS: dict[str, tuple[bytes, str]] = {
    # Header lines whose total passes MAX_HEAD_SIZE, no blank line: cut off at the limit.
    "head_over_the_limit": (
        b"CONNECT ncp.service HTTP/1.1\r\n" + b"X-Filler: " + b"y" * 90 + b"\r\n" * 2 * tunnel.MAX_HEAD_SIZE,
        "closed",
    ),
    "bad_base64": (basic(b"Basic !!!not base64!!!"), "401"),
    "value_of_12_kib": (basic(b"Basic " + b"A" * 12 * 1024), "closed"),
    "other_scheme": (basic(b'Digest username="bob", response="x"'), "401"),
    "no_header": (b"CONNECT ncp.service HTTP/1.1\r\nHost: x\r\n\r\n", "401"),
    "get": (
        b"GET / HTTP/1.1\r\n" + b"Proxy-Authorization: " + credentials(USER, PASSWORD) + b"\r\n\r\n",
        "405",
    ),
    "binary_garbage": (bytes(range(256)) * 4 + b"\r\n\r\n", "400"),
    "wrong_password": (basic(credentials(USER, "wrong")), "401"),
    "wrong_user": (basic(credentials("alice", PASSWORD)), "401"),
    "empty_password": (basic(credentials(USER, "")), "401"),
    # A rejected request, then the right one on the same connection: never honoured. (The bytes
    # after the head are taken for NCP, found malformed, and the connection closed at once: the
    # 401 is not even sent.)
    "pipelined_after_a_401": (
        basic(credentials(USER, "wrong")) + basic(credentials(USER, PASSWORD)),
        "closed",
    ),
    # NCP straight away, no CONNECT: no blank line ever comes, so the head times out.
    "ncp_without_connect": (packet("LINK", "CCRE", CIW="x", CUSR="", CDOM="", LINK=5), "closed"),
}


async def collect_until_closed(reader: asyncio.StreamReader, deadline: float) -> bytes:
    """Everything the server sends until it closes (or resets); fails if not closed by ``deadline``."""
    loop = asyncio.get_running_loop()
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
        except (ConnectionError, ssl.SSLError):
            return data
        except asyncio.TimeoutError:
            raise AssertionError("the server did not close") from None
        if not chunk:
            return data
        data += chunk


async def exchange(
    port: int, context: ssl.SSLContext | None, request: bytes, *, rate: float | None = None
) -> tuple[bytes, float]:
    """
    Sends ``request`` (``rate`` bytes a second, or at once); returns all the server sent, and
    how long it took to close.
    """
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        if rate is None:
            writer.write(request)
        else:
            for i in range(0, len(request), 2):
                if writer.is_closing() or reader.at_eof():
                    break
                writer.write(request[i : i + 2])
                await asyncio.sleep(2 / rate)
                if reader._buffer or reader.at_eof():  # answered (or closed): stop writing
                    break
        answer = await collect_until_closed(reader, start + 4 * SERVER_TIMEOUT + 2)
        return answer, loop.time() - start
    finally:
        writer.transport.abort()


@pytest.mark.parametrize("over_tls", [True, False], ids=["tls", "plain"])
def test_hostile_connect_requests_are_answered_or_closed_and_never_let_in(
    over_tls: bool, contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = contexts if over_tls else (None, None)
    outcomes: dict[str, str] = {}

    async def attack(port: int, name: str) -> None:
        request, _ = REQUESTS[name]
        answer, _ = await exchange(port, client_context, request)
        outcomes[name] = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
        # Never let in: no 200, and no NCP (a HELO would be the first packet).
        assert b" 200 " not in answer and b"HELO" not in answer, (name, answer[:200])
        assert answer.count(b"HTTP/1.1 ") <= 1, (name, answer)

    async def main() -> None:
        async with attacked(server_context, client_context) as port:
            await asyncio.gather(*(attack(port, name) for name in REQUESTS))
            # A head at 2 bytes a second: closed at the timeout (its first byte starts the clock).
            request = basic(credentials(USER, PASSWORD))
            answer, took = await exchange(port, client_context, request, rate=2)
            assert answer == b"", answer
            outcomes["two_bytes_a_second"] = f"closed after {took:.1f} s"

    run(main, allow=ALLOW)
    print(f"\n{outcomes}")
    assert {name: outcomes[name] for name in REQUESTS} == {name: want for name, (_, want) in REQUESTS.items()}


def test_two_hundred_wrong_passwords_in_a_row_never_get_in(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = contexts
    counts = {"401": 0}

    async def main() -> None:
        async with attacked(server_context, client_context) as port:
            for i in range(200):
                with pytest.raises(ncplib.AuthenticationError):
                    await ncplib.connect(
                        HOST, port, ssl=client_context, username=USER, password=f"guess{i}", timeout=TIMEOUT
                    )
                counts["401"] += 1
            # The right password still works afterwards.
            async with await ncplib.connect(
                HOST, port, ssl=client_context, username=USER, password=PASSWORD, timeout=TIMEOUT
            ) as connection:
                assert (await connection.send("DSPC", "GPS", X=1).recv())["X"] == 1

    run(main, allow=ALLOW)
    assert counts["401"] == 200


async def raw_tls_peer(port: int, first: bytes, *, limit: float) -> tuple[bytes, float]:
    """Opens a TCP connection, sends ``first``, then reads (bounded) until the server closes."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(first)
        loop = asyncio.get_running_loop()
        start = loop.time()
        data = await collect_until_closed(reader, start + limit)
        return data, loop.time() - start
    finally:
        writer.transport.abort()


def client_hello() -> bytes:
    """The first flight of a TLS client (a ClientHello), made with a memory BIO."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_wrong_protocols_on_the_tls_and_plain_ports(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """
    Plain bytes (HTTP, NCP) to the TLS port: closed at once. A ClientHello then silence: closed
    at the TLS handshake timeout. A ClientHello to a plain NCP server: its HELO, then closed as
    soon as the bytes are seen not to be NCP; to a plain authenticating server: closed at the
    timeout (it holds no blank line, so it never completes an HTTP head).
    """
    server_context, client_context = contexts
    hello = client_hello()
    results: dict[str, str] = {}

    async def on_tls_port(port: int) -> None:
        peers: dict[str, Callable[[], Awaitable[tuple[bytes, float]]]] = {
            "plain_connect_to_tls": lambda: raw_tls_peer(port, basic(credentials(USER, PASSWORD)), limit=10),
            "ncp_to_tls": lambda: raw_tls_peer(port, packet("LINK", "CCRE", LINK=5), limit=10),
            "client_hello_then_silence": lambda: raw_tls_peer(port, hello, limit=4 * SERVER_TIMEOUT + 2),
            "silence_on_tls": lambda: raw_tls_peer(port, b"", limit=4 * SERVER_TIMEOUT + 2),
        }
        answers = await asyncio.gather(*(peer() for peer in peers.values()))
        for name, (data, took) in zip(peers, answers, strict=True):
            # Nothing but TLS records (a ServerHello or an alert) ever comes back: no HTTP, no NCP.
            assert b"HTTP/" not in data and b"HELO" not in data, (name, data[:100])
            results[name] = f"closed after {took:.1f} s"

    async def main() -> None:
        async with attacked(server_context, client_context) as port:
            await on_tls_port(port)
        # A ClientHello to plain servers.
        async with serving(echo, timeout=SERVER_TIMEOUT) as (_, port):
            data, took = await raw_tls_peer(port, hello, limit=10)
            assert b"HELO" in data  # the server speaks first, then closes on the bytes it got
            results["client_hello_to_plain_ncp"] = f"closed after {took:.1f} s"
            async with await ncplib.connect(HOST, port, timeout=TIMEOUT) as connection:
                assert (await connection.send("DSPC", "GPS", X=3).recv())["X"] == 3
        async with serving(echo, timeout=SERVER_TIMEOUT, authenticate=check_credentials) as (_, port):
            # No blank line ever ends this "head": closed at the timeout, unanswered.
            data, took = await raw_tls_peer(port, hello, limit=4 * SERVER_TIMEOUT + 2)
            assert data == b"", data[:100]
            results["client_hello_to_plain_auth"] = f"closed after {took:.1f} s"

    run(main, allow=ALLOW)
    print(f"\n{results}")
    assert set(results) == {
        "plain_connect_to_tls",
        "ncp_to_tls",
        "client_hello_then_silence",
        "silence_on_tls",
        "client_hello_to_plain_ncp",
        "client_hello_to_plain_auth",
    }
