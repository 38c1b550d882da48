"""
Interop: our client and server against the reference ncplib 6.1.0 (and against each other).

Every case runs for each (client, server) pair: (ours, ref), (ref, ours) and (ours, ours). The
reference runs only as a subprocess with its own interpreter (``tests/peers/ref_*.py``); the
server logic (``peers.common.handle``) and the client operations (``peers.common.ClientSession``)
are the same code on both sides, so the pairs differ only in which library is underneath.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.expected import EXPECTED_VALUES
from peers.harness import RefServers, client_peer, make_certificate, run, serving

import ncplib

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

PAIRS = [("ours", "ref"), ("ref", "ours"), ("ours", "ours")]
if os.environ.get("NCPLIB_INTEROP_REF_PAIR"):
    # The reference against itself: a check of the test harness, not of our library.
    PAIRS.append(("ref", "ref"))
CROSS_PAIRS = [pair for pair in PAIRS if pair != ("ours", "ours")]

HAVE_OURS = hasattr(ncplib, "connect") and hasattr(ncplib, "start_server")


def _pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}-client-{pair[1]}-server"


@pytest.fixture(scope="module")
def ref_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServers]:
    servers = RefServers(tmp_path_factory.mktemp("ref-servers"))
    yield servers
    servers.stop_all()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    made = make_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("neither the openssl command nor trustme is available")
    return made


@pytest.fixture(params=PAIRS, ids=_pair_id)
def pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    if "ours" in request.param and not HAVE_OURS:
        pytest.skip("this ncplib has no client and server yet")
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=CROSS_PAIRS, ids=_pair_id)
def cross_pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    if "ours" in request.param and not HAVE_OURS:
        pytest.skip("this ncplib has no client and server yet")
    return request.param  # type: ignore[no-any-return]


class Scenario:
    """Runs a test body with a client peer connected (or about to connect) to a server peer."""

    def __init__(self, pair: tuple[str, str], ref_servers: RefServers, tmp_path: Path) -> None:
        self.client_kind, self.server_kind = pair
        self.ref_servers = ref_servers
        self.tmp_path = tmp_path

    def run(self, body: Any, server_options: dict[str, Any] | None = None, timeout: float = 60.0) -> None:
        async def main() -> None:
            async with (
                serving(self.server_kind, server_options or {}, self.ref_servers) as port,
                client_peer(self.client_kind, self.tmp_path) as client,
            ):
                try:
                    await body(client, port)
                except BaseException:
                    stderr = getattr(client, "stderr", None)
                    if stderr is not None:
                        print("reference client stderr:\n" + stderr())
                    raise

        run(main, timeout)


@pytest.fixture
def scenario(pair: tuple[str, str], ref_servers: RefServers, tmp_path: Path) -> Scenario:
    return Scenario(pair, ref_servers, tmp_path)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """Asserts that an operation succeeded without warnings, and returns its result."""
    assert "error" not in result, result
    assert result["warnings"] == [], result
    return result


CONNECT = {"op": "connect", "kwargs": {"hostname": "interop-host", "connection_username": "tester"}}


def connect_op(port: int, **kwargs: Any) -> dict[str, Any]:
    return {**CONNECT, "port": port, "kwargs": {**CONNECT["kwargs"], **kwargs}}


def canonical_tags() -> dict[str, dict[str, Any]]:
    from peers.common import canonical_values, tag_params

    return tag_params(canonical_values())


def test_handshake_and_hostnames(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        connected = ok(await client.call(connect_op(port)))
        assert connected["remote_hostname"] == f"127.0.0.1:{port}"
        info = ok(await client.call({"op": "request", "field": "INFO"}))
        # The server takes the client's CIW as the connection's remote hostname.
        assert info["replies"] == [
            {"packet_type": "TEST", "name": "INFO", "params": {"HOST": {"t": "str", "v": "interop-host"}}}
        ]

    scenario.run(body)


def test_reply_packet_id_and_timestamp(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "ECHO", "meta": True}))
        meta = result["replies"][0]["meta"]
        # Replies go out as packet id 1; timestamps decode to aware UTC datetimes of the send time.
        assert {key: meta[key] for key in ("packet_id", "id_type", "timestamp_type", "utcoffset")} == {
            "packet_id": 1,
            "id_type": "int",
            "timestamp_type": "datetime",
            "utcoffset": 0.0,
        }
        assert -5 < meta["age"] < 30

    scenario.run(body)


def test_async_for_ends_when_the_server_closes(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "iterate", "field": "LAST"}))
        assert [reply["params"] for reply in result["replies"]] == [
            {"N": {"t": "int", "v": n}} for n in (1, 2, 3)
        ]
        after = await client.call({"op": "request", "field": "ECHO"})
        assert after["error"]["class"] == "ConnectionClosed", after

    scenario.run(body)


def test_every_value_type_from_server_to_client(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "GIVE"}))
        (reply,) = result["replies"]
        assert reply["params"] == EXPECTED_VALUES

    scenario.run(body)


def test_every_value_type_from_client_to_server(scenario: Scenario) -> None:
    import json

    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "DESC", "params": canonical_tags()}))
        (reply,) = result["replies"]
        assert reply["params"]["JSON"]["t"] == "str"
        assert json.loads(reply["params"]["JSON"]["v"]) == EXPECTED_VALUES

    scenario.run(body)


def test_every_value_type_round_trip(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "ECHO", "params": canonical_tags()}))
        (reply,) = result["replies"]
        assert reply["packet_type"] == "TEST"
        assert reply["name"] == "ECHO"
        assert reply["params"] == EXPECTED_VALUES

    scenario.run(body)


def _pattern_digest(code: str, count: int, padded_count: int) -> dict[str, Any]:
    from peers.common import pattern

    values = pattern(code, count)
    values.frombytes(bytes((padded_count - count) * values.itemsize))
    return {"t": "array", "c": code, "n": padded_count, "crc": zlib.crc32(values.tobytes())}


LARGE_DIGESTS = {
    "A": _pattern_digest("h", 512 * 1024, 512 * 1024),
    "B": _pattern_digest("B", 1024 * 1024 + 3, 1024 * 1024 + 4),
    "C": _pattern_digest("d", 3, 3),
}


def test_large_arrays_from_server_to_client(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "BIGA", "digest": True}))
        assert result["replies"][0]["params"] == LARGE_DIGESTS

    scenario.run(body)


def test_large_arrays_from_client_to_server(scenario: Scenario) -> None:
    import json

    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        params = {
            "A": {"t": "pattern", "c": "h", "n": 512 * 1024},
            "B": {"t": "pattern", "c": "B", "n": 1024 * 1024 + 3},
            "C": {"t": "pattern", "c": "d", "n": 3},
        }
        result = ok(await client.call({"op": "request", "field": "HASH", "params": params}))
        assert json.loads(result["replies"][0]["params"]["JSON"]["v"]) == LARGE_DIGESTS

    scenario.run(body)


def test_send_packet_with_several_fields(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        fields = {
            "ECHO": {"A": {"t": "int", "v": 1}, "B": {"t": "str", "v": "two"}},
            "INFO": {},
            "GIVE": {"X": {"t": "u32", "v": 3}},
        }
        result = ok(await client.call({"op": "request", "fields": fields, "count": 3}))
        replies = {reply["name"]: reply for reply in result["replies"]}
        assert sorted(replies) == ["ECHO", "GIVE", "INFO"]
        assert replies["ECHO"]["params"] == {"A": {"t": "int", "v": 1}, "B": {"t": "str", "v": "two"}}
        assert replies["INFO"]["params"] == {"HOST": {"t": "str", "v": "interop-host"}}
        assert replies["GIVE"]["params"] == EXPECTED_VALUES
        assert {reply["packet_type"] for reply in result["replies"]} == {"TEST"}

    scenario.run(body)


def test_erro_raises_command_error(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = await client.call({"op": "request", "field": "BADC"})
        assert result["replies"] == []
        assert result["error"] == {
            "class": "CommandError",
            "message": "TEST BADC 'Bad thing' (code 400)",
            "detail": "Bad thing",
            "code": 400,
        }
        # The connection stays usable after a command error.
        echo = ok(
            await client.call({"op": "request", "field": "ECHO", "params": {"A": {"t": "int", "v": 5}}})
        )
        assert echo["replies"][0]["params"] == {"A": {"t": "int", "v": 5}}

    scenario.run(body)


def test_erro_is_a_plain_field_without_auto_erro(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port, auto_erro=False)))
        result = ok(await client.call({"op": "request", "field": "BADC"}))
        assert result["replies"][0]["params"] == {
            "ERRO": {"t": "str", "v": "Bad thing"},
            "ERRC": {"t": "int", "v": 400},
        }

    scenario.run(body)


def test_warn_issues_command_warning(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = await client.call({"op": "request", "field": "WRNC", "count": 2})
        assert "error" not in result
        assert result["warnings"] == [
            {
                "class": "CommandWarning",
                "message": "TEST WRNC 'Careful now' (code 123)",
                "detail": "Careful now",
                "code": 123,
            }
        ]
        # The warning field itself is still delivered, then the data.
        assert [reply["params"] for reply in result["replies"]] == [
            {"WARN": {"t": "str", "v": "Careful now"}, "WARC": {"t": "int", "v": 123}},
            {"DONE": {"t": "int", "v": 1}},
        ]
        quiet = ok(await client.call({"op": "request", "field": "ECHO"}))
        assert quiet["replies"][0]["params"] == {}

    scenario.run(body)


def test_errc_alone_raises_command_error(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = await client.call({"op": "request", "field": "ERCO"})
        assert result["replies"] == []
        error = result["error"]
        assert (error["class"], error["detail"], error["code"]) == ("CommandError", None, 7)

    scenario.run(body)


def test_warc_alone_issues_command_warning(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = await client.call({"op": "request", "field": "WACO", "count": 2})
        assert "error" not in result, result
        assert [(w["class"], w["detail"], w["code"]) for w in result["warnings"]] == [
            ("CommandWarning", None, 9)
        ]
        assert [reply["params"] for reply in result["replies"]] == [
            {"WARC": {"t": "int", "v": 9}},
            {"DONE": {"t": "int", "v": 1}},
        ]

    scenario.run(body)


@pytest.mark.parametrize("command", ["NAMW", "NAME"], ids=["named-warn", "named-erro"])
def test_fields_named_warn_or_erro_are_dropped(scenario: Scenario, command: str) -> None:
    # With auto_warn (auto_erro), a field named WARN (ERRO) is a packet-level notice: the client
    # drops it even when it holds no WARN (ERRO) param.
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": command, "via": "connection"}))
        assert [(reply["name"], reply["params"]) for reply in result["replies"]] == [
            (command, {"DONE": {"t": "int", "v": 1}})
        ]

    scenario.run(body)


def test_no_command_warning_without_auto_warn(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port, auto_warn=False)))
        result = ok(await client.call({"op": "request", "field": "WRNC", "count": 2}))
        assert [reply["params"].get("DONE") for reply in result["replies"]] == [None, {"t": "int", "v": 1}]

    scenario.run(body)


def test_ackn_fields_are_skipped(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = ok(await client.call({"op": "request", "field": "ACKC"}))
        assert [reply["params"] for reply in result["replies"]] == [{"DONE": {"t": "int", "v": 1}}]

    scenario.run(body)


def test_ackn_fields_are_delivered_without_auto_ackn(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port, auto_ackn=False)))
        result = ok(await client.call({"op": "request", "field": "ACKC", "count": 2}))
        assert [reply["params"] for reply in result["replies"]] == [
            {"ACKN": {"t": "int", "v": 1}},
            {"DONE": {"t": "int", "v": 1}},
        ]

    scenario.run(body)


@pytest.mark.parametrize(
    ("command", "detail", "code"),
    [("BOOM", "Server error", 500), ("BADR", "Bad request", 400)],
    ids=["error", "ncp-error"],
)
def test_failing_handler_sends_erro(scenario: Scenario, command: str, detail: str, code: int) -> None:
    # Any exception from the handler: ERRO "Server error" 500; an NCPError: "Bad request" 400.
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        result = await client.call({"op": "request", "field": command})
        assert result["error"] == {
            "class": "CommandError",
            "message": f"LINK ERRO {detail!r} (code {code})",
            "detail": detail,
            "code": code,
        }

    scenario.run(body)


def test_server_clamps_the_client_timeout(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        result = await client.call(connect_op(port, timeout=600))
        assert "error" not in result, result
        caught = [(w["class"], w["message"]) for w in result["warnings"]]
        client_warning = ("NCPWarning", "Server changed connection timeout to 60")
        server_warning = ("NCPWarning", "Changed connection timeout from 600 to 60")
        if scenario.client_kind == scenario.server_kind == "ours":
            # One process: the server's warning is caught along with the client's.
            assert sorted(caught) == sorted([client_warning, server_warning])
        else:
            assert caught == [client_warning]
        echo = ok(await client.call({"op": "request", "field": "ECHO"}))
        assert echo["replies"][0]["name"] == "ECHO"

    with warnings.catch_warnings(record=True) as caught_here:
        warnings.simplefilter("always")
        scenario.run(body)
    if scenario.server_kind == "ours" and scenario.client_kind == "ref":
        assert [str(w.message) for w in caught_here if issubclass(w.category, ncplib.NCPWarning)] == [
            "Changed connection timeout from 600 to 60"
        ]


def test_connection_log_lines(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port)))
        ok(await client.call({"op": "close"}))
        logs = ok(await client.call({"op": "logs"}))["logs"]
        # Our server logs to the same process in the (ours, ours) pair: keep the client's lines.
        info = [r["message"] for r in logs if r["level"] == "INFO" and r["logger"] == "ncplib.client"]
        assert info == [
            f"Connected to 127.0.0.1:{port} over NCP",
            f"Disconnected from 127.0.0.1:{port} over NCP",
        ]

    scenario.run(body)


def test_server_log_lines(scenario: Scenario) -> None:
    seen: dict[str, Any] = {}  # the port, and where the reference server's log grows
    records: list[logging.LogRecord] = []
    recorder = logging.Handler(logging.INFO)
    recorder.emit = records.append  # type: ignore[method-assign]
    server_logger = logging.getLogger("ncplib.server")
    previous_level = server_logger.level

    async def body(client: Any, port: int) -> None:
        seen["port"] = port
        if scenario.server_kind == "ref":
            seen["path"] = scenario.ref_servers.get({}).stderr_path
            seen["offset"] = seen["path"].stat().st_size
        ok(await client.call(connect_op(port)))
        ok(await client.call({"op": "request", "field": "BYE", "count": 0}))
        ok(await client.call({"op": "close"}))
        for _ in range(100):  # the server logs its side of the close a moment later
            if "Disconnected" in server_lines():
                break
            await asyncio.sleep(0.05)

    def server_lines() -> str:
        if scenario.server_kind == "ref":
            with open(seen["path"], "rb") as log:
                log.seek(seen["offset"])
                return log.read().decode(errors="replace")
        return "\n".join(f"INFO:{r.name}:{r.getMessage()}" for r in records if r.levelno == logging.INFO)

    server_logger.addHandler(recorder)
    server_logger.setLevel(logging.INFO)
    try:
        scenario.run(body)
    finally:
        server_logger.removeHandler(recorder)
        server_logger.setLevel(previous_level)
    lines = [line for line in server_lines().splitlines() if line.startswith("INFO:ncplib.server:")]
    if scenario.server_kind == "ours":
        # Started inside the test (the reference server logged this line when it started).
        assert lines.pop(0) == f"INFO:ncplib.server:Listening on 127.0.0.1:{seen['port']} over NCP"
    assert len(lines) == 2, lines
    assert re.fullmatch(r"INFO:ncplib\.server:Connected to 127\.0\.0\.1:\d+ over NCP", lines[0])
    # By then the server knows the client by the hostname it sent (CIW).
    assert lines[1] == "INFO:ncplib.server:Disconnected from interop-host over NCP"


@pytest.mark.parametrize("auth", [False, True], ids=["tls", "tls-and-auth"])
def test_tls(scenario: Scenario, certificate: tuple[Path, Path, Path], auth: bool) -> None:
    cert, key, authority = certificate
    options: dict[str, Any] = {"tls": {"cert": str(cert), "key": str(key)}}
    credentials: dict[str, Any] = {}
    if auth:
        options["auth"] = ["alice", "s3cret"]
        credentials = {"username": "alice", "password": "s3cret"}

    async def body(client: Any, port: int) -> None:
        ok(await client.call({**connect_op(port, **credentials), "cafile": str(authority)}))
        result = ok(await client.call({"op": "request", "field": "ECHO", "params": canonical_tags()}))
        assert result["replies"][0]["params"] == EXPECTED_VALUES

    scenario.run(body, options)


def test_authentication_success(scenario: Scenario) -> None:
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port, username="alice", password="s3cret")))
        result = ok(await client.call({"op": "request", "field": "INFO"}))
        assert result["replies"][0]["params"] == {"HOST": {"t": "str", "v": "interop-host"}}

    scenario.run(body, {"auth": ["alice", "s3cret"]})


@pytest.mark.parametrize(
    "credentials",
    [{"username": "alice", "password": "wrong"}, {"username": "mallory", "password": "s3cret"}],
    ids=["bad-password", "bad-user"],
)
def test_authentication_failure(scenario: Scenario, credentials: dict[str, str]) -> None:
    async def body(client: Any, port: int) -> None:
        result = await client.call(connect_op(port, **credentials))
        assert result["error"] == {"class": "AuthenticationError", "message": "HTTP 401 Unauthorized"}

    scenario.run(body, {"auth": ["alice", "s3cret"]})


@pytest.mark.slow
def test_idle_connection_kept_alive_past_twice_its_timeout(
    cross_pair: tuple[str, str], ref_servers: RefServers, tmp_path: Path
) -> None:
    # Timeouts are clamped to at least 5 s. During the WAIT the server keeps receiving (so it
    # needs the client's keep-alives) and the client waits for the reply (so it needs the
    # server's): both sides would raise NetworkTimeoutError after 5 s of silence.
    async def body(client: Any, port: int) -> None:
        ok(await client.call(connect_op(port, timeout=5)))
        result = ok(
            await client.call({"op": "request", "field": "WAIT", "params": {"SECS": {"t": "int", "v": 11}}})
        )
        assert result["replies"][0]["params"] == {"DONE": {"t": "int", "v": 1}}
        echo = ok(
            await client.call({"op": "request", "field": "ECHO", "params": {"A": {"t": "int", "v": 2}}})
        )
        assert echo["replies"][0]["params"] == {"A": {"t": "int", "v": 2}}

    Scenario(cross_pair, ref_servers, tmp_path).run(body, timeout=60)
