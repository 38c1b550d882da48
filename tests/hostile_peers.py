"""
Helpers for the hostile-peer, fault and load tests (always on 127.0.0.1, port 0).

- Malformed input: :func:`malformed_packets` names byte strings that break the NCP framing or the
  packet structure in one precise way each (bad magic, absurd or too small sizes, params that
  overflow their field, a packet cut short, random bytes).
- Hand-played peers: :func:`client_handshake_by_hand` plays the client side of the handshake on
  plain asyncio streams; :func:`read_until_closed` waits (bounded) for the other side to close.
- Servers to attack: :func:`echo_handler` (every field is sent back, with flow control) and
  :func:`load_handler` (``DSPL LOAD`` streams fields carrying a sequence number and a CRC-32 of
  their array until ``DSPC STOP``), in the test process or in a subprocess started by
  :class:`ServerProcess` (``python tests/hostile_peers.py KIND TIMEOUT`` prints its port).
- Streams to check: :func:`checked_fields` builds and :class:`StreamChecker` verifies fields with
  sequence numbers and checksums.
- Resources: :func:`open_fds`, :func:`rss_kib` and :func:`peak_rss_kib` (Linux ``/proc``; they
  return :data:`None` elsewhere), :func:`raise_fd_limit`, :func:`scheduled_timers`, and
  :class:`Baseline` (tasks, descriptors and timers before a test, checked after it).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ncplib
from ncplib.packets import decode_packet, encode_packet

__all__ = [
    "base_packet",
    "malformed_packets",
    "client_handshake_by_hand",
    "read_until_closed",
    "echo_handler",
    "load_handler",
    "node_handler",
    "ServerProcess",
    "checked_fields",
    "StreamChecker",
    "EchoLoop",
    "open_fds",
    "rss_kib",
    "peak_rss_kib",
    "raise_fd_limit",
    "scheduled_timers",
    "Baseline",
]

HERE = Path(__file__).resolve().parent

# Offsets in a packet of one field whose first param starts right after the field header.
_SIZE_OFFSET = 8
_FIELD_SIZE_OFFSET = 32 + 4
_PARAM_SIZE_OFFSET = 32 + 12 + 4


def base_packet(packet_type: str = "DSPC", field_name: str = "SWEP", field_id: int = 7) -> bytes:
    """A valid packet of one field whose first param is the i32 ``FSTA``, then a u16 array."""
    params: list[tuple[str, Any]] = [("FSTA", 400), ("DATA", array.array("H", range(8)))]
    return encode_packet(
        packet_type, 1, datetime.now(timezone.utc), b"\0\0\0\0", [(field_name, field_id, params)]
    )


def _u24(data: bytes, offset: int, words: int) -> bytes:
    out = bytearray(data)
    out[offset : offset + 3] = words.to_bytes(3, "little")
    return bytes(out)


def _u32(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, offset, value)
    return bytes(out)


def malformed_packets(seed: int = 1) -> dict[str, bytes]:
    """
    Byte strings that each break one rule of the NCP format, by name.

    Each is malformed from the header alone (``wrong_magic``, ``huge_4gib``, ``size_zero``,
    ``size_too_small``, ``random``) or only once the whole packet is read (the field and param
    cases, ``bad_footer``). ``truncated`` is a valid packet cut in the middle (its sender then
    closes).
    """
    good = base_packet()
    rng = random.Random(seed)
    random_bytes = bytes(rng.getrandbits(8) for _ in range(4096))
    return {
        "random": random_bytes,
        "wrong_magic": b"\xde\xad\xbe\xef" + good[4:],
        # 2**30 words: a 4 GiB packet (the largest a u32 word count gives is 16 GiB).
        "huge_4gib": _u32(good, _SIZE_OFFSET, 2**30),
        "huge_16gib": _u32(good, _SIZE_OFFSET, 0xFFFFFFFF),
        "size_zero": _u32(good, _SIZE_OFFSET, 0),
        "size_too_small": _u32(good, _SIZE_OFFSET, 9),
        "size_not_matching": _u32(good, _SIZE_OFFSET, len(good) // 4 - 1),
        "field_size_zero": _u24(good, _FIELD_SIZE_OFFSET, 0),
        "field_size_too_small": _u24(good, _FIELD_SIZE_OFFSET, 1),
        "field_overflows_packet": _u24(good, _FIELD_SIZE_OFFSET, 0xFFFFFF),
        "param_size_zero": _u24(good, _PARAM_SIZE_OFFSET, 0),
        "param_size_too_small": _u24(good, _PARAM_SIZE_OFFSET, 1),
        "param_overflows_field": _u24(good, _PARAM_SIZE_OFFSET, 0xFFFF),
        "bad_footer": good[:-4] + b"\x00\x00\x00\x00",
        "truncated": good[: len(good) // 2],
    }


async def read_packet(reader: asyncio.StreamReader) -> tuple[str, int, Any, bytes, list[Any]]:
    """Reads and decodes one packet (for hand-played peers)."""
    header = await reader.readexactly(12)
    size = int.from_bytes(header[8:12], "little") * 4
    return decode_packet(header + await reader.readexactly(size - 12))


async def read_field(reader: asyncio.StreamReader, name: str) -> dict[str, Any]:
    """Reads packets until one holds a field called ``name``; returns that field's params."""
    while True:
        packet = await read_packet(reader)
        for field_name, _, params in packet[4]:
            if field_name == name:
                return dict(params)


def packet(packet_type: str, name: str, field_id: int = 1, **params: Any) -> bytes:
    """One packet of one field, encoded with the current time."""
    return encode_packet(
        packet_type, 1, datetime.now(timezone.utc), b"\0\0\0\0", [(name, field_id, list(params.items()))]
    )


async def client_handshake_by_hand(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, link: int = 5
) -> int:
    """Plays the client side of the handshake on plain streams; returns the granted timeout."""
    await read_field(reader, "HELO")
    writer.write(packet("LINK", "CCRE", CIW="hostile", CUSR="x", CDOM="", LINK=link))
    scar = await read_field(reader, "SCAR")
    writer.write(packet("LINK", "CARE", 2, CAR="hostile"))
    await read_field(reader, "SCON")
    return int(scar["LINK"])


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> float:
    """
    Reads and discards everything until the peer closes; returns how long that took.

    :raises AssertionError: if the peer did not close within ``limit`` seconds.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + limit
    while True:
        remaining = deadline - loop.time()
        assert remaining > 0, f"the peer did not close within {limit} s"
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except asyncio.TimeoutError:
            raise AssertionError(f"the peer did not close within {limit} s") from None
        except ConnectionError:
            return loop.time() - start
        if not data:
            return loop.time() - start


# Servers.


async def echo_handler(connection: ncplib.Connection) -> None:
    """Sends every field back as it came, waiting for the client to read (flow control)."""
    try:
        async for field in connection:
            field.send(**field)
            await connection.drain()
    except ncplib.NCPError:
        pass


_POOL = [array.array("H", random.Random(n).choices(range(65536), k=64 + 8 * n)) for n in range(32)]


def checked_fields(seq: int) -> dict[str, Any]:
    """The params of stream field number ``seq``: ``SEQN``, an array ``DATA`` and its ``CRC``."""
    data = array.array("H", _POOL[seq % len(_POOL)])
    data[0] = seq & 0xFFFF
    data[1] = (seq >> 16) & 0xFFFF
    return {"SEQN": ncplib.u32(seq & 0xFFFFFFFF), "DATA": data, "CRC": ncplib.u32(zlib.crc32(data))}


class StreamChecker:
    """Checks stream fields from :func:`checked_fields`: in order, none lost, none corrupted."""

    def __init__(self) -> None:
        self.next = 0
        self.problems: list[str] = []

    def check(self, field: dict[str, Any]) -> None:
        """Records a problem unless ``field`` is the next one and intact."""
        seq = int(field.get("SEQN", -1))
        data = field.get("DATA")
        if seq != self.next:
            self.problems.append(f"expected field {self.next}, got {seq}")
        if not isinstance(data, array.array) or zlib.crc32(data) != int(field.get("CRC", -1)):
            self.problems.append(f"field {seq}: checksum mismatch")
        elif (data[0], data[1]) != (seq & 0xFFFF, (seq >> 16) & 0xFFFF):
            self.problems.append(f"field {seq}: data of another field")
        self.next = seq + 1


class EchoLoop:
    """
    Sends :func:`checked_fields` over ``connection`` (to an echo server), one every ``interval``
    seconds, and checks every echo, until :meth:`finish`.
    """

    def __init__(self, connection: ncplib.Connection, interval: float = 0.01) -> None:
        self.connection = connection
        self.interval = interval
        self.checker = StreamChecker()
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        sent = 0
        while not self._stop.is_set():
            self.connection.send("DSPL", "ECHO", **checked_fields(sent))
            sent += 1
            self.checker.check(await self.connection.recv())
            await asyncio.sleep(self.interval)

    async def finish(self, limit: float) -> None:
        """Stops; fails unless every echo arrived intact (and at least one did) within ``limit`` s."""
        self._stop.set()
        await asyncio.wait_for(self.task, limit)
        assert not self.checker.problems, self.checker.problems[:5]
        assert self.checker.next > 0

    async def cancel(self) -> None:
        """Stops without checking (the connection may be broken)."""
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ncplib.NCPError):
                await self.task


async def load_handler(connection: ncplib.Connection) -> None:
    """
    ``DSPL LOAD`` starts a stream of :func:`checked_fields` (as fast as the client reads);
    ``DSPC STOP`` ends it and answers with ``SENT``, the number of fields streamed; ``DSPC CONN``
    answers ``OPEN``, the number of connections being served; anything else is echoed.
    """
    stream: asyncio.Task[None] | None = None
    sent = 0

    async def run_stream(field: ncplib.Field) -> None:
        nonlocal sent
        with contextlib.suppress(ncplib.NCPError):
            while True:
                field.send(**checked_fields(sent))
                sent += 1
                await connection.drain()
                if sent % 8 == 0:
                    await asyncio.sleep(0)

    _OPEN.add(connection)
    try:
        async for field in connection:
            if field.packet_type == "DSPL" and field.name == "LOAD":
                if stream is None:
                    stream = asyncio.ensure_future(run_stream(field))
            elif field.name == "STOP":
                if stream is not None:
                    stream.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await stream
                    stream = None
                field.send(SENT=ncplib.u32(sent))
            elif field.name == "CONN":
                field.send(OPEN=len(_OPEN))
            else:
                field.send(**field)
    except ncplib.NCPError:
        pass
    finally:
        _OPEN.discard(connection)
        if stream is not None:
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream


_OPEN: set[ncplib.Connection] = set()


def node_handler(rate: float) -> Any:
    """The ``handle`` method of a new simulated node streaming ``rate`` replies per second."""
    from ncplib.node import SimulatedNode

    return SimulatedNode(rate=rate, synthesis="auto", seed=1).handle


class ServerProcess:
    """
    A server of ``kind`` (``echo``, ``load`` or ``node``) in a subprocess of its own.

    Use as a context manager; :attr:`port` is where it listens (``port`` if given, else a free
    one), :attr:`pid` its process id. The subprocess ends when its stdin closes (so it never
    outlives the test), or at once with :meth:`kill`.
    """

    def __init__(self, kind: str, timeout: int = 5, *, rate: float = 0.0, port: int = 0) -> None:
        self.kind = kind
        self.timeout = timeout
        self.rate = rate
        self.port = port
        self.pid = 0
        self._process: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        """The command line of the subprocess (it prints its port, then serves until stdin closes)."""
        command = [sys.executable, str(Path(__file__)), self.kind, str(self.timeout), str(self.rate)]
        return [*command, "--port", str(self.port)]

    def __enter__(self) -> ServerProcess:
        self._process = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(HERE)
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(10)
            raise RuntimeError(f"server process exited with {self._process.returncode}")
        self.port = int(line)
        self.pid = self._process.pid
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        process.stdin.close()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """Kills the server at once (``SIGKILL``: no close, the kernel resets its connections)."""
        process = self._process
        assert process is not None
        process.kill()
        process.wait(10)


async def _serve_in_process(kind: str, timeout: int, rate: float, port: int) -> None:
    handler = {"echo": echo_handler, "load": load_handler}.get(kind) or node_handler(rate)
    server = await ncplib.start_server(handler, "127.0.0.1", port, timeout=timeout)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


# Resources.


def open_fds() -> int | None:
    """The number of file descriptors this process has open (Linux only, else :data:`None`)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _status(pid: int | None, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def rss_kib(pid: int | None = None) -> int | None:
    """The resident set size of a process (default: this one) in KiB, or :data:`None`."""
    return _status(pid, "VmRSS")


def peak_rss_kib(pid: int | None = None) -> int | None:
    """The peak resident set size of a process in KiB, or :data:`None`."""
    return _status(pid, "VmHWM")


def scheduled_timers() -> int:
    """Timers not cancelled on the running loop (asyncio's loop keeps them in ``_scheduled``)."""
    loop = asyncio.get_running_loop()
    return sum(1 for handle in getattr(loop, "_scheduled", []) if not handle.cancelled())


class Baseline:
    """Tasks, file descriptors and timers before a test; :meth:`check` compares after it."""

    def __init__(self) -> None:
        gc.collect()
        self.tasks = asyncio.all_tasks()
        self.fds = open_fds()
        self.timers = scheduled_timers()

    async def check(self) -> None:
        await asyncio.sleep(0.05)
        gc.collect()
        left = asyncio.all_tasks() - self.tasks
        assert not left, left
        assert scheduled_timers() <= self.timers, "timers left behind"
        if self.fds is not None:
            for _ in range(100):
                if open_fds() == self.fds:
                    break
                await asyncio.sleep(0.05)
            assert open_fds() == self.fds, "sockets left behind"


@contextlib.contextmanager
def raise_fd_limit(needed: int) -> Iterator[bool]:
    """
    Raises this process's soft limit on open files to at least ``needed`` (up to the hard limit),
    restoring it afterwards. Yields whether the limit is now high enough. Subprocesses started
    inside the block inherit the raised limit.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        yield False
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    raised = soft != resource.RLIM_INFINITY and soft < wanted
    if raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        yield now == resource.RLIM_INFINITY or now >= needed
    finally:
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def monotonic() -> float:
    """:func:`time.monotonic` (one name for the tests to import)."""
    return time.monotonic()


def main(argv: list[str]) -> int:
    """Runs a server in this process: ``KIND TIMEOUT [RATE] [--port PORT]``; prints the port."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["echo", "load", "node"])
    parser.add_argument("timeout", type=int)
    parser.add_argument("rate", type=float, nargs="?", default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )
    except (ImportError, ValueError, OSError):
        pass
    asyncio.run(_serve_in_process(args.kind, args.timeout, args.rate, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
