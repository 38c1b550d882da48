"""
The ``ncplib`` command
======================

``ncplib`` (or ``python -m ncplib``) has these subcommands:

``ncplib node``
    Runs a simulated RFeye node (see :mod:`ncplib.node`) until Ctrl-C; with ``--replay FILE``
    it serves a capture file instead (see :mod:`ncplib.replay`).
``ncplib send HOST[:PORT] PACKET FIELD [NAME=VALUE ...]``
    Sends one command and prints the first reply that is not an acknowledgement.
``ncplib stream HOST[:PORT] PACKET FIELD [NAME=VALUE ...]``
    Sends a command (usually ``DSPL``) and prints every reply, with a live status line, until
    ``--count`` replies or ``--duration`` seconds; ``--save`` writes the packets to a file.
``ncplib demo``
    Starts a simulated node in-process, streams sweeps from it over TCP and draws a waterfall.
``ncplib read``, ``ncplib convert``
    Print a capture file, or convert it to SigMF, NPZ or CSV (``ncplib._cli_capture``).
``ncplib record``
    Records one or many nodes to rotated files (``ncplib._cli_record``).

Param values are parsed as follows: an integer (``400``, ``-3``) is sent as i32, a decimal number
(``1.5``, ``2e6``) as f32, anything else as a string. A prefix picks another type: ``i32:``,
``u32:``, ``i64:``, ``u64:``, ``f32:``, ``f64:``, ``str:`` (a string even if it looks like a
number) and ``hex:`` (raw bytes written in hexadecimal, such as ``hex:00ff10``).

Exit status: 0 success, 1 the node replied with an error (``ERRO``), 2 bad usage or argument,
3 network failure (connection refused or lost, timeout, malformed data from the peer), 130
interrupted by Ctrl-C (``ncplib node`` exits 0 on Ctrl-C: that is how it is stopped). When the
reader of the output goes away (``ncplib stream ... | head``) the command stops quietly with 0.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import IO, Any

import ncplib
from ncplib._handshake import MAX_TIMEOUT, MIN_TIMEOUT
from ncplib.capture import field_packet
from ncplib.errors import AuthenticationError, CommandError, DecodeError, NCPError
from ncplib.values import f64, i64, u32, u64

__all__ = [
    "main",
    "parse_address",
    "parse_value",
    "parse_param",
    "EXIT_OK",
    "EXIT_COMMAND_ERROR",
    "EXIT_USAGE",
    "EXIT_NETWORK",
    "EXIT_INTERRUPTED",
]

#: The command succeeded.
EXIT_OK = 0
#: The node replied with an error (an ``ERRO`` param).
EXIT_COMMAND_ERROR = 1
#: Bad usage: an unknown option or an invalid argument.
EXIT_USAGE = 2
#: Network failure: connection refused or lost, timeout, malformed data.
EXIT_NETWORK = 3
#: Interrupted by Ctrl-C.
EXIT_INTERRUPTED = 130

DEFAULT_PORT = 9999
_STREAM_HINT = "only DSPL commands stream, e.g. ncplib stream HOST DSPL SWEP"
_IDENTIFIER = re.compile(r"[A-Z0-9 ]{1,4}\Z")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INT_RANGES = {
    "i32": (-(2**31), 2**31),
    "u32": (0, 2**32),
    "i64": (-(2**63), 2**63),
    "u64": (0, 2**64),
}
_DATA_TYPE_NAMES = {
    ("u", 1): "u8",
    ("u", 2): "u16",
    ("u", 4): "u32",
    ("u", 8): "u64",
    ("i", 1): "i8",
    ("i", 2): "i16",
    ("i", 4): "i32",
    ("i", 8): "i64",
    ("f", 4): "f32",
    ("f", 8): "f64",
}


class UsageError(Exception):
    """An invalid command-line argument; the message says which and why."""


class _Failure(Exception):
    """A failure already described in one line, with the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# Argument parsing.


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """
    Splits ``HOST[:PORT]`` (``[IPv6]:PORT`` for IPv6 addresses with a port).

    :param str text: The address.
    :param int default_port: The port when none is given.
    :raises UsageError: if the host is empty or the port is not a number from 1 to 65535.
    :returns: ``(host, port)``.
    """
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            raise UsageError(f"invalid address {text!r}: use [IPv6] or [IPv6]:PORT")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise UsageError(f"invalid address {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"invalid port {port_text!r}: use a number from 1 to 65535")
    return host, int(port_text)


def _parse_int(text: str, ncp_type: str) -> int:
    try:
        value = int(text, 0) if text.lower().lstrip("+-").startswith("0x") else int(text, 10)
    except ValueError:
        raise UsageError(f"invalid {ncp_type} value {text!r}: not an integer") from None
    low, high = _INT_RANGES[ncp_type]
    if not low <= value < high:
        hint = " (use an i64: or u64: prefix)" if ncp_type == "i32" else ""
        raise UsageError(f"{ncp_type} value {value} out of range {low}..{high - 1}{hint}")
    return value


def _parse_float(text: str, ncp_type: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"invalid {ncp_type} value {text!r}: not a number") from None


def _parse_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"invalid hex value {text!r}: use pairs of hex digits, such as 00ff10") from None


_PREFIXES: dict[str, Callable[[str], Any]] = {
    "i32": lambda text: _parse_int(text, "i32"),
    "u32": lambda text: u32(_parse_int(text, "u32")),
    "i64": lambda text: i64(_parse_int(text, "i64")),
    "u64": lambda text: u64(_parse_int(text, "u64")),
    "f32": lambda text: _parse_float(text, "f32"),
    "f64": lambda text: f64(_parse_float(text, "f64")),
    "str": str,
    "hex": _parse_hex,
}


def parse_value(text: str) -> Any:
    """
    Converts a command-line param value to the Python value that selects its NCP type.

    ``TYPE:VALUE`` with ``TYPE`` one of ``i32 u32 i64 u64 f32 f64 str hex`` gives that type.
    Otherwise an integer is an i32 (:class:`int`), a decimal number an f32 (:class:`float`),
    and anything else a string.

    :param str text: The value as typed.
    :raises UsageError: if a typed value does not parse, or an integer is out of range for its
        type.
    :returns: The value to send.
    """
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest)
    if re.fullmatch(r"[+-]?\d+", text):
        return _parse_int(text, "i32")
    if _DECIMAL.match(text):
        return float(text)
    return text


def parse_param(text: str) -> tuple[str, Any]:
    """
    Parses one ``NAME=VALUE`` argument.

    :param str text: The argument.
    :raises UsageError: if there is no ``=``, the name is not 1 to 4 uppercase letters, digits or
        spaces, or the value is invalid (see :func:`parse_value`).
    :returns: ``(name, value)``.
    """
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"invalid param {text!r}: use NAME=VALUE")
    if not _IDENTIFIER.match(name):
        raise UsageError(
            f"invalid param name {name!r}: use 1 to 4 uppercase letters or digits{_did_you_mean(name)}"
        )
    return name, parse_value(value)


def _did_you_mean(name: str) -> str:
    """The hint for a name that would be a valid identifier in upper case."""
    return f" (did you mean {name.upper()}?)" if _IDENTIFIER.match(name.upper()) else ""


def _identifier(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not _IDENTIFIER.match(text):
            raise argparse.ArgumentTypeError(
                f"invalid {what} {text!r}: use 1 to 4 uppercase letters or digits{_did_you_mean(text)}"
            )
        return text

    check.__name__ = what
    return check


def _finite_number(text: str, *, zero_allowed: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not (value >= 0 if zero_allowed else value > 0) or value == math.inf:
        raise argparse.ArgumentTypeError(
            f"must be {'0 or more' if zero_allowed else 'greater than 0'}, not {text}"
        )
    return value


def _positive(text: str) -> float:
    return _finite_number(text, zero_allowed=False)


def _non_negative(text: str) -> float:
    return _finite_number(text, zero_allowed=True)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 0 to 65535")
    return int(text)


# Showing fields.


def plural(count: int, noun: str) -> str:
    """``"1 field"``, ``"2 fields"``: a count and its noun, in the plural when it is not 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def type_name(value: Any) -> str:
    """The NCP type name of a decoded param value, such as ``"u32"`` or ``"data u8"``."""
    if isinstance(value, u32):
        return "u32"
    if isinstance(value, i64):
        return "i64"
    if isinstance(value, u64):
        return "u64"
    if isinstance(value, f64):
        return "f64"
    if isinstance(value, int):
        return "i32"
    if isinstance(value, float):
        return "f32"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "raw"
    if isinstance(value, array.array):
        code = value.typecode
        kind = "f" if code in "fd" else ("i" if code.islower() else "u")
        return "data " + _DATA_TYPE_NAMES.get((kind, value.itemsize), code)
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return "data " + _DATA_TYPE_NAMES.get((dtype.kind, dtype.itemsize), str(dtype))
    return type(value).__name__


def _is_array(value: Any) -> bool:
    return isinstance(value, array.array) or hasattr(value, "dtype")


def _summary(value: Any, limit: int = 60) -> str:
    if _is_array(value):
        n = len(value)
        if not n:
            return "0 values"
        return f"{n} values, min {_number(min(value))}, max {_number(max(value))}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        shown = data[:32].hex()
        return f"{len(data)} bytes: {shown}{'...' if len(data) > 32 else ''}"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 4] + "...'"
    return _number(value)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(int(value)) if hasattr(value, "__index__") else str(value)


def _timestamp(field: Any) -> str:
    stamp = getattr(field, "packet_timestamp", None)
    if isinstance(stamp, datetime):
        return stamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return "?"


def _counted(field: Any, name: str) -> tuple[Any, int]:
    """
    A param's value without the padding of a counted data param (``PDAT`` has ``NBIN`` bins),
    and how many padding values were left out.
    """
    from ncplib.node import data_values

    value = field[name]
    counted = data_values(field, name) if _is_array(value) else value
    return counted, (len(value) - len(counted) if counted is not value else 0)


def format_field(field: Any) -> str:
    """
    A readable multi-line description of a received field; arrays are summarised, counted data
    (``PDAT`` of ``NBIN`` bins, ``DIQT`` of ``SAMP`` samples) without its padding.
    """
    head = f"{field.packet_type} {field.name}  field id {field.id}, packet id {field.packet_id}"
    lines = [f"{head}, {_timestamp(field)}"]
    for name in field:
        value, padding = _counted(field, name)
        note = f" (+{padding} padding)" if padding else ""
        lines.append(f"  {name:<4}  {type_name(value):<9}  {_summary(value)}{note}")
    return "\n".join(lines)


def format_field_line(field: Any, index: int) -> str:
    """A one-line description of a received field, for streams; counted data without its padding."""
    parts = []
    for name in field:
        value, _ = _counted(field, name)
        if _is_array(value):
            low_high = f" {_number(min(value))}..{_number(max(value))}" if len(value) else ""
            parts.append(f"{name} {type_name(value)}[{len(value)}]{low_high}")
        else:
            parts.append(f"{name}={_summary(value, 24)}")
    return f"#{index} {field.packet_type} {field.name} id {field.id}: " + ", ".join(parts)


def _json_value(value: Any) -> Any:
    if _is_array(value):
        return [_json_value(item) for item in value.tolist()]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return int(value)
    return value


def field_to_json(field: Any) -> dict[str, Any]:
    """
    A received field as a JSON-ready dict.

    ``params`` maps each param name to ``{"type": ..., "value": ...}``; arrays are lists, raw
    bytes a hex string, non-finite floats the strings ``"nan"``, ``"inf"`` and ``"-inf"``.
    Counted data (``PDAT`` of ``NBIN`` bins, ``DIQT`` of ``SAMP`` samples) is cut to its count,
    with ``"padding"``: the number of values left out, when there were any.
    """
    stamp = getattr(field, "packet_timestamp", None)
    params: dict[str, Any] = {}
    for name in field:
        value, padding = _counted(field, name)
        params[name] = {"type": type_name(value), "value": _json_value(value)}
        if padding:
            params[name]["padding"] = padding
    return {
        "packet_type": field.packet_type,
        "packet_id": int(field.packet_id),
        "timestamp": stamp.isoformat() if isinstance(stamp, datetime) else None,
        "field": field.name,
        "field_id": int(field.id),
        "params": params,
    }


def _field_packet(field: Any) -> list[bytes | memoryview]:
    """A received field as the buffers of a one-field NCP packet (header info bytes zero)."""
    return field_packet(field)


def field_wire_size(field: Any) -> int:
    """The size in bytes of a packet holding only this field (what ``--save`` writes for it)."""
    # Large values are views in the buffer list, so nothing big is copied to measure it.
    return sum(memoryview(buffer).nbytes for buffer in _field_packet(field))


def encode_field(field: Any) -> bytes:
    """Re-encodes a received field as a one-field NCP packet (header info bytes zero)."""
    return b"".join(_field_packet(field))


# Client commands.


async def _connect(host: str, port: int, timeout: float, **kwargs: Any) -> Any:
    # --timeout bounds connecting and every wait here; the connection's own (keep-alive) timeout
    # proposed to the node stays within what nodes grant, so that none answers with a changed
    # timeout (and a warning) for a short --timeout.
    link_timeout = max(MIN_TIMEOUT, min(MAX_TIMEOUT, math.ceil(timeout)))
    try:
        return await asyncio.wait_for(ncplib.connect(host, port, timeout=link_timeout, **kwargs), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise _Failure(
            f"cannot connect to {host}:{port}: timed out after {timeout:g} s", EXIT_NETWORK
        ) from None
    except AuthenticationError as ex:
        raise _Failure(f"cannot connect to {host}:{port}: {ex}", EXIT_NETWORK) from None
    except (OSError, NCPError) as ex:
        raise _Failure(f"cannot connect to {host}:{port}: {_reason(ex)}", EXIT_NETWORK) from None


def _reason(ex: BaseException) -> str:
    """One line saying why ``ex`` happened; the system's words for an OS error ("Connection refused")."""
    cause: BaseException | None = ex
    while cause is not None:
        errno = getattr(cause, "errno", None)
        if isinstance(errno, int):
            if isinstance(cause, ConnectionRefusedError):
                return "Connection refused"
            if isinstance(cause, socket.gaierror):
                return str(cause.strerror)  # Name resolution: errno is not an OS error number.
            text = os.strerror(errno)
            if not text.startswith("Unknown error"):
                return text
            # Windows socket error numbers are unknown to strerror; the error has its own text.
            return str(getattr(cause, "strerror", None) or cause)
        cause = cause.__cause__
    text = str(ex).strip() or type(ex).__name__
    return text.splitlines()[0]


async def _recv(response: Any, timeout: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(response.recv(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise _Failure(f"no {what} within {timeout:g} s", EXIT_NETWORK) from None


async def _close(connection: Any) -> None:
    connection.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.wait_closed(), 5)


def _command_error(ex: CommandError) -> _Failure:
    field = ex.field
    return _Failure(
        f"{field.packet_type} {field.name}: node replied with error: {ex.detail} (code {ex.code})",
        EXIT_COMMAND_ERROR,
    )


async def _run_send(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    params = dict(parse_param(text) for text in args.params)
    connection = await _connect(host, port, args.timeout)
    try:
        try:
            response = connection.send(args.packet, args.field, **params)
        except (ValueError, TypeError) as ex:
            raise UsageError(str(ex)) from None
        field = await _recv(response, args.timeout, f"reply to {args.packet} {args.field}")
    except CommandError as ex:
        raise _command_error(ex) from None
    finally:
        await _close(connection)
    if args.json:
        print(json.dumps(field_to_json(field)))
    else:
        print(format_field(field))
    return EXIT_OK


class _Status:
    """The live status line of ``ncplib stream`` (and the summary at its end)."""

    def __init__(self, stream: IO[str], live: bool) -> None:
        self.stream = stream
        self.live = live
        self.started = time.monotonic()
        self.fields = 0
        self.nbytes = 0
        self._shown = 0.0

    def text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{plural(self.fields, 'field')}, {self.fields / elapsed:.1f} fields/s, "
            f"{self.nbytes / 1e6:.2f} MB, {self.nbytes / 1e6 / elapsed:.2f} MB/s, {elapsed:.1f} s"
        )

    def update(self, field: Any) -> None:
        self.fields += 1
        self.nbytes += field_wire_size(field)
        now = time.monotonic()
        if self.live and now - self._shown >= 0.2:
            self._shown = now
            self.stream.write("\r\x1b[K" + self.text())
            self.stream.flush()

    def finish(self) -> None:
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(prefix + self.text() + "\n")
        self.stream.flush()


async def _run_stream(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    params = dict(parse_param(text) for text in args.params)
    save = None
    if args.save:
        try:
            # "x": an existing file (an earlier capture, say) is not overwritten unless asked to.
            save = open(args.save, "wb" if args.force else "xb")  # noqa: ASYNC230, SIM115 - closed below
        except FileExistsError:
            raise UsageError(f"{args.save} exists: use --force to overwrite it") from None
        except OSError as ex:
            raise UsageError(f"cannot write {args.save}: {ex.strerror}") from None
    from ncplib.node import ONCE_PACKET_TYPES, STREAM_PACKET_TYPE

    # A one-shot command is answered once: stop after its reply instead of waiting for more.
    once = args.packet in ONCE_PACKET_TYPES
    count = 1 if once and args.count is None else args.count
    status = _Status(sys.stderr, live=not args.quiet_status and sys.stderr.isatty())
    completed = False
    try:
        connection = await _connect(host, port, args.timeout)
        try:
            try:
                response = connection.send(args.packet, args.field, **params)
            except (ValueError, TypeError) as ex:
                raise UsageError(str(ex)) from None
            deadline = None if args.duration is None else status.started + args.duration
            while count is None or status.fields < count:
                wait = args.timeout
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    field = await asyncio.wait_for(response.recv(), wait)
                except (asyncio.TimeoutError, TimeoutError):
                    if deadline is not None and time.monotonic() >= deadline - 0.001:
                        break
                    hint = "" if args.packet == STREAM_PACKET_TYPE else f" ({_STREAM_HINT})"
                    raise _Failure(f"no reply within {args.timeout:g} s{hint}", EXIT_NETWORK) from None
                status.update(field)
                if save is not None:
                    save.write(encode_field(field))
                if args.json:
                    print(json.dumps(field_to_json(field)))
                elif not args.quiet:
                    print(format_field_line(field, status.fields))
            completed = True
        except CommandError as ex:
            raise _command_error(ex) from None
        finally:
            await asyncio.shield(_close(connection))
    finally:
        if save is not None:
            save.close()
        sys.stdout.flush()
        if status.fields or completed:
            status.finish()
    if once and args.count is None and status.fields:
        print(f"ncplib stream: {args.packet} is answered once: {_STREAM_HINT}", file=sys.stderr)
    return EXIT_OK


# The demo.


def _ascii_spectrum(levels: Sequence[float], width: int = 72) -> str:
    """One line of characters, darker for more power, from a sweep's dBm values (max-hold)."""
    shades = " .:-=+*#%@"
    n = len(levels)
    width = min(width, n)
    columns = [
        max(levels[k * n // width : max((k + 1) * n // width, k * n // width + 1)]) for k in range(width)
    ]
    low, high = min(columns), max(columns)
    scale = (len(shades) - 1) / (high - low) if high > low else 0.0
    return "".join(shades[round((value - low) * scale)] for value in columns)


def _plot_waterfall(
    rows: list[Any], times: list[float], fsta: float, fstp: float, rlev: float, output: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    power = rlev - np.asarray(rows, dtype=np.float64) / 2
    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    try:
        image = ax.imshow(
            power,
            aspect="auto",
            origin="upper",
            cmap="viridis",
            interpolation="nearest",
            extent=(fsta, fstp, times[-1] if len(times) > 1 else 1.0, 0.0),
        )
        ax.set_xlabel("Frequency (MHz)")
        ax.set_ylabel("Time (s)")
        ax.set_title(f"Simulated RFeye node: DSPL SWEP waterfall, {len(rows)} sweeps")
        colourbar = fig.colorbar(image, ax=ax)
        colourbar.set_label("Power (dBm)")
        fig.tight_layout()
        fig.savefig(output)
    finally:
        plt.close(fig)


#: The sweep the demo streams: FSTA and FSTP (MHz), RESB (Hz) and RLEV (dBm).
DEMO_SWEEP = (400, 500, 50000, -20)


def _demo_output(path: str) -> str:
    """
    Checks the demo's ``--output`` before streaming: the file that will be written (``.png`` is
    added when there is no extension, as matplotlib does), in a format matplotlib writes, in a
    directory that exists.

    :raises UsageError: if the path is a directory, its directory does not exist or cannot be
        written to, or its extension is not an image format matplotlib writes.
    :returns: The file that will be written, or the path unchanged without matplotlib (nothing
        is written then).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return path
    if os.path.isdir(path):
        raise UsageError(f"--output {path}: is a directory, give a file name such as {path}/waterfall.png")
    extension = os.path.splitext(path)[1]
    if not extension:
        path += ".png"
    formats = FigureCanvasAgg.get_supported_filetypes()
    if extension and extension[1:].lower() not in formats:
        raise UsageError(
            f"--output {path}: cannot write {extension} files; use one of "
            + ", ".join("." + name for name in sorted(formats))
        )
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path}: {os.strerror(errno.EACCES)}")
    return path


async def _run_demo(args: argparse.Namespace) -> int:
    from ncplib._signal import numpy_available
    from ncplib.node import data_values, start_node

    fsta, fstp, resb, rlev = DEMO_SWEEP
    output = None if args.ascii else _demo_output(args.output)
    server = await start_node("127.0.0.1", 0, rate=args.rate)
    try:
        port = server.sockets[0].getsockname()[1]
        print(f"Simulated RFeye node listening on 127.0.0.1:{port}")
        use_numpy = numpy_available()
        connection = await _connect("127.0.0.1", port, 10, use_numpy=use_numpy)
        print(f"Connected; streaming DSPL SWEP {fsta}-{fstp} MHz, RESB {resb} Hz for {args.duration:g} s ...")
        rows: list[Any] = []
        times: list[float] = []
        nbytes = 0
        try:
            response = connection.send("DSPL", "SWEP", FSTA=fsta, FSTP=fstp, RESB=resb, RLEV=rlev)
            started = time.monotonic()
            deadline = started + args.duration
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    field = await asyncio.wait_for(response.recv(), min(remaining, 10))
                except (asyncio.TimeoutError, TimeoutError):
                    if time.monotonic() < deadline:
                        raise _Failure("the simulated node stopped sending", EXIT_NETWORK) from None
                    break
                # NBIN bins: the rest of PDAT is padding, not signal at RLEV.
                pdat = data_values(field, "PDAT")
                rows.append(pdat.copy() if use_numpy else list(pdat))
                times.append(time.monotonic() - started)
                nbytes += field_wire_size(field)
            elapsed = time.monotonic() - started
        finally:
            await _close(connection)
    finally:
        server.close()
        await server.wait_closed()
    if not rows:
        raise _Failure("no sweeps received", EXIT_NETWORK)
    print(
        f"Received {plural(len(rows), 'sweep')} of {plural(len(rows[-1]), 'bin')} in {elapsed:.1f} s: "
        f"{len(rows) / elapsed:.1f} sweeps/s, {nbytes / 1e6 / elapsed:.3f} MB/s "
        f"({nbytes / 1e6:.2f} MB, {'numpy' if use_numpy else 'array'} mode)"
    )
    levels = [rlev - value / 2 for value in rows[-1]]
    print(f"Last sweep: {min(levels):.1f} to {max(levels):.1f} dBm")
    plotted = False
    if output is not None:
        try:
            import matplotlib  # noqa: F401
            import numpy  # noqa: F401
        except ImportError:
            pass
        else:
            try:
                _plot_waterfall(rows, times, fsta, fstp, rlev, output)
            except OSError as ex:
                raise UsageError(f"cannot write {output}: {ex.strerror or ex}") from None
            print(f"Waterfall written to {output}")
            plotted = True
    if not plotted:
        print(f"Spectrum of the last sweep, {fsta} to {fstp} MHz (max-hold per column):")
        line = _ascii_spectrum(levels)
        print("|" + line + "|")
        low_label, high_label = f"{fsta} MHz", f"{fstp} MHz"
        print(low_label + high_label.rjust(len(line) + 2 - len(low_label)))
        if not args.ascii:
            print("For a waterfall plot install matplotlib: pip install 'ncplib[plot]'")
    return EXIT_OK


# The node.


async def _run_node(args: argparse.Namespace) -> int:
    from ncplib._cli_capture import make_node

    node = make_node(args)
    try:
        server = await node.start(args.host, args.port, timeout=args.timeout)
    except OSError as ex:
        raise _Failure(f"cannot listen on {args.host}:{args.port}: {_reason(ex)}", EXIT_NETWORK) from None
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None and hasattr(signal, "SIGTERM"):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            print(f"Simulated RFeye node listening on {host}:{port} (Ctrl-C to stop)", flush=True)
        await server.serve_forever()
    except asyncio.CancelledError:
        pass
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
    print("Simulated node stopped", file=sys.stderr, flush=True)
    return EXIT_OK


# Entry point.


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ncplib`` command."""
    parser = argparse.ArgumentParser(
        prog="ncplib",
        description="NCP (Node Communication Protocol) tools for CRFS RFeye nodes.",
        epilog="Exit status: 0 success, 1 the node replied with an error, 2 bad usage, "
        "3 network failure, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ncplib {ncplib.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    values_help = (
        "Param values: 400 is an i32, 1.5 an f32, other text a string; a prefix picks a type: "
        "i32: u32: i64: u64: f32: f64: str: hex: (raw bytes), e.g. SAMP=u32:1024 NAME=str:42 "
        "DATA=hex:00ff."
    )

    node = commands.add_parser(
        "node",
        help="run a simulated RFeye node",
        description="Run a simulated RFeye node (DSPC/DSPL SWEP and TIME, NODE STAT and GPS) until Ctrl-C.",
    )
    node.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    node.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port (default: %(default)s; 0 = any free)"
    )
    node.add_argument(
        "--rate",
        type=_non_negative,
        default=10.0,
        help="DSPL replies per second (default: %(default)s; 0 = unlimited)",
    )
    node.add_argument(
        "--timeout", type=_count, default=60, help="network timeout in seconds (default: %(default)s)"
    )
    from ncplib import _cli_capture

    _cli_capture.add_replay_options(node, _positive)
    node.set_defaults(run=_run_node)

    for name, help_text, description in (
        (
            "send",
            "send one command and print the reply",
            "Send one command and print the first reply that is not an acknowledgement (ACKN).",
        ),
        (
            "stream",
            "send a command and print every reply (DSPL)",
            "Send a command (usually DSPL) and print every reply until --count replies, --duration "
            "seconds or Ctrl-C, with a live status line on stderr.",
        ),
    ):
        sub = commands.add_parser(name, help=help_text, description=description, epilog=values_help)
        sub.add_argument("address", metavar="HOST[:PORT]", help=f"the node (default port {DEFAULT_PORT})")
        sub.add_argument(
            "packet", metavar="PACKET", type=_identifier("packet type"), help="packet type, e.g. DSPC"
        )
        sub.add_argument(
            "field", metavar="FIELD", type=_identifier("field name"), help="field name, e.g. SWEP"
        )
        sub.add_argument("params", metavar="NAME=VALUE", nargs="*", help="params of the command")
        sub.add_argument("--json", action="store_true", help="print JSON (one object per line)")
        sub.add_argument(
            "--timeout",
            type=_positive,
            default=10.0,
            help="seconds to wait to connect and for each reply (default: %(default)s)",
        )
        if name == "stream":
            sub.add_argument("--count", type=_count, help="stop after this many replies")
            sub.add_argument("--duration", type=_positive, help="stop after this many seconds")
            sub.add_argument("--save", metavar="FILE", help="write the received packets to FILE (NCP format)")
            sub.add_argument("--force", action="store_true", help="let --save overwrite an existing FILE")
            sub.add_argument("-q", "--quiet", action="store_true", help="do not print the replies")
            sub.add_argument(
                "--no-status", dest="quiet_status", action="store_true", help="no live status line"
            )
            sub.set_defaults(run=_run_stream)
        else:
            sub.set_defaults(run=_run_send)

    demo = commands.add_parser(
        "demo",
        help="stream sweeps from an in-process simulated node and plot them",
        description="Start a simulated node in-process, stream sweeps from it over TCP through the "
        "client, print the throughput and write a waterfall PNG (needs matplotlib: "
        "pip install 'ncplib[plot]'; without it an ASCII spectrum is printed).",
    )
    demo.add_argument(
        "--duration", type=_positive, default=5.0, help="seconds to stream (default: %(default)s)"
    )
    demo.add_argument(
        "--rate", type=_non_negative, default=25.0, help="sweeps per second (default: %(default)s)"
    )
    demo.add_argument(
        "--output", default="ncplib-demo.png", help="the PNG file to write (default: %(default)s)"
    )
    demo.add_argument("--ascii", action="store_true", help="print an ASCII spectrum instead of writing a PNG")
    demo.set_defaults(run=_run_demo)
    _cli_capture.add_commands(commands)
    from ncplib import _cli_record

    _cli_record.add_command(commands)
    return parser


def _add_verbose_after_command(parser: argparse.ArgumentParser) -> None:
    """Accepts ``-v`` after the subcommand too (``ncplib send HOST NODE STAT -v``), on every one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument(
                    "-v",
                    "--verbose",
                    dest="verbose_after",
                    action="count",
                    default=0,
                    help="log more (-vv for debug)",
                )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    first = str(message).splitlines()[0] if str(message) else category.__name__
    print(f"ncplib: warning: {first}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Runs the ``ncplib`` command.

    :param argv: The arguments, without the program name; default ``sys.argv[1:]``.
    :returns: The exit status (see the module documentation).
    """
    parser = build_parser()
    _add_verbose_after_command(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as ex:
        return int(ex.code) if isinstance(ex.code, int) else EXIT_USAGE
    if args.command is None:
        # A bare "ncplib": what it can do, and a usage status for scripts.
        parser.print_help()
        return EXIT_USAGE
    verbose = args.verbose + getattr(args, "verbose_after", 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="ncplib: %(levelname)s: %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    saved_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "node" else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (as "| head" does): stop quietly. Point stdout at
        # devnull so that flushing it at exit does not fail again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except UsageError as ex:
        print(f"ncplib {args.command}: error: {ex}", file=sys.stderr)
        return EXIT_USAGE
    except _Failure as ex:
        print(f"ncplib {args.command}: error: {ex}", file=sys.stderr)
        return ex.status
    except CommandError as ex:
        print(f"ncplib {args.command}: error: {_command_error(ex)}", file=sys.stderr)
        return EXIT_COMMAND_ERROR
    except DecodeError as ex:
        print(f"ncplib {args.command}: error: malformed data from the peer: {_reason(ex)}", file=sys.stderr)
        return EXIT_NETWORK
    except (NCPError, OSError) as ex:
        print(f"ncplib {args.command}: error: {_reason(ex)}", file=sys.stderr)
        return EXIT_NETWORK
    finally:
        warnings.showwarning = saved_showwarning
