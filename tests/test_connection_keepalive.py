"""Keep-alive packets, their postponement, and receive timeouts."""

from __future__ import annotations

import asyncio
import json
import warnings
from typing import Any

import pytest
from netutil import packet_bytes, raw_handshake, raw_server, read_packet, run, serving
from vectors import VECTORS

import ncplib
from ncplib import protocol
from ncplib.protocol import keepalive_interval

HANDSHAKE = json.loads((VECTORS / "handshake.json").read_text())


@pytest.mark.parametrize(("timeout", "interval"), [(0, 3), (1, 1), (2, 1), (5, 3), (10, 6), (60, 39)])
def test_keepalive_interval(timeout: int, interval: int) -> None:
    assert keepalive_interval(timeout) == interval


async def _read_raw(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(12)
    return header + await reader.readexactly(int.from_bytes(header[8:12], "little") * 4 - 12)


def test_idle_client_sends_keepalives_like_the_reference() -> None:
    keepalives: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer, link=2)
        for _ in range(2):
            keepalives.append(await asyncio.wait_for(_read_raw(reader), 10))

    async def main() -> None:
        async with raw_server(peer) as port:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ncplib.NCPWarning)
                connection = await ncplib.connect("127.0.0.1", port, timeout=2)
            async with connection:
                for _ in range(100):
                    if len(keepalives) == 2:
                        break
                    await asyncio.sleep(0.1)

    run(main)
    reference = bytes.fromhex(
        next(p["wire_hex"] for p in HANDSHAKE if p["from"] == "client" and not p["fields"])
    )
    assert len(keepalives) == 2
    for wire in keepalives:
        # Identical but for the timestamp seconds and the info word; whole-second timestamps.
        assert wire[:20] == reference[:20]
        assert wire[24:28] == bytes(4)
        assert wire[32:] == reference[32:]


def test_keepalive_is_postponed_by_other_packets() -> None:
    packets: list[Any] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer, link=30)
        while True:
            packets.append(await read_packet(reader))

    async def main() -> None:
        async with (
            raw_server(peer) as port,
            await ncplib.connect("127.0.0.1", port, timeout=30) as connection,
        ):
            loop = asyncio.get_running_loop()
            assert keepalive_interval(connection._link.negotiated_timeout) == 19
            connection.send("DSPC", "SWEP")
            sent_at = loop.time()
            # Just sent: a due keep-alive check postpones itself to a whole interval after the send.
            connection._stop_keepalive()
            connection._on_keepalive()
            handle = connection._keepalive_handle
            assert handle is not None
            assert handle.when() == pytest.approx(sent_at + 19, abs=0.5)
            # Nothing sent for longer than the interval: the check sends a keep-alive.
            connection._stop_keepalive()
            connection._link.sent(loop.time() - 20)
            connection._on_keepalive()
            for _ in range(100):
                if len(packets) == 2:
                    break
                await asyncio.sleep(0.02)

    run(main)
    assert [(p[0], p[1], len(p[4])) for p in packets] == [("DSPC", 1, 1), ("LINK", 0, 0)]


def test_recv_times_out_when_the_peer_is_silent_then_recovers() -> None:
    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_handshake(reader, writer, link=1)
        # With a 1 s timeout the client's 1 s keep-alive comes before its POKE: skip keep-alives.
        while (await read_packet(reader))[0] == "LINK":
            pass
        writer.write(packet_bytes("DSPC", [("LATE", 5, {"N": 1})]))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ncplib.NCPWarning)
                connection = await ncplib.connect("127.0.0.1", port, timeout=1)
            async with connection:
                with pytest.raises(ncplib.NetworkTimeoutError):
                    await connection.recv()
                connection.send("DSPC", "POKE")
                field = await connection.recv()
                assert (field.name, field["N"]) == ("LATE", 1)

    run(main)


def test_keepalives_keep_an_idle_connection_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    # Allow a 2 s timeout (1 s keep-alive) so the test stays short.
    monkeypatch.setattr(protocol, "MIN_TIMEOUT", 1)
    errors: list[BaseException] = []

    async def handler(connection: ncplib.Connection) -> None:
        try:
            async for field in connection:
                field.send(OK=1)
        except ncplib.NCPError as ex:
            errors.append(ex)

    async def main() -> None:
        async with serving(handler, timeout=2) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, timeout=2)
            async with connection:
                assert connection._timeout == 2
                pending = asyncio.ensure_future(connection.recv())
                await asyncio.sleep(4.5)  # More than twice the timeout, with nothing but keep-alives.
                assert not pending.done()
                pending.cancel()
                assert (await connection.send("DSPC", "SWEP").recv())["OK"] == 1

    run(main)
    assert errors == []
