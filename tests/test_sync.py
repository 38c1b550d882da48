"""ncplib.sync, the blocking client: real sockets against the simulated node and the asyncio server."""

from __future__ import annotations

import array
import asyncio
import contextlib
import gc
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ncplib
import ncplib.node
import ncplib.sync
from ncplib import protocol as p
from ncplib.packets import encode_packet

pytestmark = pytest.mark.timeout(120)


class BackgroundLoop:
    """An asyncio event loop in a thread of its own, standing for the remote node."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test node loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def server_thread(start: Callable[[], Awaitable[Any]]) -> Iterator[int]:
    """Runs a server made by ``start`` on a background loop; yields its port."""
    background = BackgroundLoop()
    server = background.run(start())
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:

        async def close() -> None:
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)

        background.run(close())
        background.stop()


@contextlib.contextmanager
def node(**kwargs: Any) -> Iterator[int]:
    with server_thread(lambda: ncplib.node.start_node("127.0.0.1", 0, **kwargs)) as port:
        yield port


@contextlib.contextmanager
def serving(handler: Callable[[ncplib.Connection], Awaitable[None]], **kwargs: Any) -> Iterator[int]:
    with server_thread(lambda: ncplib.start_server(handler, "127.0.0.1", 0, **kwargs)) as port:
        yield port


def ncplib_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ncplib")]


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test leaves no keep-alive thread and no unclosed socket behind."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield
        gc.collect()
    assert ncplib_threads() == []


async def echo(connection: ncplib.Connection) -> None:
    async for field in connection:
        if field.name == "ERRF":
            field.send(ERRO="Bad thing", ERRC=400)
        elif field.name == "WRNF":
            field.send(WARN="Careful", WARC=3)
            field.send(DONE=1)
        elif field.name == "QUIT":
            return
        else:
            field.send(ACKN=1)
            field.send(**field)


def test_the_example_in_the_task_description() -> None:
    with node() as port:
        with ncplib.sync.connect("127.0.0.1", port, timeout=60) as connection:
            assert connection.helo is not None and "SEID" in connection.helo  # the node names itself
            response = connection.send("DSPC", "SWEP", FSTA=400, FSTP=500)
            field = response.recv(timeout=5)
            assert field.packet_type == "DSPC" and field.name == "SWEP"
            assert field["NBIN"] > 0 and isinstance(field["PDAT"], array.array)
            for received, field in enumerate(connection.send("DSPL", "SWEP", FSTA=88, FSTP=108), 1):
                assert field["FSTA"] == 88
                if received == 3:
                    break
        assert connection.is_closing()


def test_echo_and_reply_matching() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port) as connection:
        first = connection.send("TEST", "ECHO", A=1)
        second = connection.send_packet("TEST", ECHO={"B": 2}, OTHR={"C": 3})
        assert dict(first.recv(timeout=10)) == {"A": 1}
        assert dict(second.recv(timeout=10)) == {"B": 2}
        assert dict(second.recv_field("OTHR", timeout=10)) == {"C": 3}
        # A response gets its own replies only; others received meanwhile are dropped.
        connection.send("TEST", "ECHO", D=4)
        assert dict(connection.send("TEST", "ECHO", E=5).recv(timeout=10)) == {"E": 5}
        field = connection.send("TEST", "ECHO", X="y").recv(timeout=10)
        reply = field.send(Z=1)
        assert isinstance(reply, ncplib.sync.Response)
        assert repr(field) == "<Field 'TEST' 'ECHO' {'X': 'y'}>"
        assert field.connection is connection


def test_connection_recv_field_drops_other_fields() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port) as connection:
        connection.send("TEST", "ECHO", A=1)
        connection.send("TEST", "OTHR", B=2)
        field = connection.recv_field("TEST", "OTHR", timeout=10)
        assert dict(field) == {"B": 2}
        # The ECHO reply arrived first and was dropped: the next field is a new one.
        assert dict(connection.send("TEST", "ECHO", C=3).recv(timeout=10)) == {"C": 3}


def test_recv_timeout_leaves_the_connection_usable() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port) as connection:
        with pytest.raises(ncplib.NetworkTimeoutError, match=r"No field received within 0\.2 seconds"):
            connection.recv(timeout=0.2)
        assert connection.send("TEST", "ECHO", A=1).recv(timeout=10)["A"] == 1


def test_command_error_and_warning() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port) as connection:
        with pytest.raises(ncplib.CommandError) as caught:
            connection.send("TEST", "ERRF").recv(timeout=10)
        assert (caught.value.detail, caught.value.code) == ("Bad thing", 400)
        assert isinstance(caught.value.field, ncplib.sync.Field)
        with pytest.warns(ncplib.CommandWarning, match="Careful"):
            assert connection.send("TEST", "WRNF").recv_field("WRNF", timeout=10).get("DONE") is None
        # ACKN fields are dropped by default: the echo comes first.
        assert dict(connection.send("TEST", "ECHO", A=1).recv(timeout=10)) == {"A": 1}


def test_filters_can_be_switched_off() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port, auto_erro=False, auto_ackn=False) as c:
        assert dict(c.send("TEST", "ERRF").recv(timeout=10)) == {"ERRO": "Bad thing", "ERRC": 400}
        assert dict(c.send("TEST", "ECHO", A=1).recv(timeout=10)) == {"ACKN": 1}


def test_server_closing_ends_iteration_and_recv_raises_connection_closed() -> None:
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port) as connection:
        connection.send("TEST", "QUIT")
        assert list(connection) == []
        with pytest.raises(ncplib.ConnectionClosed):
            connection.recv(timeout=1)


def test_recv_after_close_raises_connection_closed() -> None:
    with serving(echo) as port:
        connection = ncplib.sync.connect("127.0.0.1", port)
        connection.close()
        connection.close()  # twice is harmless
        with pytest.raises(ncplib.ConnectionClosed):
            connection.recv()
        # Sending to a closed connection drops the packet, as the asyncio client does.
        connection.send("TEST", "ECHO")


def test_close_from_another_thread_wakes_a_blocked_reader() -> None:
    with serving(echo) as port:
        connection = ncplib.sync.connect("127.0.0.1", port)
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                connection.recv()
            except BaseException as ex:
                errors.append(ex)

        thread = threading.Thread(target=reader)
        thread.start()
        time.sleep(0.2)
        connection.close()
        thread.join(10)
        assert not thread.is_alive()
        assert [type(e) for e in errors] == [ncplib.ConnectionClosed]


def test_send_is_safe_from_several_threads() -> None:
    count = 50
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port, auto_ackn=True) as connection:
        big = array.array("H", range(40000))  # several writes per packet

        def sender(index: int) -> None:
            for n in range(count):
                connection.send("TEST", "ECHO", T=index, N=n, BIG=big)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        seen = set()
        while len(seen) < 4 * count:
            field = connection.recv(timeout=30)
            assert field["BIG"] == big  # whole packets, never interleaved
            seen.add((field["T"], field["N"]))
        assert seen == {(i, n) for i in range(4) for n in range(count)}


def test_keepalives_are_sent_while_the_program_does_not_read() -> None:
    received: list[int] = []

    async def handler(connection: ncplib.Connection) -> None:
        # The server times out after 5 s of silence; the client stays silent for longer.
        async for field in connection:
            received.append(field["N"])

    with serving(handler, timeout=5) as port, ncplib.sync.connect("127.0.0.1", port, timeout=5) as connection:
        connection.send("TEST", "PING", N=1)
        time.sleep(7)  # two keep-alives (every 3 s), and no reading at all
        connection.send("TEST", "PING", N=2)
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received == [1, 2]


def handshake_then(after: Callable[[socket.socket], None]) -> tuple[socket.socket, threading.Thread]:
    """A hand-made server (the sans-IO core over a plain socket) that completes the handshake of
    one client, then runs ``after`` on the connection. Returns the listener and its thread."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            server = p.ServerProtocol(timeout=60)
            conn.sendall(b"".join(server.data_to_send()))
            while server.state is not p.State.OPEN:
                server.receive_data(conn.recv(65536), time.monotonic())
                server.events_received()
                conn.sendall(b"".join(server.data_to_send()))
            after(conn)

    thread = threading.Thread(target=serve)
    thread.start()
    return listener, thread


def test_network_timeout_when_the_server_goes_silent() -> None:
    done = threading.Event()
    listener, thread = handshake_then(lambda conn: done.wait(30))  # then nothing at all
    try:
        with (
            ncplib.sync.connect("127.0.0.1", listener.getsockname()[1], timeout=5) as connection,
            pytest.raises(ncplib.NetworkTimeoutError, match="No complete packet received for 5 seconds"),
        ):
            connection.recv()
    finally:
        done.set()
        thread.join(10)
        listener.close()


def test_connect_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ncplib.NetworkError, match=r"Could not connect to 127\.0\.0\.1"):
        ncplib.sync.connect("127.0.0.1", port)
    with pytest.raises(ValueError):
        ncplib.sync.connect("127.0.0.1", port, max_packet_size=8)


def test_handshake_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(ncplib.NetworkTimeoutError, match="Handshake not completed within 1 seconds"):
            ncplib.sync.connect("127.0.0.1", listener.getsockname()[1], timeout=1)
    finally:
        listener.close()


def test_a_malformed_packet_ends_the_connection() -> None:
    def answer_in_http(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(40))
        conn.recv(1)

    listener, thread = handshake_then(answer_in_http)
    try:
        with ncplib.sync.connect("127.0.0.1", listener.getsockname()[1]) as connection:
            for _ in range(2):  # the same error again on every call
                with pytest.raises(
                    ncplib.DecodeError, match="Invalid packet header magic 48545450: the peer sent"
                ):
                    connection.recv(timeout=10)
            assert connection.is_closing()
    finally:
        thread.join(10)
        listener.close()


def test_a_packet_trickling_in_does_not_keep_the_connection_alive() -> None:
    # One byte a second of a packet that never completes: the timeout counts from its first byte.
    done = threading.Event()
    data = encode_packet("DSPC", 1, p._utcnow(), b"", [("SWEP", 1, [("PDAT", bytes(64))])])
    sent = [0]

    def trickle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for byte in data[:-1]:
                conn.sendall(bytes([byte]))
                sent[0] += 1
                if done.wait(1):
                    return

    listener, thread = handshake_then(trickle)
    try:
        with ncplib.sync.connect("127.0.0.1", listener.getsockname()[1], timeout=5) as connection:
            with pytest.raises(ncplib.NetworkTimeoutError, match="No complete packet received for 5 seconds"):
                connection.recv()
            # The timeout came while bytes were still arriving: each byte did not restart it.
            assert sent[0] < len(data) - 1
    finally:
        done.set()
        thread.join(10)
        listener.close()


def test_memory_stays_bounded_while_the_program_does_not_read() -> None:
    # The server sends 64 MiB of sweeps as fast as it can; the program reads two fields.
    sweep = encode_packet("DSPL", 1, p._utcnow(), b"", [("SWEP", 1, [("PDAT", bytes(65536))])])

    def flood(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for _ in range(1024):
                conn.sendall(sweep)

    listener, thread = handshake_then(flood)
    try:
        with ncplib.sync.connect("127.0.0.1", listener.getsockname()[1], auto_ackn=False) as connection:
            connection.recv(timeout=10)
            time.sleep(1)  # the server keeps sending meanwhile
            connection.recv(timeout=10)
            # Held by the connection: at most what one read brought in, never the backlog.
            assert connection._protocol.reader.buffered < 4 * len(sweep)
    finally:
        thread.join(30)
        listener.close()


def test_legacy_keepalives_at_once_then_every_three_seconds() -> None:
    # A client with timeout 0 proposes LINK=0: a legacy connection, as 6.1.0 makes them.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    keepalive = b"LINK\x0a\x00\x00\x00\x00\x00\x00\x00"  # type LINK, 40 bytes, packet id 0
    arrivals: list[float] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            stamp = p.ServerProtocol(timeout=60)
            conn.sendall(b"".join(stamp.data_to_send()))
            while len(arrivals) < 2:
                data = conn.recv(65536)
                if not data:
                    return
                stamp.receive_data(data, time.monotonic())
                stamp.events_received()
                conn.sendall(b"".join(stamp.data_to_send()))
                arrivals.extend([time.monotonic()] * data.count(keepalive))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with ncplib.sync.connect("127.0.0.1", port, timeout=0) as connection:
            assert connection._protocol.negotiated_timeout == 0
            thread.join(20)
    finally:
        listener.close()
    assert len(arrivals) >= 2
    assert arrivals[1] - arrivals[0] > 2  # one at once, the next 3 s later


def test_numpy_mode() -> None:
    numpy = pytest.importorskip("numpy")
    with serving(echo) as port, ncplib.sync.connect("127.0.0.1", port, use_numpy=True) as connection:
        values = numpy.arange(100000, dtype="<i2")
        field = connection.send("TEST", "ECHO", DIQT=values).recv(timeout=10)
        assert isinstance(field["DIQT"], numpy.ndarray) and not field["DIQT"].flags.writeable
        assert (field["DIQT"] == values).all()


def test_works_inside_a_running_event_loop() -> None:
    with serving(echo) as port:

        async def notebook_cell() -> int:
            # Blocking calls inside a coroutine, as in a Jupyter cell: no loop of ours is used.
            with ncplib.sync.connect("127.0.0.1", port) as connection:
                return int(connection.send("TEST", "ECHO", A=7).recv(timeout=10)["A"])

        assert asyncio.run(notebook_cell()) == 7


def test_close_leaves_no_thread_or_socket() -> None:
    with serving(echo) as port:
        before = set(threading.enumerate())
        connection = ncplib.sync.connect("127.0.0.1", port)
        assert len(ncplib_threads()) == 1
        sock = connection.socket
        connection.close()
        assert ncplib_threads() == []
        assert sock.fileno() == -1
        assert set(threading.enumerate()) <= before


def test_an_unreferenced_connection_stops_its_thread() -> None:
    with serving(echo) as port:
        connection = ncplib.sync.connect("127.0.0.1", port)
        connection.socket.close()  # the socket itself was closed, only the thread remains
        del connection
        gc.collect()
        deadline = time.monotonic() + 5
        while ncplib_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ncplib_threads() == []


def _certificate(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from peers.harness import make_certificate

    made = make_certificate(tmp_path)
    if made is None:
        pytest.skip("neither the openssl command nor trustme is available")
    cert, key, authority = made
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(authority))
    return server_context, client_context


def test_tls_and_credentials(tmp_path: Path) -> None:
    server_context, client_context = _certificate(tmp_path)

    def authenticate(username: str, password: str) -> bool:
        return (username, password) == ("alice", "secret")

    with serving(echo, ssl=server_context, authenticate=authenticate) as port:
        with ncplib.sync.connect(
            "127.0.0.1", port, ssl=client_context, username="alice", password="secret"
        ) as connection:
            assert isinstance(connection.socket, ssl.SSLSocket)
            assert connection.send("TEST", "ECHO", A=1).recv(timeout=10)["A"] == 1
        with pytest.raises(ncplib.AuthenticationError, match="HTTP 401 Unauthorized"):
            ncplib.sync.connect("127.0.0.1", port, ssl=client_context, username="alice", password="wrong")


def test_credentials_without_tls() -> None:
    with (
        serving(echo, authenticate=lambda u, pw: u == "bob") as port,
        ncplib.sync.connect("127.0.0.1", port, username="bob", password="x") as connection,
    ):
        assert connection.send("TEST", "ECHO", A=2).recv(timeout=10)["A"] == 2
