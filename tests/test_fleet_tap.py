"""
The fleet's tap (ncplib.fleet._tap): the callback that takes a node's fields as they arrive
while the consumer waits. Its compiled implementation takes the common packet (one field,
nothing to filter, debug logging off) itself and leaves every other case to the fleet; these
tests send each case over a real socket, in one write, and check that the loop over the fleet
gets exactly what ``Connection.recv`` would have: the same fields, in order, filtered alike.
(The suite runs once with the compiled codec and once with NCPLIB_PUREPYTHON=1.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from netutil import LOOPS, packet_bytes, run, serving

import ncplib
from ncplib.codec import IMPLEMENTATION
from ncplib.fleet._error_log import BURST
from ncplib.fleet._tap import TURN

DEADLINE = 30.0
Packets = list[bytes]


async def fleet_fields(
    packets: Packets, until: Callable[[list[tuple[ncplib.Node, ncplib.Field]]], bool], **fleet_args: Any
) -> tuple[list[tuple[ncplib.Node, ncplib.Field]], ncplib.Fleet]:
    """
    A fleet of one node whose server writes ``packets`` (joined: one write) when subscribed,
    then keeps the connection open; returns what the fleet's loop gave until ``until`` held.
    """

    async def handler(connection: ncplib.Connection) -> None:
        with contextlib.suppress(ncplib.NCPError):
            async for field in connection:
                if field.name == "TAPS":
                    connection.transport.write(b"".join(packets))

    got: list[tuple[ncplib.Node, ncplib.Field]] = []
    async with serving(handler) as (_, port):
        fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10, **fleet_args)
        fleet.subscribe("DSPL", "TAPS")

        async def loop() -> None:
            async for node, field in fleet:
                got.append((node, field))
                if until(got):
                    return

        async with fleet:
            await asyncio.wait_for(loop(), DEADLINE)
            # Nothing more arrives.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(fleet.__anext__(), 0.2)
    return got, fleet


def single(seq: int, **params: Any) -> bytes:
    return packet_bytes("DSPL", [("SWEP", 7, {"SEQN": seq, **params})], packet_id=seq)


def test_the_compiled_tap_is_used_where_the_codec_is_compiled() -> None:
    fleet = ncplib.Fleet(["127.0.0.1:1"])
    (node,) = fleet.nodes
    module = type(node._on_data).__module__
    assert module == ("ncplib._codec" if IMPLEMENTATION == "compiled" else "ncplib.fleet._tap")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_field_from_the_tap_is_the_field_recv_gives(loop: str) -> None:
    async def main() -> None:
        got, fleet = await fleet_fields(
            [single(1, FSTA=400.5, NAME="band", PDAT=b"\x01\x02\x03\x04")], lambda got: len(got) == 1
        )
        ((node, field),) = got
        assert node is fleet.nodes[0]
        assert type(field) is ncplib.Field
        assert dict(field) == {"SEQN": 1, "FSTA": 400.5, "NAME": "band", "PDAT": b"\x01\x02\x03\x04"}
        assert list(field) == ["SEQN", "FSTA", "NAME", "PDAT"]
        assert (field.packet_type, field.packet_id, field.name, field.id) == ("DSPL", 1, "SWEP", 7)
        assert field.packet_timestamp.tzinfo is not None
        assert isinstance(field.connection, ncplib.Connection)
        assert node.fields == 1

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_many_packets_in_one_read_arrive_in_order_over_several_turns(loop: str) -> None:
    count = 3 * TURN + 5

    async def main() -> None:
        got, _ = await fleet_fields([single(seq) for seq in range(count)], lambda got: len(got) == count)
        assert [field["SEQN"] for _, field in got] == list(range(count))

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_packets_of_several_fields_arrive_whole_and_in_order(loop: str) -> None:
    packets = [
        single(0),
        packet_bytes("DSPL", [("SWEP", 1, {"SEQN": 1}), ("TIME", 2, {"SEQN": 2}), ("SWEP", 3, {"SEQN": 3})]),
        single(4),
        packet_bytes("DSPL", []),  # no field at all
        single(5),
    ]

    async def main() -> None:
        got, _ = await fleet_fields(packets, lambda got: len(got) == 6)
        assert [(field.name, field["SEQN"]) for _, field in got] == [
            ("SWEP", 0),
            ("SWEP", 1),
            ("TIME", 2),
            ("SWEP", 3),
            ("SWEP", 4),
            ("SWEP", 5),
        ]

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_notices_are_filtered_per_node_as_recv_filters_them(loop: str) -> None:
    packets = [
        single(0),
        single(1, ACKN=1),  # an acknowledgement: skipped
        single(2, ERRO="Bad request: no", ERRC=400),  # an error: reported on the node
        single(3, WARN="capped", WARC=2),  # a warning: warned, then delivered
        packet_bytes("DSPL", [("ERRO", 9, {"SEQN": 4})]),  # a notice field: never delivered
        single(5),
    ]

    async def main() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got, fleet = await fleet_fields(packets, lambda got: len(got) == 3)
        assert [field["SEQN"] for _, field in got] == [0, 3, 5]
        (node,) = fleet.nodes
        assert isinstance(node.last_error, ncplib.CommandError)
        assert node.last_error.detail == "Bad request: no"
        assert node.reconnects == 0
        assert [str(w.message.detail) for w in caught if isinstance(w.message, ncplib.CommandWarning)] == [
            "capped"
        ]

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_warning_made_an_error_is_reported_on_its_node(loop: str) -> None:
    # Under an "error" warnings filter (python -W error, pytest's filterwarnings), the WARN
    # field's CommandWarning is raised: the fleet reports it on the node as an ERRO field's
    # CommandError, keeps the connection and delivers what follows (not the field that carried
    # the warning: recv raises instead of returning it, too).
    packets = [single(0), single(1, WARN="capped", WARC=2), single(2)]

    async def main() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ncplib.CommandWarning)
            got, fleet = await fleet_fields(packets, lambda got: len(got) == 2)
        assert [field["SEQN"] for _, field in got] == [0, 2]
        (node,) = fleet.nodes
        assert isinstance(node.last_error, ncplib.CommandWarning)
        assert node.last_error.detail == "capped"
        assert node.reconnects == 0

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_flood_of_errors_is_logged_as_a_burst(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    # A node sending error after error gets BURST log records in a window, not one each; its
    # last_error still follows every one, and the fields around them are delivered.
    errors = 5 * BURST
    packets = [single(seq, ERRO=f"failure {seq}", ERRC=400) for seq in range(errors)] + [single(errors)]

    async def main() -> None:
        got, fleet = await fleet_fields(packets, lambda got: len(got) == 1)
        assert [field["SEQN"] for _, field in got] == [errors]
        (node,) = fleet.nodes
        assert isinstance(node.last_error, ncplib.CommandError)
        assert node.last_error.detail == f"failure {errors - 1}"

    with caplog.at_level(logging.WARNING, logger="ncplib.fleet"):
        run(main, loop=loop)
    logged = [record.getMessage() for record in caplog.records if "failure" in record.getMessage()]
    assert len(logged) == BURST + 1
    assert [re.search(r"failure (\d+)", message)[1] for message in logged] == [  # type: ignore[index]
        str(seq) for seq in [*range(BURST), errors - 1]
    ]
    assert "further errors are not logged" in logged[BURST - 1]
    # When the connection ended (the fleet closed), the count of those not logged, and the last.
    assert f"{errors - BURST} errors of this node not logged, the last: " in logged[-1]


def test_notices_are_delivered_when_the_filters_are_off() -> None:
    packets = [single(0, ACKN=1), single(1, ERRO="no", ERRC=400), single(2, WARN="w", WARC=1)]

    async def main() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning either
            got, fleet = await fleet_fields(
                packets, lambda got: len(got) == 3, auto_erro=False, auto_warn=False, auto_ackn=False
            )
        assert [field["SEQN"] for _, field in got] == [0, 1, 2]
        assert fleet.nodes[0].last_error is None

    run(main)


def test_fields_are_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        got, _ = await fleet_fields([single(0), single(1)], lambda got: len(got) == 2)
        assert [field["SEQN"] for _, field in got] == [0, 1]

    with caplog.at_level(logging.DEBUG):
        run(main)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Received packet DSPL" in message for message in messages) >= 2
    assert sum("Received field DSPL SWEP" in message for message in messages) >= 2


@pytest.mark.parametrize("loop", LOOPS)
def test_the_end_comes_after_every_field_sent_before_it(loop: str) -> None:
    """A server sends numbered fields and hangs up; each connection's fields all arrive, in
    order, before the node reconnects."""
    connections = 0

    async def handler(connection: ncplib.Connection) -> None:
        nonlocal connections
        connections += 1
        number = connections
        with contextlib.suppress(ncplib.NCPError):
            async for field in connection:
                if field.name == "TAPS":
                    connection.transport.write(b"".join(single(seq, CONN=number) for seq in range(TURN + 3)))
                    connection.close()

    async def main() -> None:
        async with serving(handler) as (_, port):
            fleet = ncplib.Fleet([f"127.0.0.1:{port}"], timeout=10, reconnect_delay=(0.01, 0.05))
            fleet.subscribe("DSPL", "TAPS")
            got: list[tuple[int, int]] = []
            async with fleet:
                async for _, field in fleet:
                    got.append((field["CONN"], field["SEQN"]))
                    if len(got) == 2 * (TURN + 3):
                        break
        assert got == [(conn, seq) for conn in (1, 2) for seq in range(TURN + 3)]

    run(main, loop=loop)
