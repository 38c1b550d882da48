"""
``ncplib record``: streams from one or many nodes at once (an :class:`ncplib.Fleet`, which
reconnects on its own) and writes each node's fields to files of its own (see
:mod:`ncplib.recorder`), until ``--duration`` seconds, Ctrl-C or SIGTERM. It exits 0 then, with
every file finished; 2 on bad usage or when a file cannot be written (the message names it; the
files written until then are valid).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ncplib.cli._arguments import _positive
from ncplib.cli._commands import _reason
from ncplib.cli._errors import EXIT_COMMAND_ERROR, EXIT_NETWORK, EXIT_OK, EXIT_USAGE, UsageError, _Failure
from ncplib.cli._values import parse_param
from ncplib.recorder import (
    DEFAULT_MAX_PENDING,
    BackgroundWriter,
    CaptureFiles,
    RecordingError,
    SigMFFiles,
    Sink,
    file_label,
    packet_item,
)

__all__ = ["add_command", "parse_command"]

logger = logging.getLogger(__name__)

# Seconds between two refreshes of the status table (terminal) or two status lines (log).
_TABLE_EVERY = 1.0
_LOG_EVERY = 10.0


def parse_command(text: str) -> tuple[str, str, dict[str, Any]]:
    """
    Splits ``'DSPL SWEP FSTA=400 FSTP=500'`` into packet type, field name and params (values as
    ``ncplib send`` parses them).

    :raises UsageError: if it has no packet type and field name, or a param is invalid.
    """
    try:
        words = shlex.split(text)
    except ValueError as ex:
        raise UsageError(f"invalid --command {text!r}: {ex}") from None
    if len(words) < 2:
        raise UsageError(f"invalid --command {text!r}: use 'PACKET FIELD [NAME=VALUE ...]'")
    return words[0], words[1], dict(parse_param(word) for word in words[2:])


def _check_directory(directory: Path) -> None:
    """Creates the output directory and proves a file can be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as ex:
        raise _Failure(f"cannot write {directory}: {ex.strerror or ex}", EXIT_USAGE) from None


class _Table:
    """Per node: connected, fields/s, MB written, reconnects, last error."""

    def __init__(self, stream: IO[str], live: bool) -> None:
        self.stream = stream
        self.live = live
        self._lines = 0
        self._last: dict[str, tuple[int, float]] = {}
        self._state: dict[str, tuple[bool, int, str]] = {}

    def _rate(self, node: Any, since: float | None) -> float:
        now = time.monotonic()
        if since is not None:
            return node.fields / (now - since) if now > since else 0.0
        fields, then = self._last.get(node.address, (0, now))
        self._last[node.address] = (node.fields, now)
        return (node.fields - fields) / (now - then) if now > then else 0.0

    def _height(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).lines or 24
        except (OSError, ValueError, AttributeError):
            return 24

    @staticmethod
    def _error(node: Any) -> str:
        return _reason(node.last_error) if node.last_error is not None else ""

    def show(self, nodes: list[Any], written: Callable[[Any], int], since: float | None = None) -> None:
        """The table (or log lines); with ``since``, the average fields/s since then."""
        rows = [
            (
                node.address,
                "yes" if node.connected else "no",
                self._rate(node, since),
                written(node),
                node.reconnects,
                self._error(node),
            )
            for node in nodes
        ]
        if self.live:
            out = [f"\x1b[{self._lines}F"] if self._lines else []
            heading = f"{'node':<24} {'connected':>9} {'fields/s':>9} {'MB':>9} {'reconnects':>10}"
            out.append(f"\x1b[K{heading}  last error\n")
            # As many rows as the terminal shows, nodes not connected first.
            room = max(3, self._height() - 3)
            shown = sorted(rows, key=lambda row: row[1] == "yes")[:room]
            for address, connected, rate, nbytes, reconnects, error in shown:
                row = f"{address:<24} {connected:>9} {rate:>9.1f} {nbytes / 1e6:>9.2f} {reconnects:>10}"
                out.append(f"\x1b[K{row}  {error[:60]}\n")
            if len(shown) < len(rows):
                up = sum(row[1] == "yes" for row in rows)
                out.append(f"\x1b[K... {len(rows) - len(shown)} more nodes; {up} of {len(rows)} connected\n")
            self._lines = len(out) - (1 if self._lines else 0)
            self.stream.write("".join(out))
        else:
            for node, (address, connected, rate, nbytes, reconnects, error) in zip(nodes, rows, strict=True):
                last = f", last error: {error}" if error else ""
                self.stream.write(
                    f"ncplib record: {address}: connected {connected}, {node.fields} fields, "
                    f"{rate:.1f} fields/s, {nbytes / 1e6:.2f} MB, {reconnects} reconnects{last}\n"
                )
        self.stream.flush()

    def changes(self, nodes: list[Any]) -> None:
        """
        Plain log lines when a node connects, disconnects, fails or has reconnected since the
        last look (not on a terminal).
        """
        if self.live:
            return
        for node in nodes:
            error = self._error(node)
            state = (node.connected, node.reconnects, error)
            if self._state.get(node.address, (False, 0, "")) == state:
                continue
            self._state[node.address] = state
            if not node.connected:
                what = f"not connected ({error})" if error else "not connected"
            elif node.reconnects:
                after = f", after: {error}" if error else ""
                what = f"reconnected ({node.reconnects} reconnects{after})"
            else:
                what = "connected"
            self.stream.write(f"ncplib record: {node.address}: {what}\n")
            self.stream.flush()


async def _run_record(args: argparse.Namespace) -> int:
    import ncplib

    commands = [parse_command(text) for text in args.commands]
    directory = Path(args.output)
    rotate_bytes = None if args.rotate_mb is None else max(1, round(args.rotate_mb * 1e6))
    try:
        use_numpy = True
        import numpy  # noqa: F401
    except ImportError:
        use_numpy = False
    if args.format == "sigmf":
        try:
            import ncplib.sigmf_io
        except ImportError as ex:
            raise UsageError(str(ex)) from None
    try:
        fleet = ncplib.Fleet(
            args.addresses,
            timeout=args.timeout,
            use_numpy=use_numpy,
            reconnect_delay=(min(0.5, args.reconnect_max), args.reconnect_max),
        )
        for packet_type, field_name, params in commands:
            fleet.subscribe(packet_type, field_name, **params)
    except (ValueError, TypeError) as ex:
        raise UsageError(str(ex)) from None
    _check_directory(directory)

    sinks: dict[str, Sink] = {}

    def sink_of(node: Any, field: Any) -> Sink:
        sink = sinks.get(node.address)
        if sink is None:
            label = file_label(node.address)
            if args.format == "sigmf":
                helo = field.connection.helo
                sink = SigMFFiles(
                    directory, label, max_bytes=rotate_bytes, max_seconds=args.rotate_s, helo=helo
                )
            else:
                sink = CaptureFiles(directory, label, max_bytes=rotate_bytes, max_seconds=args.rotate_s)
            sinks[node.address] = sink
        return sink

    queued: dict[str, int] = {}

    async def consume(writer: BackgroundWriter) -> None:
        async for node, field in fleet:
            sink = sink_of(node, field)
            if args.format == "sigmf":
                item: Any = field
                nbytes = getattr(field.get("DIQT"), "nbytes", 0) or 1
            else:
                item, nbytes = packet_item(field)
            await writer.put(sink, item, nbytes)
            queued[node.address] = queued.get(node.address, 0) + nbytes

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    table = _Table(sys.stderr, live=sys.stderr.isatty())
    if not args.verbose:
        # The table (or, off a terminal, a line per change) already reports each node's last
        # error: the fleet's own log lines would say the same twice.
        logging.getLogger("ncplib.fleet").setLevel(logging.ERROR)
    started = time.monotonic()
    failure: RecordingError | None = None
    try:
        async with BackgroundWriter(max_pending=round(args.buffer_mb * 1e6)) as writer, fleet:
            consumer = asyncio.ensure_future(consume(writer))
            stopper = asyncio.ensure_future(stop.wait())
            next_log = started + _LOG_EVERY
            try:
                while not consumer.done() and not stop.is_set():
                    wait = _TABLE_EVERY
                    if args.duration is not None:
                        wait = min(wait, started + args.duration - time.monotonic())
                        if wait <= 0:
                            break
                    await asyncio.wait([consumer, stopper], timeout=wait)
                    table.changes(fleet.nodes)
                    if table.live or time.monotonic() >= next_log:
                        next_log = time.monotonic() + _LOG_EVERY
                        table.show(fleet.nodes, lambda node: queued.get(node.address, 0))
            finally:
                for task in (consumer, stopper):
                    task.cancel()
                ended = await asyncio.gather(consumer, stopper, return_exceptions=True)
            # A write that failed while the consumer waited to queue (the writer raises it
            # again on close); anything else is a bug, raised as it is.
            for outcome in ended:
                if isinstance(outcome, Exception):
                    raise outcome
    except RecordingError as ex:
        failure = ex
    finally:
        # Only now: Ctrl-C again while the files are being finished changes nothing.
        for signum in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
    table.show(fleet.nodes, lambda node: queued.get(node.address, 0), since=started)
    for address, sink in sinks.items():
        paths = getattr(sink, "paths", [])
        if paths:
            print(f"{address}: {len(paths)} file(s), last {paths[-1]}", file=sys.stderr)
    if failure is not None:
        raise _Failure(str(failure), EXIT_USAGE)
    if not queued:
        _fail_if_refused(fleet.nodes)
    return EXIT_OK


def _fail_if_refused(nodes: list[Any]) -> None:
    """
    Nothing was recorded: if the nodes said why (a rejected command, a network failure), that is
    a failure of the command, not a success with empty files.
    """
    import ncplib

    errors = [(node, node.last_error) for node in nodes if node.last_error is not None]
    if not errors:
        return
    node, error = errors[0]
    status = EXIT_COMMAND_ERROR if isinstance(error, ncplib.CommandError) else EXIT_NETWORK
    raise _Failure(f"nothing recorded: {node.address}: {_reason(error)}", status)


def _megabytes(text: str) -> float:
    return _positive(text)


def add_command(commands: Any) -> None:
    """Adds ``record`` to the ``ncplib`` command's subparsers."""
    record = commands.add_parser(
        "record",
        help="record the replies of one or many nodes to files",
        description="Send commands to one or many nodes (reconnecting when a node goes away) "
        "and write each node's replies to files of its own in DIR, named "
        "ADDRESS_YYYYmmddTHHMMSS.mmmZ.ncp (or .sigmf-data and .sigmf-meta), until --duration "
        "seconds or Ctrl-C. A live table on a terminal, log lines otherwise.",
        epilog="Example: ncplib record 10.0.0.7 10.0.0.8 "
        "--command 'DSPL SWEP FSTA=400 FSTP=500' --output recordings",
    )
    record.add_argument("addresses", metavar="HOST[:PORT]", nargs="+", help="the nodes (default port 9999)")
    record.add_argument(
        "--command",
        dest="commands",
        required=True,
        action="append",
        metavar="COMMAND",
        help="a command sent to every node after each (re)connection, e.g. 'DSPL TIME SAMP=4096'; repeatable",
    )
    record.add_argument(
        "--output", required=True, metavar="DIR", help="the directory to write to (created if missing)"
    )
    record.add_argument(
        "--format",
        choices=("ncp", "sigmf"),
        default="ncp",
        help="ncp: capture files of the packets (default); sigmf: I/Q captures (TIME) as SigMF recordings",
    )
    record.add_argument(
        "--rotate-mb", type=_megabytes, metavar="MB", help="start a new file after this many MB"
    )
    record.add_argument(
        "--rotate-s", type=_positive, metavar="SECONDS", help="start a new file after this many seconds"
    )
    record.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this many seconds")
    record.add_argument(
        "--timeout",
        type=int,
        default=60,
        metavar="SECONDS",
        help="network timeout in seconds, 5 to 60 (default: %(default)s)",
    )
    record.add_argument(
        "--reconnect-max",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="the longest wait before reconnecting to a node (default: %(default)s)",
    )
    record.add_argument(
        "--buffer-mb",
        type=_megabytes,
        default=DEFAULT_MAX_PENDING / 1e6,
        metavar="MB",
        help="the most data waiting to be written; beyond it reading slows down (default: %(default)g)",
    )
    record.set_defaults(run=_run_record)
