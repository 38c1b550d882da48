"""The sans-IO connection core (ncplib.protocol), driven with byte strings and a fake clock alone."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from vectors import load

from ncplib import AuthenticationError, ConnectionClosed, DecodeError, DecodeWarning, NCPWarning, NetworkError
from ncplib import protocol as p
from ncplib.packets import decode_packet, encode_packet
from ncplib.tunnel import encode_request, encode_response

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
INFO = b"\x00\x00\xfc\x02"


def packet(packet_type: str, *fields: tuple[str, int, dict[str, Any]], packet_id: int = 1) -> bytes:
    return encode_packet(packet_type, packet_id, T0, INFO, [(n, i, ps.items()) for n, i, ps in fields])


def sent(protocol: p.Protocol) -> list[tuple[str, int, list[tuple[str, int, dict[str, Any]]]]]:
    """What the protocol wants to send, decoded: (packet type, packet id, [(field, id, params)])."""
    data = b"".join(bytes(b) for b in protocol.data_to_send())
    out = []
    while data:
        size = int.from_bytes(data[8:12], "little") * 4
        packet_type, packet_id, _, _, fields = decode_packet(data[:size])
        out.append((packet_type, packet_id, [(n, i, dict(ps)) for n, i, ps in fields]))
        data = data[size:]
    return out


def ids(start: int = 100) -> Iterator[int]:
    return iter(range(start, start + 1000))


def client(**kwargs: Any) -> p.ClientProtocol:
    kwargs.setdefault("field_ids", ids().__next__)
    return p.ClientProtocol(hostname="client-host", username="alice", **kwargs)


def server(**kwargs: Any) -> p.ServerProtocol:
    kwargs.setdefault("field_ids", ids(500).__next__)
    return p.ServerProtocol(**kwargs)


def open_client(timeout: int = 10, granted: int | None = 10, **kwargs: Any) -> p.ClientProtocol:
    c = client(timeout=timeout, **kwargs)
    c.receive_data(packet("LINK", ("HELO", 0, {})), 0.0)
    assert c.events_received() == []
    scar = {} if granted is None else {"LINK": granted}
    c.receive_data(packet("LINK", ("SCAR", 2, scar)) + packet("LINK", ("SCON", 4, {})), 0.0)
    events = c.events_received()
    assert isinstance(events[-1], p.HandshakeComplete)
    assert c.state is p.State.OPEN
    c.data_to_send()
    return c


# The captured exchange between the reference client and server, byte for byte.


def _capture() -> list[dict[str, Any]]:
    return load("handshake.json")


def _timestamps(side: str) -> Iterator[datetime]:
    return iter([decode_packet(bytes.fromhex(v["wire_hex"]))[2] for v in _capture() if v["from"] == side])


def test_client_sends_the_captured_bytes() -> None:
    capture = _capture()
    c = p.ClientProtocol(
        hostname="client-host",
        username="alice",
        timeout=10,
        info=INFO,
        clock=_timestamps("client").__next__,
        field_ids=iter([1, 3, 5]).__next__,
    )
    wire = []
    events: list[p.Event] = []
    for step in capture[:5]:
        if step["from"] == "server":
            c.receive_data(bytes.fromhex(step["wire_hex"]), 1.0)
            events += c.events_received()
            wire += c.data_to_send()
    assert b"".join(wire).hex() == "".join(v["wire_hex"] for v in capture[1:4:2])
    assert events == [p.TimeoutNegotiated(10), p.HandshakeComplete(10, None)]
    request = c.send("DSPC", "SWEP", {"FSTA": 400, "FSTP": 500}, 2.0)
    assert b"".join(c.data_to_send()).hex() == capture[5]["wire_hex"]
    for step in capture[6:8]:
        c.receive_data(bytes.fromhex(step["wire_hex"]), 3.0)
    # The ACKN is filtered out; the data is a reply to the request.
    (field,) = c.events_received()
    assert isinstance(field, p.FieldReceived)
    assert request.matches(field.packet_type, field.name, field.id)
    assert field.params == [("FSTA", 400), ("FSTP", 500)]
    # The keep-alive: 0.66 * 10 s after the last packet sent (the timer first due 6 s after the
    # handshake finds it postponed by the command).
    assert c.next_timer() == pytest.approx(1.0 + 6)
    c.handle_timer(7.0)
    assert c.data_to_send() == []
    assert c.next_timer() == pytest.approx(2.0 + 6)
    c.handle_timer(8.0)
    assert b"".join(c.data_to_send()).hex() == capture[8]["wire_hex"]


def test_server_sends_the_captured_bytes() -> None:
    capture = _capture()
    s = p.ServerProtocol(
        timeout=60, info=INFO, clock=_timestamps("server").__next__, field_ids=iter([0, 2, 4]).__next__
    )
    wire = list(s.data_to_send())
    events: list[p.Event] = []
    for step in capture[:5]:
        if step["from"] == "client":
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                s.receive_data(bytes.fromhex(step["wire_hex"]), 1.0)
                events += s.events_received()
            wire += s.data_to_send()
    assert b"".join(wire).hex() == "".join(v["wire_hex"] for v in capture[0:5:2])
    assert events == [p.TimeoutNegotiated(10), p.HandshakeComplete(10, "client-host")]
    assert s.timeout == 10
    s.receive_data(bytes.fromhex(capture[5]["wire_hex"]), 2.0)
    (command,) = s.events_received()
    assert isinstance(command, p.FieldReceived)
    assert (command.packet_type, command.name, command.id) == ("DSPC", "SWEP", 5)


# Handshake rules.


@pytest.mark.parametrize(
    ("proposed", "granted", "warned"),
    [(10, 10, False), (1, 5, True), (600, 60, True), (0, 0, False), (None, 0, False)],
)
def test_server_negotiates_the_timeout(proposed: int | None, granted: int, warned: bool) -> None:
    s = server(timeout=30)
    assert [f[2][0][0] for f in sent(s)] == ["HELO"]
    ccre = {"CIW": "me", "CUSR": "u", "CDOM": ""}
    if proposed is not None:
        ccre["LINK"] = proposed  # type: ignore[assignment]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.receive_data(packet("LINK", ("CCRE", 1, ccre)), 1.0)
        assert s.events_received() == [p.TimeoutNegotiated(granted)]
    assert [type(w.message) for w in caught] == ([NCPWarning] if warned else [])
    assert sent(s) == [("LINK", 1, [("SCAR", 501, {"LINK": granted})])]
    s.receive_data(packet("LINK", ("CARE", 2, {"CAR": "me"})), 2.0)
    assert s.events_received() == [p.HandshakeComplete(granted, "me")]
    keepalives = [] if granted else [("LINK", 0, [])]
    assert sent(s) == [("LINK", 1, [("SCON", 502, {})]), *keepalives]
    # A legacy client: the server keeps its own receive timeout.
    assert s.timeout == (granted or 30)


def test_server_warns_about_a_timeout_that_is_not_a_number() -> None:
    s = server()
    with pytest.warns(DecodeWarning, match="Invalid connection timeout 'soon'"):
        s.receive_data(packet("LINK", ("CCRE", 1, {"CIW": "", "LINK": "soon"})), 0.0)
        assert s.events_received() == [p.TimeoutNegotiated(0)]
    assert s.remote_hostname is None  # an empty CIW names nobody


@pytest.mark.parametrize(
    ("answer", "negotiated", "warning"), [(10, 10, None), (0, 0, None), (5, 5, NCPWarning)]
)
def test_client_accepts_the_servers_timeout(answer: int, negotiated: int, warning: type | None) -> None:
    c = client(timeout=10)
    c.receive_data(packet("LINK", ("HELO", 0, {})), 0.0)
    c.events_received()
    assert sent(c) == [
        ("LINK", 1, [("CCRE", 100, {"CIW": "client-host", "CUSR": "alice", "CDOM": "", "LINK": 10})])
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c.receive_data(packet("LINK", ("SCAR", 1, {"LINK": answer})), 0.0)
        assert c.events_received() == [p.TimeoutNegotiated(negotiated)]
    assert [type(w.message) for w in caught] == ([warning] if warning else [])
    assert sent(c) == [("LINK", 1, [("CARE", 101, {"CAR": "client-host"})])]
    c.receive_data(packet("LINK", ("SCON", 2, {})), 0.0)
    assert c.events_received() == [p.HandshakeComplete(negotiated, None)]
    assert c.timeout == (negotiated or 10)


def test_client_treats_a_bad_scar_timeout_as_legacy() -> None:
    c = client(timeout=10)
    c.receive_data(packet("LINK", ("HELO", 0, {}), ("SCAR", 1, {"LINK": -3})), 0.0)
    with pytest.warns(DecodeWarning, match="Invalid connection timeout -3 from server"):
        assert c.events_received() == [p.TimeoutNegotiated(0)]


def test_handshake_ignores_other_fields_and_keepalives() -> None:
    c = client()
    c.receive_data(packet("LINK", packet_id=0) + packet("DSPC", ("SWEP", 9, {"X": 1})), 0.0)
    assert c.events_received() == []
    assert c.data_to_send() == []
    assert c.state is p.State.HANDSHAKE


def test_handshake_error_from_the_server_is_a_command_error() -> None:
    c = client()
    c.receive_data(packet("LINK", ("ERRO", 1, {"ERRO": "Bad request", "ERRC": 400})), 0.0)
    (event,) = c.events_received()
    assert isinstance(event, p.CommandErrorReceived)
    assert (event.detail, event.code, event.field.name) == ("Bad request", 400, "ERRO")


def test_handshake_deadline() -> None:
    c = client(timeout=10, now=100.0)
    assert c.receive_deadline(105.0) == 110.0
    assert "Handshake not completed within 10 seconds" in str(c.timeout_error())
    assert client(timeout=0).receive_deadline(5.0) is None


# Keep-alives and receive timeouts, with the clock passed in.


def test_keepalive_is_postponed_by_sending() -> None:
    c = open_client(timeout=10, granted=10)
    assert c.next_timer() == 6.0
    c.send("DSPC", "SWEP", {}, 4.0)
    c.data_to_send()
    c.handle_timer(6.0)
    assert c.data_to_send() == []
    assert c.next_timer() == 10.0
    c.handle_timer(10.0)
    assert sent(c) == [("LINK", 0, [])]
    assert c.next_timer() == 16.0


def test_legacy_keepalive_at_once_then_every_three_seconds() -> None:
    c = client(timeout=10)
    c.receive_data(packet("LINK", ("HELO", 0, {}), ("SCAR", 1, {"LINK": 0}), ("SCON", 2, {})), 0.0)
    c.events_received()
    assert sent(c)[-1] == ("LINK", 0, [])
    assert c.next_timer() == 3.0
    c.send("DSPC", "SWEP", {}, 2.0)
    c.data_to_send()
    c.handle_timer(3.0)  # not postponed by sending
    assert sent(c) == [("LINK", 0, [])]
    assert c.next_timer() == 6.0


def test_keepalive_timestamp_has_whole_seconds() -> None:
    c = open_client(clock=lambda: T0.replace(microsecond=654321))
    c.handle_timer(6.0)
    (data,) = c.data_to_send()
    assert decode_packet(data)[2] == T0.replace(microsecond=0)


def test_receive_deadline_counts_from_the_first_byte_of_an_incomplete_packet() -> None:
    c = open_client()
    assert c.receive_deadline(50.0) == 60.0
    data = packet("DSPC", ("SWEP", 1, {"A": 1}))
    c.receive_data(data[:10], 52.0)
    assert c.next_event() is None
    # A trickle of bytes does not keep the connection alive.
    c.receive_data(data[10:20], 58.0)
    assert c.receive_deadline(59.0) == 62.0
    c.receive_data(data[20:], 61.0)
    assert isinstance(c.next_event(61.0), p.FieldReceived)
    assert c.receive_deadline(70.0) == 80.0
    assert "No complete packet received for 10 seconds" in str(c.timeout_error())


def test_no_timers_before_the_handshake_or_after_close() -> None:
    c = client()
    assert c.next_timer() is None
    c = open_client()
    c.close()
    assert c.next_timer() is None
    assert c.send_packet("DSPC", [("SWEP", 1, ())], 1.0) is False
    assert c.data_to_send() == []


# Filters and reply matching.


def _fields_after_filters(**filters: bool) -> tuple[list[str], list[p.Event]]:
    c = open_client(**filters)
    c.receive_data(
        packet(
            "DSPC",
            ("SWEP", 1, {"ACKN": 1}),
            ("SWEP", 1, {"WARN": "careful", "WARC": 3, "DATA": 1}),
            ("WARN", 2, {"NOTE": 1}),
            ("ERRO", 3, {"NOTE": 1}),
            ("SWEP", 1, {"ERRC": 7}),
            ("SWEP", 1, {"DATA": 2}),
        ),
        1.0,
    )
    events = c.events_received()
    return [f"{e.name}{dict(e.params)}" for e in events if isinstance(e, p.FieldReceived)], events


def test_filters_on() -> None:
    delivered, events = _fields_after_filters()
    assert delivered == ["SWEP{'WARN': 'careful', 'WARC': 3, 'DATA': 1}", "SWEP{'DATA': 2}"]
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["CommandWarningReceived", "FieldReceived", "CommandErrorReceived", "FieldReceived"]
    warning, error = events[0], events[2]
    assert isinstance(warning, p.CommandWarningReceived) and (warning.detail, warning.code) == ("careful", 3)
    assert isinstance(error, p.CommandErrorReceived) and (error.detail, error.code) == (None, 7)


def test_filters_off() -> None:
    delivered, events = _fields_after_filters(auto_erro=False, auto_warn=False, auto_ackn=False)
    assert len(delivered) == 6 and all(isinstance(e, p.FieldReceived) for e in events)


def test_server_filters_are_off_by_default() -> None:
    s = server()
    s.receive_data(packet("LINK", ("CCRE", 1, {"LINK": 10}), ("CARE", 2, {})), 0.0)
    s.events_received()
    s.receive_data(packet("DSPC", ("SWEP", 1, {"ERRO": "x", "ACKN": 1})), 0.0)
    assert [type(e) for e in s.events_received()] == [p.FieldReceived]


def test_request_matches_replies_only() -> None:
    request = p.Request("DSPC", [("SWEP", 7), ("TIME", 8)])
    assert request.matches("DSPC", "SWEP", 7)
    assert request.matches("DSPC", "TIME", 8)
    assert not request.matches("DSPL", "SWEP", 7)
    assert not request.matches("DSPC", "SWEP", 8)


def test_send_uses_new_field_ids() -> None:
    c = open_client()
    first = c.send("DSPC", "SWEP", {"FSTA": 1}, 1.0)
    second = c.send("DSPC", "SWEP", {"FSTA": 2}, 1.0)
    assert first.fields != second.fields
    assert [f[2][0][1] for f in sent(c)] == [next(iter(first.fields))[1], next(iter(second.fields))[1]]


def test_bad_values_raise_before_anything_is_queued() -> None:
    c = open_client()
    with pytest.raises(ValueError):
        c.send("dspc", "SWEP", {}, 1.0)
    with pytest.raises(TypeError):
        c.send("DSPC", "SWEP", {"X": object()}, 1.0)
    assert c.data_to_send() == []


def test_next_field_id_is_process_wide_and_wraps() -> None:
    a, b = p.next_field_id(), p.next_field_id()
    assert b == (a + 1) & 0xFFFFFFFF


# The end of a connection.


def test_eof_between_packets_is_connection_closed() -> None:
    c = open_client()
    c.receive_data(packet("DSPC", ("SWEP", 1, {})), 1.0)
    c.receive_eof()
    first, last = c.events_received()
    assert isinstance(first, p.FieldReceived)
    assert isinstance(last, p.ConnectionEnded) and isinstance(last.error, ConnectionClosed)
    assert c.state is p.State.CLOSED and c.next_event() is None


def test_eof_in_the_middle_of_a_packet_is_a_network_error() -> None:
    c = open_client()
    c.receive_data(packet("DSPC", ("SWEP", 1, {}))[:20], 1.0)
    c.receive_eof()
    (event,) = c.events_received()
    assert isinstance(event, p.ConnectionEnded) and isinstance(event.error, NetworkError)
    assert "middle of a packet" in str(event.error)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 20, "the peer sent 'HTTP/1.1 200 OK"),
        (b"\xdd\xcc\xbb\xaaLINK\x02\x00\x00\x00" + bytes(20), "less than a header and footer"),
        (b"\xdd\xcc\xbb\xaaLINK\xff\xff\xff\x01" + bytes(20), "exceeds the maximum"),
    ],
)
def test_malformed_packets_end_the_connection(data: bytes, message: str) -> None:
    c = open_client()
    good = packet("DSPC", ("SWEP", 1, {}))
    c.receive_data(good + data, 1.0)
    first, last = c.events_received()
    assert isinstance(first, p.FieldReceived)  # what came before the bad header is delivered
    assert isinstance(last, p.ConnectionEnded) and isinstance(last.error, DecodeError)
    assert message in str(last.error)
    c.receive_data(good, 2.0)  # nothing after it is read
    assert c.next_event() is None


def test_a_malformed_packet_body_ends_the_connection() -> None:
    c = open_client()
    bad = bytearray(packet("DSPC", ("SWEP", 1, {"A": 1})))
    bad[-1] = 0  # the footer magic
    c.receive_data(bytes(bad), 1.0)
    (event,) = c.events_received()
    assert isinstance(event, p.ConnectionEnded) and isinstance(event.error, DecodeError)


def test_packets_arrive_in_any_pieces() -> None:
    c = open_client()
    data = b"".join(packet("DSPC", ("SWEP", i, {"I": i})) for i in range(5))
    events = []
    for i in range(len(data)):
        c.receive_data(data[i : i + 1], 1.0)
        events += c.events_received()
    assert [e.id for e in events if isinstance(e, p.FieldReceived)] == [0, 1, 2, 3, 4]


def test_zero_copy_receive() -> None:
    c = open_client(use_numpy=True) if _have_numpy() else open_client()
    data = packet("DSPC", ("SWEP", 1, {"A": 5}))
    buf = c.get_buffer(len(data))
    buf[: len(data)] = data
    c.buffer_updated(len(data), 1.0)
    (event,) = c.events_received()
    assert isinstance(event, p.FieldReceived) and event.params == [("A", 5)]


def _have_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True


# The HTTP CONNECT step.


def test_client_tunnel_success_then_handshake() -> None:
    c = client(credentials=("user", "pass"), now=0.0, timeout=10)
    assert b"".join(c.data_to_send()) == encode_request("user", "pass")
    assert c.state is p.State.TUNNEL
    # The answer and the first packet in one piece, split inside the blank line.
    data = encode_response(200) + packet("LINK", ("HELO", 0, {}))
    c.receive_data(data[:-50], 4.0)
    c.receive_data(data[-50:], 5.0)
    assert c.events_received() == [p.TunnelEstablished()]
    assert c.receive_deadline(5.0) == 14.0  # the handshake gets a full timeout of its own
    assert [f[2][0][0] for f in sent(c)] == ["CCRE"]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (encode_response(401), AuthenticationError, "HTTP 401 Unauthorized"),
        (b"HTTP/1.1 503 Busy\r\n\r\n", NetworkError, "HTTP 503 Busy"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", NetworkError, "Invalid HTTP status line"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 2000, NetworkError, "HTTP head larger than 8192 bytes"),
    ],
)
def test_client_tunnel_failures(answer: bytes, error: type, message: str) -> None:
    c = client(credentials=("user", "pass"))
    c.receive_data(answer, 1.0)
    (event,) = c.events_received()
    assert isinstance(event, p.ConnectionEnded) and type(event.error) is error
    assert message in str(event.error)


def test_client_tunnel_eof_before_the_answer() -> None:
    c = client(credentials=("", ""))
    c.receive_data(b"HTTP/1.1 20", 1.0)
    c.receive_eof()
    (event,) = c.events_received()
    assert isinstance(event, p.ConnectionEnded) and "middle of a packet" in str(event.error)


def test_server_tunnel_accept() -> None:
    s = server(tunnel=True)
    assert s.data_to_send() == []
    s.receive_data(encode_request("user", "pass") + packet("LINK", ("CCRE", 1, {"LINK": 10})), 1.0)
    (event,) = s.events_received()
    assert isinstance(event, p.TunnelRequestReceived)
    assert event.request.credentials == ("user", "pass")
    s.accept_tunnel(1.0)
    out = b"".join(bytes(b) for b in s.data_to_send())
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    # The CCRE that arrived with the request is answered now.
    assert s.events_received() == [p.TimeoutNegotiated(10)]
    assert [f[2][0][0] for f in sent(s)] == ["SCAR"]


def test_server_tunnel_reject() -> None:
    s = server(tunnel=True)
    s.receive_data(encode_request("user", "wrong"), 1.0)
    s.events_received()
    s.reject_tunnel()
    assert b"".join(s.data_to_send()).startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    (event,) = s.events_received()
    assert isinstance(event, p.ConnectionEnded) and isinstance(event.error, AuthenticationError)
    with pytest.raises(RuntimeError):
        s.accept_tunnel(2.0)


@pytest.mark.parametrize(
    ("request_head", "status", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", b"405", "HTTP method GET not allowed"),
        (b"hello there\r\n\r\n", b"400", "Invalid HTTP request line"),
        (b"CONNECT x HTTP/1.1\r\nno colon\r\n\r\n", b"400", "Invalid HTTP header line"),
    ],
)
def test_server_tunnel_malformed_heads(request_head: bytes, status: bytes, message: str) -> None:
    s = server(tunnel=True)
    s.receive_data(request_head, 1.0)
    (event,) = s.events_received()
    assert isinstance(event, p.ConnectionEnded) and message in str(event.error)
    assert b"".join(s.data_to_send()).startswith(b"HTTP/1.1 " + status)


def test_server_tunnel_head_too_large() -> None:
    s = server(tunnel=True)
    for _ in range(10):
        s.receive_data(b"X" * 1000, 1.0)
    (event,) = s.events_received()
    assert isinstance(event, p.ConnectionEnded) and "larger than 8192" in str(event.error)


def test_client_keeps_the_servers_helo() -> None:
    c = client()
    assert c.handshake.helo is None
    c.receive_data(packet("LINK", ("HELO", 0, {"NCPV": "1.0", "SEID": "node"})), 0.0)
    c.events_received()
    assert c.handshake.helo == {"NCPV": "1.0", "SEID": "node"}


def test_server_helo_params_are_checked_at_once() -> None:
    with pytest.raises(ValueError):
        server(helo_params={"bad name": 1})
    s = server(helo_params={"NCPV": "1.0", "SEID": "node"})
    assert sent(s) == [("LINK", 1, [("HELO", 500, {"NCPV": "1.0", "SEID": "node"})])]


# Small helpers.


def test_default_port_and_identity() -> None:
    assert p.default_port(ssl=False, authenticate=False) == 9999
    assert p.default_port(ssl=False, authenticate=True) == 80
    assert p.default_port(ssl=True, authenticate=False) == 443
    hostname, _, domain = p.client_identity("", None, None)
    assert hostname and domain == ""
    assert p.client_identity("h", "u", "d") == ("h", "u", "d")


@pytest.mark.parametrize(("timeout", "interval"), [(0, 3), (1, 1), (5, 3), (10, 6), (60, 39)])
def test_keepalive_interval(timeout: int, interval: int) -> None:
    assert p.keepalive_interval(timeout) == interval
