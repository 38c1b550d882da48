"""
``ncplib read`` and ``ncplib convert``: capture files (``.ncp``) from the command line, and the
``--replay`` options of ``ncplib node``.

Exit status as for the other commands: 2 for a file that cannot be read or written (a missing
input, an existing output, a full disk), 3 for a damaged packet in the capture (its byte offset
is named; ``--skip-damaged`` reads on past it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ncplib.capture import CapturedField, CaptureError, CaptureReader
from ncplib.cli._errors import EXIT_NETWORK, EXIT_OK, EXIT_USAGE, _Failure
from ncplib.cli._format import field_to_json, format_field
from ncplib.errors import DecodeWarning

__all__ = ["add_commands", "add_replay_options", "io_failure"]


def io_failure(path: str | os.PathLike[str], ex: OSError, doing: str = "write") -> _Failure:
    """A one-line failure (exit 2) naming the file and the system's reason."""
    reason = ex.strerror or str(ex)
    return _Failure(f"cannot {doing} {os.fspath(path)}: {reason}", EXIT_USAGE)


def _open_reader(path: str, skip_damaged: bool, use_numpy: bool = False) -> CaptureReader:
    try:
        return CaptureReader(path, skip_damaged=skip_damaged, use_numpy=use_numpy)
    except OSError as ex:
        raise io_failure(path, ex, "read") from None


def _fields(path: str, skip_damaged: bool, use_numpy: bool = False) -> Iterator[CapturedField]:
    """Every field of the capture; a damaged packet or a read error becomes a one-line failure."""
    with _open_reader(path, skip_damaged, use_numpy) as reader:
        try:
            yield from reader.fields()
        except CaptureError as ex:
            hint = " (--skip-damaged reads on past it)"
            raise _Failure(str(ex) + hint, EXIT_NETWORK) from None
        except OSError as ex:
            raise io_failure(path, ex, "read") from None


async def _run_read(args: argparse.Namespace) -> int:
    count = 0
    with warnings.catch_warnings():
        # Recoverable defects are shown once each, as for a live stream.
        warnings.simplefilter("once", DecodeWarning)
        for field in _fields(args.file, args.skip_damaged):
            count += 1
            if args.json:
                print(json.dumps({**field_to_json(field), "offset": field.offset}))
            else:
                if count > 1:
                    print()
                print(f"@{field.offset} " + format_field(field))
    return EXIT_OK


def _remove_partial(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _convert(args: argparse.Namespace) -> str:
    from ncplib import convert

    output = Path(args.output)
    skip = args.skip_damaged

    def fields() -> Iterator[CapturedField]:
        return _fields(args.file, skip, use_numpy=True)

    _open_reader(args.file, skip).close()  # A missing input is reported before anything is created.
    if args.to == "sigmf":
        from ncplib.sigmf_io import sigmf_paths

        data_path, meta_path = sigmf_paths(output)
        for path in (data_path, meta_path):
            if path.exists():
                raise _Failure(f"cannot write {path}: it exists (not overwritten)", EXIT_USAGE)
        try:
            written = convert.iq_to_sigmf(fields(), output, description=f"I/Q captures from {args.file}")
        except FileExistsError as ex:
            raise _Failure(
                f"cannot write {ex.filename or output}: it exists (not overwritten)", EXIT_USAGE
            ) from None
        except OSError as ex:
            raise io_failure(ex.filename or data_path, ex) from None
        return f"wrote {len(written)} SigMF recording(s): " + ", ".join(str(path) for path in written)
    if output.exists():
        raise _Failure(f"cannot write {output}: it exists (not overwritten)", EXIT_USAGE)
    writer: Callable[[], int]
    if args.to == "npz":

        def writer() -> int:
            return convert.sweeps_to_npz(fields, output)
    else:

        def writer() -> int:
            with open(output, "x", encoding="utf-8", newline="") as out:
                return convert.sweeps_to_csv(fields(), out)

    try:
        count = writer()
    except OSError as ex:
        _remove_partial([output])
        raise io_failure(output, ex) from None
    except BaseException:
        _remove_partial([output])
        raise
    return f"wrote {count} sweeps to {output}"


async def _run_convert(args: argparse.Namespace) -> int:
    from ncplib.convert import NoData

    try:
        summary = _convert(args)
    except NoData as ex:
        raise _Failure(f"{args.file}: {ex}", EXIT_USAGE) from None
    except ValueError as ex:
        raise _Failure(f"{args.file}: {ex}", EXIT_USAGE) from None
    print(summary)
    return EXIT_OK


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the capture file")
    parser.add_argument("--skip-damaged", action="store_true", help="skip damaged packets (with a warning)")


def add_commands(commands: Any) -> None:
    """Adds ``read`` and ``convert`` to the ``ncplib`` command's subparsers."""
    read = commands.add_parser(
        "read",
        help="print the fields of a capture file",
        description="Print every field of a capture file (.ncp, as 'ncplib stream --save' and "
        "'ncplib record' write it), as 'ncplib send' prints a reply, each after the byte offset "
        "of its packet.",
    )
    _add_input(read)
    read.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    read.set_defaults(run=_run_read)

    convert = commands.add_parser(
        "convert",
        help="convert a capture file to SigMF, NPZ or CSV",
        description="Convert a capture file: I/Q captures (TIME) to a SigMF recording, sweeps "
        "(SWEP) to NPZ (frequencies in Hz, times, levels in dBm as a 2-D array) or CSV (one row "
        "per sweep). Needs numpy; SigMF needs the sigmf package (pip install 'ncplib[sigmf]').",
    )
    _add_input(convert)
    convert.add_argument("--to", required=True, choices=("sigmf", "npz", "csv"), help="the output format")
    convert.add_argument(
        "--output", required=True, metavar="PATH", help="the file to write (SigMF: the recording's base name)"
    )
    convert.set_defaults(run=_run_convert)


def add_replay_options(node: argparse.ArgumentParser, positive: Callable[[str], float]) -> None:
    """Adds ``--replay``, ``--speed`` and ``--loop`` to ``ncplib node``."""
    node.add_argument(
        "--replay",
        metavar="FILE",
        help="answer commands with the fields recorded in a capture file instead of simulated data",
    )
    node.add_argument(
        "--speed", type=positive, default=None, help="with --replay: X times the recorded pace (default: 1)"
    )
    node.add_argument(
        "--loop", action="store_true", help="with --replay: start again at the end of the capture"
    )


def make_node(args: argparse.Namespace) -> Any:
    """The node ``ncplib node`` serves: a replay of ``--replay FILE``, else a simulated node."""
    from ncplib.node import SimulatedNode

    if not getattr(args, "replay", None):
        # The replay options mean nothing to the simulated node: say so rather than ignore them.
        if getattr(args, "speed", None) is not None or getattr(args, "loop", False):
            raise _Failure("--speed and --loop need --replay FILE", EXIT_USAGE)
        return SimulatedNode(rate=args.rate)
    from ncplib.replay import ReplayNode

    try:
        return ReplayNode(args.replay, speed=1.0 if args.speed is None else args.speed, loop=args.loop)
    except OSError as ex:
        raise io_failure(args.replay, ex, "read") from None
    except ValueError as ex:
        raise _Failure(f"{args.replay}: {ex}", EXIT_USAGE) from None
