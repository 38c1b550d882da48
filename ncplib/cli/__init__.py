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
    Print a capture file, or convert it to SigMF, NPZ or CSV (``ncplib.cli._capture``).
``ncplib record``
    Records one or many nodes to rotated files (``ncplib.cli._record``).

Param values are parsed as follows: an integer (``400``, ``-3``) is sent as i32, a decimal number
(``1.5``, ``2e6``) as f32, anything else as a string. A prefix picks another type: ``i32:``,
``u32:``, ``i64:``, ``u64:``, ``f32:``, ``f64:``, ``str:`` (a string even if it looks like a
number) and ``hex:`` (raw bytes written in hexadecimal, such as ``hex:00ff10``).

Exit status: 0 success, 1 the node replied with an error (``ERRO``), 2 bad usage or argument,
3 network failure (connection refused or lost, timeout, malformed data from the peer), 130
interrupted by Ctrl-C (``ncplib node`` exits 0 on Ctrl-C: that is how it is stopped). When the
reader of the output goes away (``ncplib stream ... | head``) the command stops quietly with 0.

The command is a package of small modules: ``_arguments`` (the parser and the types of its
arguments), ``_values`` (addresses and ``NAME=VALUE`` params), ``_format`` (showing fields),
``_commands`` (``send``, ``stream``, ``node``), ``_demo``, ``_capture`` (``read``, ``convert``,
``node --replay``), ``_record`` and ``_errors`` (exit statuses). Identifiers, integer ranges,
data type names and the default port come from the library (:mod:`ncplib._wire`,
:mod:`ncplib.protocol`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import IO, Any

from ncplib._wire import DEFAULT_PORT
from ncplib.cli._arguments import _add_verbose_after_command, build_parser
from ncplib.cli._commands import _command_error, _reason
from ncplib.cli._errors import (
    EXIT_COMMAND_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    _Failure,
)
from ncplib.cli._format import (
    encode_field,
    field_to_json,
    field_wire_size,
    format_field,
    format_field_line,
    plural,
    type_name,
)
from ncplib.cli._values import parse_address, parse_param, parse_value
from ncplib.errors import CommandError, DecodeError, NCPError

__all__ = [
    "main",
    "build_parser",
    "parse_address",
    "parse_value",
    "parse_param",
    "format_field",
    "format_field_line",
    "field_to_json",
    "field_wire_size",
    "encode_field",
    "plural",
    "type_name",
    "UsageError",
    "DEFAULT_PORT",
    "EXIT_OK",
    "EXIT_COMMAND_ERROR",
    "EXIT_USAGE",
    "EXIT_NETWORK",
    "EXIT_INTERRUPTED",
]


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
