"""The HTTP CONNECT step: authentication, TLS, and hostile or broken peers during it."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from netutil import LOOPS, packet_bytes, raw_server, run, serving

import ncplib
from ncplib import tunnel


async def echo(connection: ncplib.Connection) -> None:
    async for field in connection:
        field.send(**field)


def check_credentials(username: str, password: str) -> bool:
    return (username, password) == ("bob", "s3cret:with colon")


# Sans-IO parsing.


def test_request_bytes() -> None:
    assert tunnel.encode_request("bob", "pw") == (
        b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Basic Ym9iOnB3\r\n\r\n"
    )
    assert (
        tunnel.encode_request("", "")
        == b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Basic Og==\r\n\r\n"
    )


def test_parse_request_round_trip() -> None:
    request = tunnel.parse_request(tunnel.encode_request("bob", "s3cret:with colon"))
    assert (request.method, request.target) == ("CONNECT", "ncp.service")
    assert request.credentials == ("bob", "s3cret:with colon")


@pytest.mark.parametrize(
    "head",
    [
        b"CONNECT ncp.service HTTP/1.1\r\n\r\n",
        b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n",
        b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Bearer Ym9iOnB3\r\n\r\n",
        b"CONNECT ncp.service HTTP/1.1\r\nProxy-Authorization: Basic Ym9i\r\n\r\n",
    ],
)
def test_parse_request_without_usable_credentials(head: bytes) -> None:
    assert tunnel.parse_request(head).credentials is None


@pytest.mark.parametrize(
    "head",
    [b"\r\n\r\n", b"garbage\r\n\r\n", b"CONNECT x HTTP/1.1\r\nno colon\r\n\r\n", b"X" * 9000 + b"\r\n\r\n"],
)
def test_parse_request_rejects_malformed_heads(head: bytes) -> None:
    with pytest.raises(ncplib.NetworkError):
        tunnel.parse_request(head)


def test_parse_request_limits_header_lines() -> None:
    head = b"CONNECT x HTTP/1.1\r\n" + b"A: b\r\n" * (tunnel.MAX_HEADER_LINES + 1) + b"\r\n"
    with pytest.raises(ncplib.NetworkError):
        tunnel.parse_request(head)


def test_parse_response() -> None:
    tunnel.parse_response(tunnel.encode_response(200))
    with pytest.raises(ncplib.AuthenticationError, match=r"^HTTP 401 Unauthorized$"):
        tunnel.parse_response(tunnel.encode_response(401))
    with pytest.raises(ncplib.NetworkError, match=r"^HTTP 405 Method Not Allowed$"):
        tunnel.parse_response(tunnel.encode_response(405))
    with pytest.raises(ncplib.NetworkError):
        tunnel.parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert b'Proxy-Authenticate: Basic realm="' in tunnel.encode_response(401)


# Over sockets.


@pytest.mark.parametrize("loop", LOOPS)
def test_authentication_success(loop: str) -> None:
    async def main() -> None:
        async with serving(echo, authenticate=check_credentials) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, username="bob", password="s3cret:with colon")
            async with connection:
                assert (await connection.send("DSPC", "SWEP", X=1).recv())["X"] == 1

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_authentication_failure(loop: str) -> None:
    async def main() -> None:
        async with serving(echo, authenticate=check_credentials) as (_, port):
            with pytest.raises(ncplib.AuthenticationError, match=r"^HTTP 401 Unauthorized$"):
                await ncplib.connect("127.0.0.1", port, username="bob", password="wrong")
            # A client that skips the CONNECT step gets a 401 too (its NCP bytes are no request).
            with pytest.raises(ncplib.NCPError):
                await ncplib.connect("127.0.0.1", port, timeout=1)

    run(main, loop=loop)


def test_server_answers_raw_requests() -> None:
    async def exchange(port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        try:
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            await writer.wait_closed()

    async def main() -> None:
        async with serving(echo, authenticate=check_credentials) as (_, port):
            assert (await exchange(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
            answer = await exchange(port, b"CONNECT ncp.service HTTP/1.1\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
            assert b"Proxy-Authenticate: Basic realm=" in answer
            # An endless header line is cut off at the size limit: the server hangs up.
            try:
                await exchange(port, b"CONNECT " + b"x" * 20000)
            except ConnectionResetError:
                pass
            # A head that is not HTTP gets a 400.
            assert (await exchange(port, b"\x00\x01\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            good = tunnel.encode_request("bob", "s3cret:with colon")
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(good)
            assert await reader.readuntil(b"\r\n\r\n") == tunnel.encode_response(200)
            writer.close()
            await writer.wait_closed()

    run(main)


def test_server_times_out_a_silent_tunnel_client() -> None:
    async def main() -> None:
        async with serving(echo, authenticate=check_credentials, timeout=1) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"CONNECT ncp.service HTTP/1.1\r\n")  # ... and never the rest.
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await writer.wait_closed()

    run(main)


def test_client_rejects_an_oversized_answer() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 100000)
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises(ncplib.NetworkError, match="larger than"):
                await ncplib.connect("127.0.0.1", port, username="a", password="b", timeout=5)

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_credentials_against_a_plain_ncp_server_say_it_answered_with_ncp(loop: str) -> None:
    async def main() -> None:
        async with serving(echo) as (_, port):
            with pytest.raises(ncplib.NetworkError) as caught:
                await ncplib.connect("127.0.0.1", port, username="bob", password="s3cret", timeout=5)
        message = str(caught.value)
        assert message.startswith("Peer sent NCP, not an HTTP head: it does not expect the CONNECT step")
        # What was received: the server's HELO, from its packet header magic on.
        assert "received ddccbbaa" in message
        assert not isinstance(caught.value, ncplib.NetworkTimeoutError)

    run(main, loop=loop)


def test_credentials_against_a_node_that_sends_helo_and_waits_fail_at_once() -> None:
    # A node that ignores the CONNECT request instead of hanging up: the HELO alone tells.
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(packet_bytes("LINK", [("HELO", 1, {"SEID": "node-1"})]))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises(
                ncplib.NetworkError, match=r"^Peer sent NCP, not an HTTP head.*ddccbbaa"
            ) as caught:
                await ncplib.connect("127.0.0.1", port, username="a", password="b", timeout=20)
            assert not isinstance(caught.value, ncplib.NetworkTimeoutError)

    run(main)


def test_client_times_out_when_the_answer_does_not_come() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            with pytest.raises(ncplib.NetworkTimeoutError):
                await ncplib.connect("127.0.0.1", port, username="a", password="b", timeout=1)

    run(main)


def test_default_ports() -> None:
    from ncplib.client import default_port

    assert default_port(ssl=False, authenticate=False) == 9999
    assert default_port(ssl=False, authenticate=True) == 80
    assert default_port(ssl=True, authenticate=True) == 443
    assert default_port(ssl=ssl.create_default_context(), authenticate=False) == 443


# TLS, with a self-signed certificate made for the test run.


def _contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    return server_context, client_context


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("loop", LOOPS)
def test_tls(loop: str, host: str, certificate: tuple[Path, Path]) -> None:
    # By name, the certificate is checked against the name (also where the client looks the
    # name up itself and connects to the address found).
    server_context, client_context = _contexts(certificate)

    async def main() -> None:
        async with serving(echo, ssl=server_context) as (_, port):
            connection = await ncplib.connect(host, port, ssl=client_context)
            async with connection:
                ssl_object = connection.transport.get_extra_info("ssl_object")
                assert ssl_object is not None and ssl_object.server_hostname == host
                assert (await connection.send("DSPC", "SWEP", X=1).recv())["X"] == 1

    run(main, loop=loop)


def test_tls_with_authentication(certificate: tuple[Path, Path]) -> None:
    server_context, client_context = _contexts(certificate)

    async def main() -> None:
        async with serving(echo, ssl=server_context, authenticate=check_credentials) as (_, port):
            with pytest.raises(ncplib.AuthenticationError):
                await ncplib.connect("127.0.0.1", port, ssl=client_context, username="bob", password="x")
            connection = await ncplib.connect(
                "127.0.0.1", port, ssl=client_context, username="bob", password="s3cret:with colon"
            )
            async with connection:
                assert (await connection.send("DSPC", "SWEP", X=2).recv())["X"] == 2

    run(main)


def test_tls_verifies_the_server_by_default(certificate: tuple[Path, Path]) -> None:
    server_context, _ = _contexts(certificate)

    async def main() -> None:
        async with serving(echo, ssl=server_context) as (_, port):
            with pytest.raises(ncplib.NetworkError):
                await ncplib.connect("127.0.0.1", port, ssl=True, timeout=10)

    # In debug mode asyncio reports the failed handshake of the rejected client on the server side.
    run(main, allow=("Error on transport creation for incoming connection",))


def test_authenticate_raising_is_logged_and_the_client_refused(caplog: pytest.LogCaptureFixture) -> None:
    def broken(username: str, password: str) -> bool:
        raise RuntimeError("credential store down")

    async def main() -> None:
        async with serving(echo, authenticate=broken) as (_, port):
            with pytest.raises(ncplib.NCPError):
                await ncplib.connect("127.0.0.1", port, username="bob", password="pw", timeout=5)

    run(main)
    errors = [r for r in caplog.records if r.name == "ncplib.server" and r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
