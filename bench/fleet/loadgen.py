"""
Load generator for the fleet benchmark: many simulated nodes in one cheap process.

No asyncio: one thread, :mod:`selectors`, non-blocking sockets and pre-encoded packets. For each
connection it does the server side of the LINK handshake (HELO, SCAR, SCON), answers the first
command with an ACKN field and then sends data packets that repeat the command's packet type,
field name and id, each packet its own ``send()`` as a node writes them: either paced at
``--rate`` packets per second per connection (phases spread), or flat out (``--rate 0``). A
connection whose socket is full skips its paced packets until it drains (the skips are counted).
Packets from the client after the command (keep-alives) are read and dropped.

Usage: ``python loadgen.py --shape sweep --rate 40``, with the interpreter that has our ncplib
(only its encoder is used, before streaming starts). Prints ``{"port": N}``, serves until its
standard input closes, then prints one JSON line: packets sent, skipped, and its CPU share (CPU
seconds over wall seconds) while streaming.
"""

from __future__ import annotations

import argparse
import array
import heapq
import json
import selectors
import socket
import sys
import time
from datetime import datetime, timezone

from shapes import SHAPES

from ncplib.packets import decode_packet, encode_packet

INFO = b"\0\0\0\1"
# Flat out: at most this many packets to one connection per readiness event (fairness).
BURST = 8


class Node:
    """One simulated node's connection."""

    __slots__ = ("inbuf", "out", "packet", "sock", "stage")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.stage = 0  # 0: wait CCRE, 1: wait CARE, 2: wait command, 3: streaming
        self.out: memoryview | None = None  # the rest of a partly sent packet
        self.packet = b""


def _packet(packet_type: str, name: str, field_id: int, params: list[tuple[str, object]]) -> bytes:
    return encode_packet(packet_type, 1, datetime.now(timezone.utc), INFO, [(name, field_id, params)])


class LoadGenerator:
    def __init__(self, shape_name: str, rate: float) -> None:
        self.shape = SHAPES[shape_name]
        self.values = array.array(self.shape.typecode, (i % 200 for i in range(self.shape.count)))
        self.rate = rate
        self.sel = selectors.DefaultSelector()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.heap: list[tuple[float, int, Node]] = []
        self.seq = 0
        self.sent = 0
        self.skipped = 0
        self.streaming_since: tuple[float, float] | None = None  # (wall, cpu)
        self.running = True

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def run(self) -> dict[str, float]:
        while self.running:
            timeout = None
            if self.heap:
                timeout = max(self.heap[0][0] - time.monotonic(), 0.0)
            for key, events in self.sel.select(timeout):
                tag = key.data
                if tag == "accept":
                    self._accept()
                elif tag == "stdin":
                    if not sys.stdin.buffer.read1(4096):
                        self.running = False
                else:
                    node: Node = tag
                    if events & selectors.EVENT_READ:
                        self._read(node)
                    if events & selectors.EVENT_WRITE and node.sock.fileno() >= 0:
                        self._writable(node)
            if self.heap:
                self._paced()
        wall0, cpu0 = self.streaming_since or (time.monotonic(), time.process_time())
        wall = max(time.monotonic() - wall0, 1e-9)
        return {"sent": self.sent, "skipped": self.skipped, "cpu_share": (time.process_time() - cpu0) / wall}

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            node = Node(sock)
            self.sel.register(sock, selectors.EVENT_READ, node)
            self._send_small(node, _packet("LINK", "HELO", 1, []))

    def _send_small(self, node: Node, data: bytes) -> None:
        # Handshake packets go out on a fresh socket with room to spare.
        try:
            node.sock.sendall(data)
        except OSError:
            self._drop(node)

    def _drop(self, node: Node) -> None:
        if node.sock.fileno() >= 0:
            self.sel.unregister(node.sock)
            node.sock.close()
        node.stage = 4

    def _read(self, node: Node) -> None:
        try:
            data = node.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(node)
            return
        if node.stage >= 3:
            return  # keep-alives while streaming: dropped unread
        node.inbuf += data
        while len(node.inbuf) >= 12 and node.stage < 3:
            size = int.from_bytes(node.inbuf[8:12], "little") * 4
            if len(node.inbuf) < size:
                return
            packet = decode_packet(bytes(node.inbuf[:size]))
            del node.inbuf[:size]
            self._handshake(node, packet)

    def _handshake(self, node: Node, packet: tuple) -> None:  # type: ignore[type-arg]
        packet_type, _id, _time, _info, fields = packet
        if packet_type == "LINK":
            for name, _field_id, params in fields:
                params = dict(params)
                if name == "CCRE" and node.stage == 0:
                    proposed = params.get("LINK")
                    timeout = 0 if not proposed else min(max(int(proposed), 5), 60)
                    self._send_small(node, _packet("LINK", "SCAR", 2, [("LINK", timeout)]))
                    node.stage = 1
                elif name == "CARE" and node.stage == 1:
                    self._send_small(node, _packet("LINK", "SCON", 3, []))
                    node.stage = 2
            return
        if node.stage != 2 or not fields:
            return
        name, field_id, _params = fields[0]
        shape = self.shape
        self._send_small(node, _packet(packet_type, name, field_id, [("ACKN", 1)]))
        node.packet = _packet(packet_type, name, field_id, [(shape.param, self.values)])
        node.stage = 3
        if self.streaming_since is None:
            self.streaming_since = (time.monotonic(), time.process_time())
        if self.rate > 0:
            self.seq += 1
            phase = (self.seq * 0.618034) % 1.0 / self.rate
            heapq.heappush(self.heap, (time.monotonic() + phase, self.seq, node))
        else:
            self.sel.modify(node.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, node)

    def _send(self, node: Node, data: memoryview | bytes) -> bool:
        """Sends one packet (or its rest); False if the socket is full (the rest is kept)."""
        try:
            n = node.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._drop(node)
            return False
        if n < len(data):
            node.out = memoryview(data)[n:]
            return False
        node.out = None
        return True

    def _writable(self, node: Node) -> None:
        if node.out is not None:
            if not self._send(node, node.out):
                return
            self.sent += 1
        if self.rate > 0:
            # Paced: the rest went out; wait for the next due time again.
            self.sel.modify(node.sock, selectors.EVENT_READ, node)
            return
        for _ in range(BURST):
            if not self._send(node, node.packet):
                return
            self.sent += 1

    def _paced(self) -> None:
        now = time.monotonic()
        period = 1.0 / self.rate
        heap = self.heap
        while heap and heap[0][0] <= now:
            due, seq, node = heap[0]
            if node.stage != 3:
                heapq.heappop(heap)
                continue
            if node.out is not None:
                self.skipped += 1
            elif self._send(node, node.packet):
                self.sent += 1
            elif node.stage == 3:
                self.sel.modify(node.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, node)
            due += period
            if due < now - period:
                due = now  # fell behind (a busy machine): do not send a burst to catch up
            heapq.heapreplace(heap, (due, seq, node))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="sweep")
    parser.add_argument("--rate", type=float, default=None, help="packets/s per connection; 0: flat out")
    args = parser.parse_args()
    rate = SHAPES[args.shape].rate if args.rate is None else args.rate
    generator = LoadGenerator(args.shape, rate)
    print(json.dumps({"port": generator.port}), flush=True)
    result = generator.run()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
