"""
Interop: 6.1.0's behaviour with legacy peers and its defaults, checked side by side with ours.

A hand-written peer in the test plays the legacy side (a client that proposes ``LINK=0``, a
server that answers ``SCAR LINK=0``) or records what a client sends; the other side is the
reference ncplib 6.1.0 (a subprocess) or ours, and both must behave the same.
"""

from __future__ import annotations

import asyncio
import getpass
import platform
from pathlib import Path
from typing import Any

import pytest
from netutil import packet_bytes, raw_handshake, raw_server, read_packet
from peers.harness import RefServers, client_peer, run, serving

import ncplib
from ncplib.node import start_node

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

KINDS = ["ref", "ours"]


@pytest.fixture(scope="module")
def ref_servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    servers = RefServers(tmp_path_factory.mktemp("ref-servers"))
    yield servers
    servers.stop_all()


def _is_keepalive(packet: Any) -> bool:
    return packet[0] == "LINK" and packet[1] == 0 and packet[4] == []


@pytest.mark.parametrize("server_kind", KINDS)
def test_a_link_zero_client_is_a_kept_legacy_client(server_kind: str, ref_servers: RefServers) -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with serving(server_kind, {"timeout": 60}, ref_servers) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await read_packet(reader)  # HELO
                writer.write(packet_bytes("LINK", [("CCRE", 1, {"CIW": "legacy", "CUSR": "u", "LINK": 0})]))
                seen["scar"] = dict((await read_packet(reader))[4][0][2])
                writer.write(packet_bytes("LINK", [("CARE", 2, {"CAR": "legacy"})]))
                assert (await read_packet(reader))[4][0][0] == "SCON"
                writer.write(packet_bytes("TEST", [("ECHO", 7, {"N": 1})]))
                # The first keep-alive goes out at once: before the reply to a command sent at once.
                seen["first"] = await asyncio.wait_for(read_packet(reader), 10)
                # Silent for longer than the 5 s a clamped timeout would give: still connected.
                await asyncio.sleep(6)
                writer.write(packet_bytes("TEST", [("ECHO", 8, {"N": 2})]))
                while True:
                    packet = await asyncio.wait_for(read_packet(reader), 10)
                    if not _is_keepalive(packet):
                        seen.setdefault("replies", []).append(packet[4][0][1])
                        if packet[4][0][1] == 8:
                            break
            finally:
                writer.close()
                await writer.wait_closed()

    run(main)
    assert seen["scar"] == {"LINK": 0}
    assert _is_keepalive(seen["first"])
    assert seen["replies"] == [7, 8]


async def _legacy_server(
    received: list[Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await raw_handshake(reader, writer, link=0)
    while True:
        packet = await read_packet(reader)
        received.append(packet)
        for name, field_id, params in packet[4]:
            if packet[0] == "TEST":
                writer.write(packet_bytes("TEST", [(name, field_id, dict(params))]))


@pytest.mark.parametrize("client_kind", KINDS)
def test_a_link_zero_server_is_accepted_silently(client_kind: str, tmp_path: Path) -> None:
    received: list[Any] = []
    results: list[dict[str, Any]] = []

    async def main() -> None:
        async with (
            raw_server(lambda r, w: _legacy_server(received, r, w)) as port,
            client_peer(client_kind, tmp_path) as client,
        ):
            results.append(await client.call({"op": "connect", "port": port, "kwargs": {"timeout": 10}}))
            results.append(await client.call({"op": "request", "field": "ECHO", "params": {}}))

    run(main)
    # No NCPWarning: SCAR LINK=0 is a legacy server, not a changed timeout.
    assert [result["warnings"] for result in results] == [[], []]
    assert "error" not in results[1]
    # The client's first keep-alive goes out at once, before the command.
    assert _is_keepalive(received[0])
    assert received[1][0] == "TEST"


@pytest.mark.parametrize("client_kind", KINDS)
def test_empty_identity_arguments_mean_the_defaults(client_kind: str, tmp_path: Path) -> None:
    ccres: list[Any] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ccres.append(dict((await raw_handshake(reader, writer))[4][0][2]))
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port, client_peer(client_kind, tmp_path) as client:
            kwargs = {"hostname": "", "connection_username": "", "connection_domain": None, "timeout": 10}
            result = await client.call({"op": "connect", "port": port, "kwargs": kwargs})
            assert "error" not in result, result

    run(main)
    (ccre,) = ccres
    assert (ccre["CIW"], ccre["CUSR"], ccre["CDOM"]) == (platform.node(), getpass.getuser(), "")


@pytest.mark.parametrize("client_kind", KINDS)
def test_node_warnings_are_command_warnings_for_every_client(client_kind: str, tmp_path: Path) -> None:
    results: list[dict[str, Any]] = []

    async def main() -> None:
        server = await start_node("127.0.0.1", 0, timeout=10)
        try:
            port = server.sockets[0].getsockname()[1]
            async with client_peer(client_kind, tmp_path) as client:
                await client.call({"op": "connect", "port": port, "kwargs": {"timeout": 10}})
                # The published sweep example: params the node does not use, more bins than it gives.
                sweep = {"FSTA": 10000, "FSTP": 18000, "INPT": 1, "BDEX": 1, "BINP": 2}
                params = {name: {"t": "int", "v": value} for name, value in sweep.items()}
                op = {"op": "request", "packet": "DSPC", "field": "SWEP", "params": params, "digest": True}
                results.append(await client.call(op))
                await client.call({"op": "close"})
        finally:
            server.close()
            await server.wait_closed()

    run(main)
    (result,) = results
    assert "error" not in result, result
    (warning,) = result["warnings"]
    assert warning["class"] == "CommandWarning"
    assert warning["code"] == ncplib.node.WARC_CAPPED
    assert "INPT, BDEX, BINP not used by this node" in warning["detail"]
    # Then the data, not the acknowledgement that carried the warning.
    (reply,) = result["replies"]
    assert reply["params"]["NBIN"]["v"] == ncplib.node.MAX_BINS
    assert reply["params"]["PDAT"]["n"] == ncplib.node.MAX_BINS
