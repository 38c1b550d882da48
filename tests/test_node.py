"""The simulated RFeye node, driven through the real client over TCP."""

from __future__ import annotations

import asyncio
import math
import socket
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import ncplib
from ncplib import _signal
from ncplib.framing import PacketReader
from ncplib.node import (
    MAX_BINS,
    MAX_DECIMATION,
    MAX_SAMPLES,
    WARC_CAPPED,
    WARC_IGNORED,
    SimulatedNode,
    start_node,
)

SYNTHESES = ["numpy", "python"]


def run_with_node(
    body: Callable[[ncplib.Connection, SimulatedNode], Awaitable[Any]],
    *,
    rate: float = 50.0,
    synthesis: str = "auto",
    **connect_kwargs: Any,
) -> Any:
    """Starts a node on a free port, connects a client and runs ``body`` (bounded in time)."""

    async def main() -> Any:
        node = SimulatedNode(rate=rate, synthesis=synthesis, seed=1)  # type: ignore[arg-type]
        server = await node.start("127.0.0.1", 0, timeout=10)
        port = server.sockets[0].getsockname()[1]
        try:
            connection = await ncplib.connect("127.0.0.1", port, timeout=10, **connect_kwargs)
            async with connection:
                return await asyncio.wait_for(body(connection, node), 20)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


@pytest.mark.parametrize("synthesis", SYNTHESES)
def test_swep_bins_and_echoed_params(synthesis: str) -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> ncplib.Field:
        return await connection.send("DSPC", "SWEP", FSTA=400, FSTP=500, RESB=100000, RLEV=-20).recv()

    field = run_with_node(body, synthesis=synthesis)
    assert (field.packet_type, field.name) == ("DSPC", "SWEP")
    pdat = field["PDAT"]
    assert pdat.typecode == "B"
    assert len(pdat) == field["NBIN"] == 1000
    assert (field["FSTA"], field["FSTP"], field["RESB"], field["RLEV"]) == (400, 500, 100000, -20)
    # The noise floor: -174 dBm/Hz + 50 dB (100 kHz) + 12 dB noise figure = -112 dBm,
    # 92 dB below RLEV, so PDAT = 184 give or take the ripple.
    assert 178 <= statistics.median(pdat) <= 190
    # The DVB-T multiplex at 474 MHz (bin 740) stands well above the floor.
    assert pdat[740] < statistics.median(pdat) - 20
    assert all(0 <= value <= 255 for value in pdat)


def test_swep_bin_count_is_capped() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        wide = await connection.send("DSPC", "SWEP", FSTA=400, FSTP=500, RESB=1).recv()
        narrow = await connection.send("DSPC", "SWEP", FSTA=400, FSTP=400.01, RESB=1000000).recv()
        return [wide, narrow]

    (wide, narrow), warned = _warnings_of(body)
    assert warned == [
        (WARC_CAPPED, f"RESB 1 Hz over 100 MHz needs 100000000 bins, more than {MAX_BINS}: RESB 1526 Hz used")
    ]
    assert wide["NBIN"] == len(wide["PDAT"]) == MAX_BINS
    assert wide["RESB"] == round(100e6 / MAX_BINS)
    assert narrow["NBIN"] == 1
    # A data u8 value is padded to a whole number of 4-byte words on the wire.
    assert len(narrow["PDAT"]) == 4


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"FSTA": 500, "FSTP": 400}, "FSTP must be greater than FSTA"),
        ({"RESB": 0}, "RESB must be between"),
        ({"FSTA": "abc"}, "FSTA must be a number"),
        ({"RLEV": math.nan}, "RLEV must be between"),
        ({"FSTP": 10**6}, "FSTP must be between"),
    ],
)
def test_swep_bad_params_get_bad_request_and_keep_the_connection(params: dict[str, Any], reason: str) -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> tuple[Any, ncplib.Field]:
        with pytest.raises(ncplib.CommandError) as info:
            await connection.send("DSPC", "SWEP", **params).recv()
        after = await connection.send("NODE", "STAT").recv()
        return info.value, after

    error, after = run_with_node(body)
    assert error.detail.startswith("Bad request: ")
    assert reason in error.detail
    assert error.code == 400
    assert after["OCON"] == 1


@pytest.mark.parametrize("synthesis", SYNTHESES)
def test_time_sample_count_and_dtype(synthesis: str) -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> ncplib.Field:
        return await connection.send("DSPC", "TIME", FCTR=447.05, SAMP=1000, DECI=4).recv()

    field = run_with_node(body, synthesis=synthesis)
    diqt = field["DIQT"]
    assert diqt.typecode == "h"
    assert len(diqt) == 2 * 1000
    assert (field["FCTR"], field["SAMP"], field["DECI"]) == (pytest.approx(447.05), 1000, 4)
    # Not all zero: noise and the PMR446 carrier 1 MHz below the centre.
    assert statistics.pstdev(diqt) > 10


def test_time_sample_count_is_capped_and_checked() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> tuple[ncplib.Field, Any, Any]:
        with pytest.warns(ncplib.CommandWarning) as warned:
            capped = await connection.send("DSPC", "TIME", SAMP=10**7, DECI=1).recv()
        assert [(w.message.code, w.message.detail) for w in warned] == [  # type: ignore[union-attr]
            (
                WARC_CAPPED,
                f"SAMP 10000000 needs 10000000 samples, more than {MAX_SAMPLES}: {MAX_SAMPLES} captured",
            )
        ]
        with pytest.raises(ncplib.CommandError) as zero:
            await connection.send("DSPC", "TIME", SAMP=0).recv()
        with pytest.raises(ncplib.CommandError) as fraction:
            await connection.send("DSPC", "TIME", DECI=1.5).recv()
        return capped, zero.value, fraction.value

    capped, zero, fraction = run_with_node(body, synthesis="numpy")
    assert capped["SAMP"] == MAX_SAMPLES
    assert len(capped["DIQT"]) == 2 * MAX_SAMPLES
    assert "SAMP must be between" in zero.detail
    assert "DECI must be a whole number" in fraction.detail


def _warnings_of(
    body: Callable[[ncplib.Connection, SimulatedNode], Awaitable[Any]], **kwargs: Any
) -> tuple[Any, list[tuple[Any, Any]]]:
    """Runs ``body`` with a node; returns its result and the (WARC, WARN) of every CommandWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_with_node(body, **kwargs)
    commands = [w.message for w in caught if isinstance(w.message, ncplib.CommandWarning)]
    return result, [(w.code, w.detail) for w in commands]


def test_sweep_bin_count_is_nbin_not_the_padded_length() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> ncplib.Field:
        return await connection.send("DSPC", "SWEP", FSTA=88, FSTP=108, RESB=30000).recv()

    field, warned = _warnings_of(body)
    assert warned == []
    assert field["NBIN"] == 667
    # NCP pads the u8 data to a multiple of 4 bytes: one zero that is not a bin.
    assert len(field["PDAT"]) == 668
    assert field["PDAT"][667] == 0
    assert 0 not in field["PDAT"][:667]  # No bin is at RLEV in this scene: the zero is padding.


def test_published_sweep_example_warns_of_unused_params_and_the_bin_cap() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> ncplib.Field:
        response = connection.send("DSPC", "SWEP", FSTA=10000, FSTP=18000, INPT=1, BDEX=1, BINP=2)
        return await response.recv()

    field, warned = _warnings_of(body)
    assert field["NBIN"] == MAX_BINS
    assert field["RESB"] == round(8000e6 / MAX_BINS)
    assert warned == [
        (
            WARC_CAPPED,
            f"RESB 100000 Hz over 8000 MHz needs 80000 bins, more than {MAX_BINS}: RESB 122070 Hz used; "
            "INPT, BDEX, BINP not used by this node: ignored",
        )
    ]


def test_time_physical_params_set_the_sample_rate_and_count() -> None:
    # The published TIME example's vocabulary: 446.05 MHz, 1 MHz of bandwidth, 10 ms.
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> ncplib.Field:
        params = {"FCTR": 446, "FCTM": 50_000_000, "RBME": 1, "RBMI": 0, "LSEC": 0, "LNAN": 10_000_000}
        return await connection.send("DSPC", "TIME", **params).recv()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Every param is used and nothing capped: no warning.
        field = run_with_node(body, synthesis="numpy")
    rate = _signal.IQ_SAMPLE_RATE_HZ / field["DECI"]
    assert field["DECI"] == 62  # The highest decimation whose rate covers 1 MHz.
    assert rate >= 1e6 > _signal.IQ_SAMPLE_RATE_HZ / (field["DECI"] + 1)
    assert field["SAMP"] == math.ceil(0.01 * rate)
    assert len(field["DIQT"]) == 2 * field["SAMP"]
    # The reply says what was used, in the request's terms.
    assert field["RBME"] * 1e6 + field["RBMI"] / 1e3 == pytest.approx(rate, abs=1e-3)
    assert field["LSEC"] + field["LNAN"] / 1e9 == pytest.approx(field["SAMP"] / rate, abs=1e-9)
    assert field["LSEC"] + field["LNAN"] / 1e9 >= 0.01
    assert (field["FCTR"], field["FCTM"]) == (446, 50_000_000)


def test_time_caps_and_overrides_are_reported() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        return [
            # More bandwidth than the receiver has, SAMP and DECI overridden.
            await connection.send("DSPC", "TIME", RBME=100, LNAN=1000, SAMP=5, DECI=2).recv(),
            # A length longer than the most samples.
            await connection.send("DSPC", "TIME", RBME=20, LSEC=1).recv(),
        ]

    (wide, long), warned = _warnings_of(body, synthesis="numpy")
    assert (wide["DECI"], wide["SAMP"]) == (1, math.ceil(62.5e6 * 1e-6))
    assert (long["DECI"], long["SAMP"]) == (3, MAX_SAMPLES)
    assert warned == [
        (
            WARC_CAPPED,
            "RBME/RBMI 100 MHz is more than the receiver's 62.5 MHz: 62.5 MHz used; "
            "DECI ignored: RBME/RBMI set the sample rate; SAMP ignored: LSEC/LNAN set the sample count",
        ),
        (
            WARC_CAPPED,
            f"LSEC/LNAN 1 s at 20.8333 MS/s needs 20833334 samples, more than {MAX_SAMPLES}: "
            f"{MAX_SAMPLES} captured",
        ),
    ]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"RBME": 0, "RBMI": 0}, "RBME/RBMI must give a bandwidth of more than 0"),
        ({"LSEC": 0, "LNAN": 0}, "LSEC/LNAN must give a length of more than 0"),
        ({"LNAN": 10**9}, "LNAN must be between 0 and 1e+09"),
        ({"FCTM": -1}, "FCTM must be between"),
        ({"DECI": MAX_DECIMATION + 1}, "DECI must be between"),
    ],
)
def test_time_physical_params_are_checked(params: dict[str, Any], reason: str) -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> Any:
        with pytest.raises(ncplib.CommandError) as info:
            await connection.send("DSPC", "TIME", **params).recv()
        return info.value

    error = run_with_node(body)
    assert reason in error.detail


def test_unused_params_are_reported_once_per_stream_before_the_data() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        response = connection.send("DSPL", "SWEP", FSTA=100, FSTP=101, RESB=10000, XTRA=1)
        return [await response.recv() for _ in range(3)]

    (ackn, *sweeps), warned = _warnings_of(body, rate=100, auto_ackn=False)
    assert dict(ackn) == {"ACKN": 1, "WARN": "XTRA not used by this node: ignored", "WARC": WARC_IGNORED}
    assert all("PDAT" in sweep and "WARN" not in sweep for sweep in sweeps)
    assert warned == [(WARC_IGNORED, "XTRA not used by this node: ignored")]


def test_stat_and_gps() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        return [
            await connection.send("NODE", "STAT").recv(),
            await connection.send("NODE", "GPS").recv(),
            await connection.send("NODE", "SGPS").recv(),
        ]

    stat, gps, sgps = run_with_node(body)
    assert stat["OCON"] == 1
    assert stat["CADD"] == "127.0.0.1"
    assert stat["CIDS"] == socket.gethostname()
    assert stat["ELOC"] == 0
    for field in (gps, sgps):
        assert -90e6 <= field["LATI"] <= 90e6
        assert -180e6 <= field["LONG"] <= 180e6
        assert field["GFIX"] == 1
        assert field["SATS"] > 0
        assert abs(field["UTIM"] - time.time()) < 60
        assert isinstance(field["TSTR"], str)


@pytest.mark.parametrize(("packet_type", "field_name"), [("DSPC", "XXXX"), ("ABCD", "SWEP"), ("DSPL", "FOO")])
def test_unknown_commands_get_an_error_and_keep_the_connection(packet_type: str, field_name: str) -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> tuple[Any, ncplib.Field]:
        with pytest.raises(ncplib.CommandError) as info:
            await connection.send(packet_type, field_name, FOO=1).recv()
        return info.value, await connection.send("DSPC", "SWEP").recv()

    error, after = run_with_node(body)
    assert (error.detail, error.code) == ("Unknown command", 400)
    assert (error.field.packet_type, error.field.name) == (packet_type, field_name)
    assert len(after["PDAT"]) == 1000


def test_commands_are_acknowledged_first_then_answered_with_the_same_field_id() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        response = connection.send("DSPC", "SWEP")
        # A response only yields fields that repeat the request's packet type, name and id.
        return [await response.recv(), await response.recv()]

    ackn, data = run_with_node(body, auto_ackn=False)
    assert dict(ackn) == {"ACKN": 1}
    assert "PDAT" in data
    assert (ackn.packet_type, ackn.name, ackn.id) == (data.packet_type, data.name, data.id)


def test_dspl_repeats_until_the_client_disconnects() -> None:
    async def main() -> tuple[list[ncplib.Field], bool]:
        node = SimulatedNode(rate=100)
        server = await node.start("127.0.0.1", 0, timeout=10)
        port = server.sockets[0].getsockname()[1]
        try:
            connection = await ncplib.connect("127.0.0.1", port, timeout=10)
            async with connection:
                response = connection.send("DSPL", "SWEP", FSTA=100, FSTP=101, RESB=10000)
                fields = [await asyncio.wait_for(response.recv(), 10) for _ in range(5)]
            # The node notices the disconnection and ends the stream (no timing asserted: poll).
            for _ in range(500):
                if not node.connections:
                    break
                await asyncio.sleep(0.01)
            return fields, not node.connections
        finally:
            server.close()
            await server.wait_closed()

    fields, ended = asyncio.run(main())
    assert [len(field["PDAT"]) for field in fields] == [100] * 5
    assert len({field.id for field in fields}) == 1
    # Different sweeps, not one repeated: the noise differs.
    assert len({bytes(field["PDAT"]) for field in fields}) == 5
    assert ended


def test_a_new_dspl_with_the_same_field_name_replaces_the_stream() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> tuple[int, list[ncplib.Field]]:
        first = connection.send("DSPL", "SWEP", FSTA=100, FSTP=101, RESB=10000)
        await first.recv()
        second = connection.send("DSPL", "SWEP", FSTA=200, FSTP=202, RESB=10000)
        received = [await second.recv()]
        # Everything after the second stream's first reply: the first stream must have stopped.
        received += [await connection.recv() for _ in range(6)]
        return received[0].id, received

    second_id, received = run_with_node(body, rate=100)
    assert [field.id for field in received[-3:]] == [second_id] * 3
    assert [len(field["PDAT"]) for field in received[-3:]] == [200] * 3


def test_two_streams_run_side_by_side() -> None:
    async def body(connection: ncplib.Connection, node: SimulatedNode) -> tuple[ncplib.Field, ncplib.Field]:
        sweeps = connection.send("DSPL", "SWEP")
        captures = connection.send("DSPL", "TIME", SAMP=16)
        return await sweeps.recv(), await captures.recv()

    sweep, capture = run_with_node(body)
    assert len(sweep["PDAT"]) == 1000
    assert len(capture["DIQT"]) == 32


def test_slow_client_does_not_make_the_node_buffer_without_bound() -> None:
    async def main() -> tuple[int, int]:
        node = SimulatedNode(rate=0, synthesis="numpy")
        server = await node.start("127.0.0.1", 0, timeout=10)
        port = server.sockets[0].getsockname()[1]
        try:
            connection = await ncplib.connect("127.0.0.1", port, timeout=10)
            async with connection:
                # 1 MiB per reply, as fast as possible, and the client does not read for a while.
                response = connection.send("DSPL", "TIME", SAMP=MAX_SAMPLES, DECI=1)
                await asyncio.sleep(1.0)
                (server_side,) = node.connections
                buffered = server_side.transport.get_write_buffer_size()
                first = await asyncio.wait_for(response.recv(), 10)
                return buffered, len(first["DIQT"])
        finally:
            server.close()
            await server.wait_closed()

    buffered, length = asyncio.run(main())
    assert length == 2 * MAX_SAMPLES
    # Without flow control the node would queue about a hundred 1 MiB replies in that second.
    assert buffered <= 4 * 4 * MAX_SAMPLES


def test_helo_carries_the_node_identity() -> None:
    async def main() -> list[Any]:
        server = await start_node("127.0.0.1", 0, timeout=10)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            framer = PacketReader()
            packets: list[Any] = []
            while not packets:
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data
                framer.feed(data)
                packets = framer.read_packets()
            writer.close()
            await writer.wait_closed()
            return packets
        finally:
            server.close()
            await server.wait_closed()

    packets = asyncio.run(main())
    packet_type, _, _, _, fields = packets[0]
    assert packet_type == "LINK"
    assert [field[0] for field in fields] == ["HELO"]
    params = dict(fields[0][2])
    if not params:
        pytest.skip("ncplib.start_server sends HELO without params (no way to add them yet)")
    assert set(params) >= {"NCPV", "SEID", "MACA"}
    assert all(isinstance(value, str) for value in params.values())


def test_pure_python_synthesis_when_numpy_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_signal, "np", None)
    assert not _signal.numpy_available()
    assert _signal.Scene().use_numpy is False
    with pytest.raises(ImportError):
        SimulatedNode(synthesis="numpy")

    async def body(connection: ncplib.Connection, node: SimulatedNode) -> list[ncplib.Field]:
        return [
            await connection.send("DSPC", "SWEP").recv(),
            await connection.send("DSPC", "TIME", SAMP=64).recv(),
        ]

    sweep, capture = run_with_node(body)
    assert len(sweep["PDAT"]) == 1000
    assert len(capture["DIQT"]) == 128


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"rate": -1}, ValueError), ({"rate": math.inf}, ValueError), ({"synthesis": "fast"}, ValueError)],
)
def test_node_arguments_are_checked(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        SimulatedNode(**kwargs)
