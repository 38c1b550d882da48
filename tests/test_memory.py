"""
Memory per connection: receive buffers follow what a connection holds.

- A reader holding nothing holds no shared buffer; one grows for a burst and goes back after.
- A large packet's own buffer never grows past the size its header declares, and receiving it
  peaks under 1.5 times its size (tracemalloc), however its bytes are split.
- A thousand idle connections raise a server process's RSS by at most 16 MB.
"""

from __future__ import annotations

import array
import asyncio
import tracemalloc
from datetime import datetime, timezone

import netutil
import pytest
from hostile_peers import ServerProcess, raise_fd_limit, rss_kib

import ncplib
from ncplib import framing
from ncplib.packets import encode_packet

NOW = datetime.now(timezone.utc)


def _packet(data: array.array[int], n: int = 0) -> bytes:
    return encode_packet("DSPL", 1, NOW, b"", [("TIME", n, [("DIQT", data), ("N", n)])])


def _receive(reader: framing.PacketReader, data: bytes | memoryview, chunk: int) -> None:
    view = memoryview(data)
    while view:
        buf = reader.get_buffer()
        n = min(len(buf), len(view), chunk)
        buf[:n] = view[:n]
        reader.buffer_updated(n)
        view = view[n:]


@pytest.mark.parametrize("use_numpy", [False, True])
def test_a_reader_with_nothing_to_read_holds_no_shared_buffer(use_numpy: bool) -> None:
    if use_numpy:
        pytest.importorskip("numpy")
    small = _packet(array.array("h", range(100)))
    reader = framing.PacketReader(use_numpy=use_numpy)
    assert len(reader._buf) == 0
    _receive(reader, small, 1 << 20)
    assert 0 < len(reader._buf) <= 16 * 1024
    assert reader.next_packet() is not None
    assert reader.next_packet() is None
    assert len(reader._buf) == 0 and reader._own is None
    # A burst of packets not yet read grows the buffer (several per read)...
    burst = small * 200
    _receive(reader, burst, 1 << 20)
    assert len(reader._buf) > 16 * 1024
    assert len(reader.read_packets()) == 200
    # ... and once read, the reader is back to holding none.
    assert len(reader._buf) == 0
    assert len(reader.get_buffer()) <= framing._MAX_READ_SIZE


@pytest.mark.parametrize("chunk", [65536, 1 << 20, 7 * 1024 * 1024 + 3])
@pytest.mark.parametrize("use_numpy", [False, True])
def test_receiving_a_100_mib_packet_peaks_under_one_and_a_half_times_its_size(
    chunk: int, use_numpy: bool
) -> None:
    if use_numpy:
        pytest.importorskip("numpy")
    # A param or field holds less than 64 MiB (a 24-bit word count): two fields of two params.
    quarter = array.array("h", bytes(25 * 1024 * 1024))
    params = [("DIQ0", quarter), ("DIQ1", quarter)]
    packet = encode_packet("DSPL", 1, NOW, b"", [("TIME", 0, params), ("TIMF", 1, params)])
    del quarter, params
    size = len(packet)
    reader = framing.PacketReader(max_packet_size=size, use_numpy=use_numpy)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _receive(reader, packet, chunk)
        peak = tracemalloc.get_traced_memory()[1] - base
        # Never larger than the header says, whatever the growth steps were.
        assert reader._own is None and len(reader._ready) == 1 and len(reader._ready[0]) == size
        decoded = reader.next_packet()
    finally:
        tracemalloc.stop()
    assert decoded is not None and len(dict(decoded[4][1][2])["DIQ1"]) == 25 * 512 * 1024
    assert peak < 1.5 * size, f"peak {peak / size:.2f} times the packet"


def test_a_lying_header_gets_no_more_than_a_small_start() -> None:
    size = 100 * 1024 * 1024
    header = bytearray(_packet(array.array("h", range(100)))[:64])
    header[8:12] = (size // 4).to_bytes(4, "little")
    reader = framing.PacketReader(max_packet_size=size)
    _receive(reader, header, 1 << 20)
    assert reader._own is not None and len(reader._own) <= framing._OWN_BUFFER_START
    # Growth follows the bytes that really arrive.
    _receive(reader, bytes(3 * 1024 * 1024), 1 << 20)
    assert reader._own is not None and len(reader._own) <= 8 * 1024 * 1024


IDLE = 1000


@pytest.mark.load
@pytest.mark.slow
def test_a_thousand_idle_connections_cost_the_server_at_most_16_mb() -> None:
    async def main(port: int, pid: int) -> int:
        connections: list[ncplib.Connection] = []
        try:
            # A few first, so the server's one-time costs (imports, pools) are in the baseline.
            for _ in range(10):
                connections.append(await ncplib.connect("127.0.0.1", port, timeout=60))
            await asyncio.sleep(0.5)
            before = rss_kib(pid)
            assert before is not None
            for _ in range(IDLE // 50):
                connections += await asyncio.gather(
                    *(ncplib.connect("127.0.0.1", port, timeout=60) for _i in range(50))
                )
            # Every connection has done its handshake and is idle: give the server a moment.
            await asyncio.sleep(1.0)
            after = rss_kib(pid)
            assert after is not None
            return after - before
        finally:
            for connection in connections:
                connection.close()
            await asyncio.gather(*(c.wait_closed() for c in connections))

    with raise_fd_limit(IDLE + 300) as enough:
        if not enough:
            pytest.skip(f"cannot open {IDLE} sockets here (RLIMIT_NOFILE)")
        with ServerProcess("load", 60) as server:
            grown = netutil.run(lambda: main(server.port, server.pid), timeout=240, debug=False)
    print(f"\n{IDLE} idle connections: server RSS +{grown} KiB ({grown * 1024 / IDLE:.0f} bytes each)")
    assert grown <= 16 * 1024


def test_a_silent_connection_in_head_mode_holds_no_head_buffer() -> None:
    """
    Auth and TLS servers collect an HTTP head first: its buffer is taken at the first read,
    so a connection that never sends anything costs far less than the head's maximum size.
    """
    from ncplib._protocol import NCPProtocol
    from ncplib.tunnel import MAX_HEAD_SIZE

    async def main() -> None:
        def held(head_mode: bool) -> tuple[int, NCPProtocol]:
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False, head_mode=head_mode)
                return tracemalloc.get_traced_memory()[0] - before, protocol
            finally:
                tracemalloc.stop()

        held(True)  # Warm-up: what is measured is a connection's share, not first-use caches.
        plain, _ = held(False)
        in_head_mode, protocol = held(True)
        # What head mode adds: next to nothing, not the head's maximum size.
        assert in_head_mode - plain < MAX_HEAD_SIZE // 8, (in_head_mode, plain)
        # The head still arrives, split over reads, with the first packet after it.
        head = b"CONNECT node HTTP/1.1\r\nHost: node\r\n\r\n"
        data = head + _packet(array.array("h", range(10)))
        for start in range(0, len(data), 7):
            chunk = data[start : start + 7]
            buf = protocol.get_buffer(-1)
            buf[: len(chunk)] = chunk
            protocol.buffer_updated(len(chunk))
        assert await protocol.read_head(5) == head
        packet = protocol.next_packet()
        assert packet is not None and packet[4][0][2][1] == ("N", 0)

    netutil.run(main)
