"""The client commands (``send``, ``stream``) and ``node``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import sys
import time
from typing import IO, Any

import ncplib
from ncplib.cli._errors import EXIT_COMMAND_ERROR, EXIT_NETWORK, EXIT_OK, UsageError, _Failure
from ncplib.cli._format import (
    encode_field,
    field_to_json,
    field_wire_size,
    format_field,
    format_field_line,
    plural,
)
from ncplib.cli._values import parse_address, parse_param
from ncplib.errors import AuthenticationError, CommandError, NCPError
from ncplib.protocol import MAX_TIMEOUT, MIN_TIMEOUT

_STREAM_HINT = "only DSPL commands stream, e.g. ncplib stream HOST DSPL SWEP"


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


def _send(connection: ncplib.Connection, args: argparse.Namespace, params: dict[str, Any]) -> ncplib.Response:
    """Sends the command line's command; a value the library refuses is a usage error."""
    try:
        return connection.send(args.packet, args.field, **params)
    except (ValueError, TypeError) as ex:
        raise UsageError(str(ex)) from None


async def _run_send(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    params = dict(parse_param(text) for text in args.params)
    connection = await _connect(host, port, args.timeout)
    try:
        response = _send(connection, args, params)
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
            response = _send(connection, args, params)
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


async def _run_node(args: argparse.Namespace) -> int:
    from ncplib.cli._capture import make_node

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
