"""Interop: the blocking client (ncplib.sync) against the reference ncplib 6.1.0 server."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers.common import canonical_values, digest, pattern, tag_params
from peers.expected import EXPECTED_VALUES
from peers.harness import RefServers, make_certificate

import ncplib
import ncplib.sync

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def ref_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefServers]:
    servers = RefServers(tmp_path_factory.mktemp("ref-servers"))
    yield servers
    servers.stop_all()


def test_commands_values_and_filters(ref_servers: RefServers) -> None:
    port = ref_servers.get({"timeout": 10}).port
    with ncplib.sync.connect("127.0.0.1", port, timeout=10, hostname="sync-client") as connection:
        given = connection.send("TEST", "GIVE").recv(timeout=30)
        assert tag_params(dict(given)) == EXPECTED_VALUES
        echoed = connection.send("TEST", "ECHO", **canonical_values()).recv(timeout=30)
        assert (echoed.packet_type, echoed.name) == ("TEST", "ECHO")
        assert tag_params(dict(echoed)) == EXPECTED_VALUES
        assert connection.send("TEST", "INFO").recv(timeout=30)["HOST"] == "sync-client"
        with pytest.raises(ncplib.CommandError) as caught:
            connection.send("TEST", "BADC").recv(timeout=30)
        assert (caught.value.detail, caught.value.code) == ("Bad thing", 400)
        with warnings.catch_warnings(record=True) as notices:
            warnings.simplefilter("always")
            # The field holding WARN is delivered too, after the warning (as by the asyncio client).
            response = connection.send("TEST", "WRNC")
            assert response.recv(timeout=30)["WARC"] == 123
            assert dict(response.recv(timeout=30)) == {"DONE": 1}
        assert [(type(w.message), w.message.code) for w in notices] == [(ncplib.CommandWarning, 123)]  # type: ignore[union-attr]
        assert dict(connection.send("TEST", "ACKC").recv(timeout=30)) == {"DONE": 1}
        big = connection.send("TEST", "BIGA").recv(timeout=60)
        assert digest(big["A"]) == digest(pattern("h", 512 * 1024))
        assert digest(big["C"]) == digest(pattern("d", 3))


def test_keepalives_both_ways_over_a_long_wait(ref_servers: RefServers) -> None:
    # The reply comes after 12 s, longer than the 10 s timeout: only keep-alives, ours from the
    # background thread and the server's, keep both sides from timing out meanwhile.
    port = ref_servers.get({"timeout": 10}).port
    with ncplib.sync.connect("127.0.0.1", port, timeout=10) as connection:
        assert dict(connection.send("TEST", "WAIT", SECS=12).recv(timeout=40)) == {"DONE": 1}
        assert connection.send("TEST", "ECHO", A=1).recv(timeout=30)["A"] == 1


def test_server_ending_the_connection(ref_servers: RefServers) -> None:
    port = ref_servers.get({"timeout": 10}).port
    with ncplib.sync.connect("127.0.0.1", port, timeout=10) as connection:
        assert [field["N"] for field in connection.send("TEST", "LAST")] == [1, 2, 3]
        with pytest.raises(ncplib.ConnectionClosed):
            connection.recv(timeout=10)


def test_tls_and_credentials(ref_servers: RefServers, tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    if made is None:
        pytest.skip("neither the openssl command nor trustme is available")
    cert, key, authority = made
    options = {"timeout": 10, "tls": {"cert": str(cert), "key": str(key)}, "auth": ["alice", "secret"]}
    port = ref_servers.get(options).port
    context = ssl.create_default_context(cafile=str(authority))
    with ncplib.sync.connect(
        "127.0.0.1", port, ssl=context, username="alice", password="secret", timeout=10
    ) as connection:
        assert connection.send("TEST", "ECHO", A=5).recv(timeout=30)["A"] == 5
    with pytest.raises(ncplib.AuthenticationError):
        ncplib.sync.connect("127.0.0.1", port, ssl=context, username="alice", password="nope", timeout=10)
