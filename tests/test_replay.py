"""ncplib.replay.ReplayNode in this process: what each command gets, and what it is told."""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from netutil import run

import ncplib
from ncplib.node import WARC_IGNORED
from ncplib.packets import encode_packet
from ncplib.replay import WARC_CAPTURE_ENDED, ReplayNode

START = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
SWEEPS = 3
DEADLINE = 30.0


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A capture of a ``DSPL SWEP`` stream: ``SWEEPS`` sweeps of 5 bins, 10 ms apart."""
    path = tmp_path / "swep.ncp"
    with open(path, "wb") as out:
        for seq in range(SWEEPS):
            params = {"PDAT": array.array("B", [seq] * 5), "FSTA": 400, "FSTP": 500, "NBIN": 5, "RLEV": -20}
            stamp = START + timedelta(milliseconds=10 * seq)
            out.write(
                encode_packet("DSPL", seq + 1, stamp, b"\0\0\0\0", [("SWEP", seq + 1, list(params.items()))])
            )
    return path


@contextlib.asynccontextmanager
async def serving(path: Path, *, loop: bool = False) -> AsyncIterator[int]:
    """Serves the capture at ``path`` as fast as the client reads; yields the port."""
    server = await ReplayNode(path, speed=math.inf, loop=loop).start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def test_params_and_another_packet_type_are_reported_not_ignored_in_silence(capture: Path) -> None:
    async def main() -> None:
        async with (
            serving(capture) as port,
            await ncplib.connect("127.0.0.1", port, auto_ackn=False, auto_warn=False) as connection,
        ):
            response = connection.send("DSPC", "SWEP", FSTA=100, FSTP=200)
            ack = await asyncio.wait_for(response.recv(), DEADLINE)
            assert ack["ACKN"] == 1 and ack["WARC"] == WARC_IGNORED
            assert "FSTA, FSTP ignored" in ack["WARN"]
            assert "answered from the recorded DSPL SWEP" in ack["WARN"]
            reply = await asyncio.wait_for(response.recv(), DEADLINE)
            # The recorded sweep as it is, not the 100 to 200 MHz asked for.
            assert reply.packet_type == "DSPC" and reply["FSTA"] == 400 and list(reply["PDAT"])[:5] == [0] * 5
            # Answered as recorded, no params: no warning.
            response = connection.send("DSPL", "SWEP")
            ack = await asyncio.wait_for(response.recv(), DEADLINE)
            assert "WARN" not in ack and "WARC" not in ack

    run(main)


def test_a_stream_reports_the_end_of_the_capture(capture: Path) -> None:
    async def main() -> None:
        async with serving(capture) as port:
            async with await ncplib.connect(
                "127.0.0.1", port, auto_ackn=False, auto_warn=False
            ) as connection:
                connection.send("DSPL", "SWEP")
                fields = [await asyncio.wait_for(connection.recv(), DEADLINE) for _ in range(SWEEPS + 2)]
                assert [f.get("ACKN") for f in fields] == [1, None, None, None, 1]
                assert [next(iter(f["PDAT"])) for f in fields[1:-1]] == list(range(SWEEPS))
                end = fields[-1]
                assert end["WARC"] == WARC_CAPTURE_ENDED and "PDAT" not in end
                assert end["WARN"].startswith("end of the capture: all 3 recorded DSPL SWEP")
            # As a client with the default options (as 6.1.0's) shows it: a warning, no field.
            async with await ncplib.connect("127.0.0.1", port) as connection:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    connection.send("DSPL", "SWEP")
                    sweeps = [await asyncio.wait_for(connection.recv(), DEADLINE) for _ in range(SWEEPS)]
                    assert not caught
                    # The stream again: the next field delivered is its first sweep.
                    connection.send("DSPL", "SWEP")
                    again = await asyncio.wait_for(connection.recv(), DEADLINE)
                assert all("PDAT" in f for f in [*sweeps, again]) and next(iter(again["PDAT"])) == 0
                ended = [w.message for w in caught if isinstance(w.message, ncplib.CommandWarning)]
                assert len(caught) == len(ended) == 1 and "end of the capture" in str(ended[0])

    run(main)


def test_a_looping_stream_does_not_end(capture: Path) -> None:
    async def main() -> None:
        async with (
            serving(capture, loop=True) as port,
            await ncplib.connect("127.0.0.1", port, auto_warn=False) as connection,
        ):
            response = connection.send("DSPL", "SWEP")
            fields = [await asyncio.wait_for(response.recv(), DEADLINE) for _ in range(2 * SWEEPS + 1)]
            assert all("WARN" not in f and "PDAT" in f for f in fields)

    run(main)
