"""The argument parser of the ``ncplib`` command and the types of its arguments."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import ncplib
from ncplib import _wire as w
from ncplib._wire import DEFAULT_PORT
from ncplib.cli._commands import _run_node, _run_send, _run_stream
from ncplib.cli._demo import _run_demo
from ncplib.cli._values import _did_you_mean


def _identifier(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not w.IDENTIFIER_RE.match(text):
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
    from ncplib.cli import _capture

    _capture.add_replay_options(node, _positive)
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
    _capture.add_commands(commands)
    from ncplib.cli import _record

    _record.add_command(commands)
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
