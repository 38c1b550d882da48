"""The LINK handshake: bytes against the captured vectors, timeout negotiation and its warnings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from netutil import packet_bytes, raw_handshake, raw_server, read_packet, run, serving
from vectors import VECTORS

import ncplib
from ncplib import _handshake

HANDSHAKE = json.loads((VECTORS / "handshake.json").read_text())


def _vector(sender: str, field_name: str) -> bytes:
    for packet in HANDSHAKE:
        if packet["from"] == sender and packet["fields"] and packet["fields"][0][0] == field_name:
            return bytes.fromhex(packet["wire_hex"])
    raise AssertionError(field_name)


def _masked(wire: bytes) -> bytes:
    """The packet without its timestamp, info word and (first) field id, which differ per run."""
    data = bytearray(wire)
    data[20:32] = bytes(12)
    if len(data) > 40:
        data[40:44] = bytes(4)
    return bytes(data)


async def _read_raw(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(12)
    return header + await reader.readexactly(int.from_bytes(header[8:12], "little") * 4 - 12)


def test_client_handshake_bytes_match_the_reference() -> None:
    sent: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_vector("server", "HELO"))
        sent.append(await _read_raw(reader))
        writer.write(_vector("server", "SCAR"))
        sent.append(await _read_raw(reader))
        writer.write(_vector("server", "SCON"))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect(
                "127.0.0.1", port, hostname="client-host", connection_username="alice", timeout=10
            )
            connection.close()
            await connection.wait_closed()

    run(main)
    assert [_masked(p) for p in sent] == [
        _masked(_vector("client", "CCRE")),
        _masked(_vector("client", "CARE")),
    ]
    # The info word is the last 4 bytes of a MAC address, the same in every packet.
    assert sent[0][28:32] == sent[1][28:32]


def test_server_handshake_bytes_match_the_reference() -> None:
    received: list[bytes] = []
    hostnames: list[str] = []

    async def handler(connection: ncplib.Connection) -> None:
        hostnames.append(connection.remote_hostname)

    async def main() -> None:
        async with serving(handler) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            received.append(await _read_raw(reader))
            writer.write(_vector("client", "CCRE"))
            received.append(await _read_raw(reader))
            writer.write(_vector("client", "CARE"))
            received.append(await _read_raw(reader))
            assert await reader.read() == b""  # The handler returned: the server closed.
            writer.close()
            await writer.wait_closed()

    run(main)
    expected = [_vector("server", name) for name in ("HELO", "SCAR", "SCON")]
    assert [_masked(p) for p in received] == [_masked(p) for p in expected]
    assert hostnames == ["client-host"]


@pytest.mark.parametrize(("proposed", "granted"), [(3, 5), (5, 5), (17, 17), (60, 60), (61, 60), (3600, 60)])
def test_negotiated_timeout_is_clamped(proposed: int, granted: int) -> None:
    assert _handshake.negotiate_timeout(proposed) == granted


def test_negotiated_timeout_is_zero_without_proposal() -> None:
    assert _handshake.negotiate_timeout(None) == 0
    assert _handshake.negotiate_timeout(0) == 0  # A legacy client: 0 is not clamped to 5.
    with pytest.warns(ncplib.DecodeWarning):
        assert _handshake.negotiate_timeout("soon") == 0
    with pytest.warns(ncplib.DecodeWarning):
        assert _handshake.negotiate_timeout(-4) == 0


def test_server_and_client_warn_when_the_timeout_is_changed() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, timeout=2)
            connection.close()
            await connection.wait_closed()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(main)
    messages = sorted(str(w.message) for w in caught if issubclass(w.category, ncplib.NCPWarning))
    assert messages == ["Changed connection timeout from 2 to 5", "Server changed connection timeout to 5"]


def test_no_warning_when_the_timeout_is_accepted() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, timeout=30)
            connection.close()
            await connection.wait_closed()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(main)


@contextlib.asynccontextmanager
async def _client_of_raw_server(link: Any) -> AsyncIterator[ncplib.Connection]:
    """A client (timeout 10) connected to a hand-written server that answers SCAR with ``link``."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer, link=link)
        await reader.read()

    async with raw_server(peer) as port:
        connection = await ncplib.connect("127.0.0.1", port, timeout=10)
        try:
            yield connection
        finally:
            connection.close()
            await connection.wait_closed()


@pytest.mark.parametrize("link", ["x", -1, 1.5])
def test_client_treats_a_bad_scar_link_as_zero(link: Any) -> None:
    async def main() -> None:
        async with _client_of_raw_server(link) as connection:
            assert connection._timeout == 10  # A legacy peer: the client's own timeout applies.
            assert connection._link.negotiated_timeout == 0  # keep-alives every 3 s

    with pytest.warns(ncplib.DecodeWarning):
        run(main)


def test_legacy_client_gets_zero_and_a_keepalive_every_three_seconds() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await read_packet(reader)  # HELO
            writer.write(packet_bytes("LINK", [("CCRE", 1, {"CIW": "legacy"})]))
            scar = await read_packet(reader)
            assert scar[4][0][0] == "SCAR"
            assert dict(scar[4][0][2]) == {"LINK": 0}
            writer.write(packet_bytes("LINK", [("CARE", 2, {"CAR": "legacy"})]))
            assert (await read_packet(reader))[4][0][0] == "SCON"
            keepalive = await asyncio.wait_for(read_packet(reader), 10)
            assert keepalive[:2] == ("LINK", 0)
            assert keepalive[4] == []
            writer.close()
            await writer.wait_closed()

    run(main)


def test_legacy_link_zero_client_keeps_zero_and_the_servers_timeout() -> None:
    timeouts: list[int] = []

    async def handler(connection: ncplib.Connection) -> None:
        timeouts.append(connection._timeout)
        connection.send("DSPC", "HELD")
        await connection.recv()

    async def main() -> None:
        async with serving(handler, timeout=30) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await read_packet(reader)  # HELO
            writer.write(packet_bytes("LINK", [("CCRE", 1, {"CIW": "legacy", "LINK": 0})]))
            scar = await read_packet(reader)
            assert dict(scar[4][0][2]) == {"LINK": 0}
            writer.write(packet_bytes("LINK", [("CARE", 2, {"CAR": "legacy"})]))
            assert (await read_packet(reader))[4][0][0] == "SCON"
            # The first keep-alive goes out at once: before anything the handler sends.
            keepalive = await asyncio.wait_for(read_packet(reader), 10)
            assert (keepalive[0], keepalive[1], keepalive[4]) == ("LINK", 0, [])
            assert (await asyncio.wait_for(read_packet(reader), 10))[4][0][0] == "HELD"
            writer.close()
            await writer.wait_closed()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0 is not a change of timeout: no NCPWarning.
        run(main)
    # The server keeps its own receive timeout for a legacy client (not 5 s).
    assert timeouts == [30]


def test_client_accepts_a_legacy_server_silently_and_sends_a_keepalive_at_once() -> None:
    received: list[Any] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer, link=0)
        received.append(await read_packet(reader))
        received.append(await read_packet(reader))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port, timeout=20)
            assert connection._timeout == 20  # A legacy server: the client keeps its own.
            assert connection._link.negotiated_timeout == 0  # keep-alives every 3 s
            connection.send("DSPC", "AFTR")
            await connection.drain()
            for _ in range(100):
                if len(received) == 2:
                    break
                await asyncio.sleep(0.05)
            connection.close()
            await connection.wait_closed()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SCAR LINK=0 is a legacy server, not a change: no NCPWarning.
        run(main)
    assert (received[0][0], received[0][1], received[0][4]) == ("LINK", 0, [])
    assert received[1][4][0][0] == "AFTR"


@pytest.mark.parametrize("negotiated", [0, 10])
def test_legacy_keepalives_are_not_postponed_by_traffic(negotiated: int) -> None:
    async def main() -> None:
        async with _client_of_raw_server(negotiated) as connection:
            handle = connection._keepalive_handle
            assert handle is not None
            last_sent = connection._loop.time() + 100
            connection._link.sent(last_sent)  # As if a packet had just gone out.
            handle.cancel()
            connection._on_keepalive()
            # Legacy (0): sent regardless, next one 3 s on; else postponed to after the last packet.
            handle = connection._keepalive_handle
            assert handle is not None
            if negotiated:
                assert handle.when() == pytest.approx(last_sent + 6)
            else:
                assert handle.when() == pytest.approx(connection._loop.time() + 3, abs=1)

    run(main)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"hostname": "", "connection_username": ""}, None),
        ({"hostname": "h1", "connection_username": "u1", "connection_domain": None}, ("h1", "u1", "")),
    ],
)
def test_empty_identity_arguments_mean_the_defaults(
    kwargs: dict[str, Any], expected: tuple[str, str, str] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccres: list[Any] = []
    monkeypatch.setattr("socket.gethostname", lambda: "system-host")
    monkeypatch.setattr("getpass.getuser", lambda: "system-user")

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ccres.append(await raw_handshake(reader, writer))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port, timeout=10, **kwargs)
            connection.close()
            await connection.wait_closed()

    run(main)
    params = dict(ccres[0][4][0][2])
    assert (params["CIW"], params["CUSR"], params["CDOM"]) == (expected or ("system-host", "system-user", ""))


def test_client_sends_its_identity() -> None:
    ccres: list[Any] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ccres.append(await raw_handshake(reader, writer))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect(
                "127.0.0.1",
                port,
                hostname="h1",
                connection_username="u1",
                connection_domain="d1",
                timeout=42,
            )
            connection.close()
            await connection.wait_closed()

    run(main)
    packet_type, packet_id, _, _, fields = ccres[0]
    assert (packet_type, packet_id) == ("LINK", 1)
    assert fields[0][0] == "CCRE"
    assert fields[0][2] == [("CIW", "h1"), ("CUSR", "u1"), ("CDOM", "d1"), ("LINK", 42)]


def test_connect_and_disconnect_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, hostname="logged")
            connection.close()
            await connection.wait_closed()
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO, logger="ncplib"):
        run(main)
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("ncplib")]
    names_and_levels = {(name, level, message.split(" ")[0]) for name, level, message in records}
    assert ("ncplib.server", logging.INFO, "Listening") in names_and_levels
    assert ("ncplib.server", logging.INFO, "Connected") in names_and_levels
    assert ("ncplib.client", logging.INFO, "Connected") in names_and_levels
    assert ("ncplib.client", logging.INFO, "Disconnected") in names_and_levels
    assert ("ncplib.server", logging.INFO, "Disconnected from logged over NCP") not in names_and_levels
    assert ("ncplib.server", logging.INFO, "Disconnected from logged over NCP") in records


def test_server_helo_params() -> None:
    helos: list[Any] = []
    server_sides: list[Any] = []

    async def handler(connection: ncplib.Connection) -> None:
        server_sides.append(connection.helo)
        await connection.recv()

    async def main() -> None:
        params = {"NCPV": "1.0", "SEID": "node-1", "MACA": "00:11:22:33:44:55"}
        async with serving(handler, helo_params=params) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            helos.append(await read_packet(reader))
            writer.close()
            await writer.wait_closed()
            # Clients keep the params, read-only.
            connection = await ncplib.connect("127.0.0.1", port)
            helos.append(connection.helo)
            with pytest.raises(AttributeError):
                connection.helo = {}  # type: ignore[misc]
            connection.close()
            await connection.wait_closed()

    run(main)
    assert helos[1] == {"NCPV": "1.0", "SEID": "node-1", "MACA": "00:11:22:33:44:55"}
    assert server_sides == [None]
    assert helos[0][4] == [
        ("HELO", helos[0][4][0][1], [("NCPV", "1.0"), ("SEID", "node-1"), ("MACA", "00:11:22:33:44:55")])
    ]


def test_invalid_helo_params_are_rejected_at_once() -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await ncplib.start_server(lambda c: asyncio.sleep(0), "127.0.0.1", 0, helo_params={"bad name": 1})
        with pytest.raises(TypeError):
            await ncplib.start_server(lambda c: asyncio.sleep(0), "127.0.0.1", 0, helo_params={"X": object()})

    run(main)
