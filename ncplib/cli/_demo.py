"""``ncplib demo``: an in-process node streamed over TCP, drawn as a waterfall."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import time
from collections.abc import Sequence
from typing import Any

from ncplib.cli._commands import _close, _connect
from ncplib.cli._errors import EXIT_NETWORK, EXIT_OK, UsageError, _Failure
from ncplib.cli._format import field_wire_size, plural


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
