"""
Interop on the wire: the bytes our client and server send, side by side with the reference's.

A recording proxy sits between a client and a server and keeps every byte each way. The handshake
and one command are then parsed with a small independent parser (not our codec) and compared
with what the reference client and server send in the same exchange: packet types and ids, sizes,
field and param names, type ids and value bytes must match; only the things that legitimately
differ (timestamps, field ids, the info word) are left out.

Also here: our client's numpy mode against both servers.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.expected import EXPECTED_VALUES
from peers.harness import RefServers, client_peer, run, serving

import ncplib

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

HAVE_OURS = hasattr(ncplib, "connect") and hasattr(ncplib, "start_server")
needs_ours = pytest.mark.skipif(not HAVE_OURS, reason="this ncplib has no client and server yet")

PACKET_MAGIC = b"\xdd\xcc\xbb\xaa"
FOOTER_MAGIC = b"\xaa\xbb\xcc\xdd"


@pytest.fixture(scope="module")
def ref_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServers]:
    servers = RefServers(tmp_path_factory.mktemp("ref-servers"))
    yield servers
    servers.stop_all()


class RecordingProxy:
    """Forwards one connection to ``upstream_port`` and records the bytes of each direction."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = {"client": bytearray(), "server": bytearray()}
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        self._tasks += [
            asyncio.ensure_future(self._pipe(reader, up_writer, self.sent["client"])),
            asyncio.ensure_future(self._pipe(up_reader, writer, self.sent["server"])),
        ]

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        try:
            while chunk := await reader.read(65536):
                record += chunk
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        for task in self._tasks:
            task.cancel()


def parse_stream(data: bytes) -> list[dict[str, Any]]:
    """Splits a recorded byte stream into packets described field by field (an independent parser)."""
    packets = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 4] == PACKET_MAGIC, f"no packet magic at {offset}"
        packet_type = data[offset + 4 : offset + 8]
        size_words, packet_id, packet_format = struct.unpack_from("<III", data, offset + 8)
        end = offset + size_words * 4
        assert end <= len(data), "truncated packet"
        checksum = data[end - 8 : end - 4]
        assert data[end - 4 : end] == FOOTER_MAGIC
        fields = []
        position = offset + 32
        while position < end - 8:
            name = data[position : position + 4]
            field_words = int.from_bytes(data[position + 4 : position + 7], "little")
            field_type = data[position + 7]
            field_end = position + field_words * 4
            params = []
            param_position = position + 12
            while param_position < field_end:
                param_name = data[param_position : param_position + 4]
                param_words = int.from_bytes(data[param_position + 4 : param_position + 7], "little")
                type_id = data[param_position + 7]
                value = data[param_position + 8 : param_position + param_words * 4]
                params.append((param_name, param_words, type_id, value))
                param_position += param_words * 4
            assert param_position == field_end
            fields.append({"name": name, "words": field_words, "type": field_type, "params": params})
            position = field_end
        assert position == end - 8
        packets.append(
            {
                "type": packet_type,
                "words": size_words,
                "id": packet_id,
                "format": packet_format,
                "checksum": checksum,
                "fields": fields,
            }
        )
        offset = end
    return packets


def record_exchange(
    client_kind: str,
    server_kind: str,
    ref_servers: RefServers,
    tmp_path: Path,
    *,
    timeout: int = 20,
    idle: float = 0.0,
) -> dict[str, Any]:
    """
    Connects through the recording proxy, runs one command, stays idle for ``idle`` seconds,
    closes, and parses both directions.
    """
    recorded: dict[str, Any] = {}

    async def main() -> None:
        async with serving(server_kind, {}, ref_servers) as port:
            proxy = RecordingProxy(port)
            proxy_port = await proxy.start()
            try:
                async with client_peer(client_kind, tmp_path) as client:
                    kwargs = {"hostname": "wire-host", "connection_username": "tester", "timeout": timeout}
                    result = await client.call({"op": "connect", "port": proxy_port, "kwargs": kwargs})
                    assert "error" not in result, result
                    params = {"A": {"t": "u32", "v": 7}, "B": {"t": "str", "v": "x"}}
                    result = await client.call({"op": "request", "field": "ECHO", "params": params})
                    assert "error" not in result, result
                    if idle:
                        await client.call({"op": "sleep", "seconds": idle})
                    await client.call({"op": "close"})
                # Wait for the server's side of the close to pass through.
                for _ in range(100):
                    if all(task.done() for task in proxy._tasks):
                        break
                    await asyncio.sleep(0.05)
            finally:
                await proxy.close()
            recorded["client"] = parse_stream(bytes(proxy.sent["client"]))
            recorded["server"] = parse_stream(bytes(proxy.sent["server"]))

    run(main, 60)
    return recorded


@pytest.fixture(scope="module")
def reference_exchange(ref_servers: RefServers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return record_exchange("ref", "ref", ref_servers, tmp_path_factory.mktemp("wire"))


def test_reference_exchange_is_what_the_protocol_notes_say(reference_exchange: dict[str, Any]) -> None:
    # A check of the parser and of the premise: the reference exchange is the documented handshake.
    client = [(p["type"], [f["name"] for f in p["fields"]]) for p in reference_exchange["client"]]
    server = [(p["type"], [f["name"] for f in p["fields"]]) for p in reference_exchange["server"]]
    assert client == [(b"LINK", [b"CCRE"]), (b"LINK", [b"CARE"]), (b"TEST", [b"ECHO"])]
    assert server == [(b"LINK", [b"HELO"]), (b"LINK", [b"SCAR"]), (b"LINK", [b"SCON"]), (b"TEST", [b"ECHO"])]


@needs_ours
@pytest.mark.parametrize(
    ("client_kind", "server_kind", "direction"),
    [
        ("ours", "ref", "client"),
        ("ours", "ours", "client"),
        ("ref", "ours", "server"),
        ("ours", "ours", "server"),
    ],
    ids=["our-client-to-ref", "our-client-to-ours", "our-server-to-ref", "our-server-to-ours"],
)
def test_our_bytes_match_the_reference_structure(
    client_kind: str,
    server_kind: str,
    direction: str,
    reference_exchange: dict[str, Any],
    ref_servers: RefServers,
    tmp_path: Path,
) -> None:
    # The parsed packets leave out what may legitimately differ: timestamps, field ids, info word.
    ours = record_exchange(client_kind, server_kind, ref_servers, tmp_path)[direction]
    assert ours == reference_exchange[direction]


@needs_ours
@pytest.mark.slow
def test_our_keep_alives_match_the_reference(ref_servers: RefServers, tmp_path: Path) -> None:
    # With a 5 s timeout each side sends a keep-alive after 3 s without sending anything else
    # (and the next one 3 s later): 4.5 s idle leaves 1.5 s of slack both ways.
    ours_to_ref = record_exchange("ours", "ref", ref_servers, tmp_path, timeout=5, idle=4.5)
    ref_to_ours = record_exchange("ref", "ours", ref_servers, tmp_path, timeout=5, idle=4.5)
    keep_alive = {"type": b"LINK", "words": 10, "id": 0, "format": 1, "checksum": bytes(4), "fields": []}
    for side, packets in (
        ("our client", ours_to_ref["client"]),
        ("reference server", ours_to_ref["server"]),
        ("reference client", ref_to_ours["client"]),
        ("our server", ref_to_ours["server"]),
    ):
        assert [packet for packet in packets if not packet["fields"]] == [keep_alive], side


@needs_ours
@pytest.mark.parametrize("server_kind", ["ref", "ours"])
def test_our_numpy_mode_client_receives_read_only_arrays(
    server_kind: str, ref_servers: RefServers, tmp_path: Path
) -> None:
    dtypes = {"B": "|u1", "b": "|i1", "H": "<u2", "h": "<i2", "I": "<u4", "i": "<i4"}
    dtypes.update({"L": "<u8", "l": "<i8", "f": "<f4", "d": "<f8"})
    expected = {}
    for name, tagged in EXPECTED_VALUES.items():
        if tagged["t"] == "array":
            tagged = {"t": "ndarray", "dtype": dtypes[tagged["c"]], "writeable": False, "v": tagged["v"]}
        expected[name] = tagged

    async def main() -> None:
        async with serving(server_kind, {}, ref_servers) as port, client_peer("ours", tmp_path) as client:
            result = await client.call({"op": "connect", "port": port, "kwargs": {"use_numpy": True}})
            assert "error" not in result, result
            result = await client.call({"op": "request", "field": "GIVE"})
            assert "error" not in result and not result["warnings"], result
            assert result["replies"][0]["params"] == expected

    run(main, 60)
