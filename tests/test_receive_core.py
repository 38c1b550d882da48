"""
The asyncio protocol's receive core (``ncplib._receive``, compiled in ``_receive.pxi``): values
and misuse are handled as Python would, with either codec (the suite runs with each).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from ncplib._protocol import NCPProtocol
from ncplib.errors import NetworkTimeoutError
from ncplib.packets import encode_packet

PACKET = encode_packet(
    "DSPC", 1, datetime(2026, 1, 2, tzinfo=timezone.utc), b"\0\0\0\0", [("SWEP", 7, [("SEQN", 1)])]
)


def feed(protocol: NCPProtocol, data: bytes) -> None:
    view = protocol.get_buffer(-1)
    view[: len(data)] = data
    protocol.buffer_updated(len(data))


@pytest.mark.parametrize("high_water", [2**63, 2**100, sys.maxsize])
def test_a_high_water_mark_beyond_any_size_means_no_limit(high_water: int) -> None:
    async def main() -> None:
        protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False, high_water=high_water)
        assert protocol.high_water == sys.maxsize
        feed(protocol, PACKET * 3)
        packets = [protocol.next_packet() for _ in range(3)]
        assert [(p[0], p[4][0][:2]) for p in packets if p is not None] == [("DSPC", ("SWEP", 7))] * 3

    asyncio.run(main())


@pytest.mark.parametrize("call", ["next_packet", "_has_news", "get_buffer"])
def test_a_protocol_without_a_reader_raises_rather_than_crashes(call: str) -> None:
    # Misuse, never done by the library: the compiled core's reader slot is typed, and must not
    # be read through a null pointer.
    async def main() -> None:
        protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False)
        protocol.reader = None  # type: ignore[assignment]
        method = getattr(protocol, call)
        with pytest.raises(AttributeError):
            method(-1) if call == "get_buffer" else method()

    asyncio.run(main())


def test_every_wait_open_at_once_is_woken_and_none_is_left() -> None:
    # The first wait is held in the core's own attributes, the others listed: a packet ends them
    # all, a withdrawn one is skipped, and a wait after that starts afresh.
    async def main() -> None:
        protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False)
        first = protocol.wait_data(0)
        second = protocol.wait_data(0)
        third = protocol.wait_data(0)
        second.cancel()
        assert protocol._someone_waits()
        feed(protocol, PACKET)
        assert first.done() and third.done() and second.cancelled()
        assert first.result() is None and third.result() is None
        assert not protocol._someone_waits()
        assert protocol._waiter is None and not protocol._waiters
        # The first wait withdrawn: the next one takes its place, and it is the one woken.
        assert protocol.next_packet() is not None
        withdrawn = protocol.wait_data(0)
        withdrawn.cancel()
        later = protocol.wait_data(0)
        assert protocol._waiter is later and not protocol._waiters
        protocol.connection_lost(None)
        assert later.done() and later.result() is None

    asyncio.run(main())


def test_a_wait_beside_another_keeps_its_own_timeout() -> None:
    async def main() -> None:
        protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False)
        patient = protocol.wait_data(0)
        hasty = protocol.wait_data(0.01)
        with pytest.raises(NetworkTimeoutError, match=r"No complete packet received for 0\.01 seconds"):
            await hasty
        # The wait with no timeout is still open, and ends with the next packet.
        assert not patient.done()
        feed(protocol, PACKET)
        assert patient.done() and patient.result() is None
        protocol.connection_lost(None)

    asyncio.run(main())


@pytest.mark.parametrize("timeout", [Fraction(1, 100), Decimal("0.01"), 0.01])
def test_a_timeout_of_any_real_number_type_is_enforced(timeout: Any) -> None:
    # Both cores keep the timeout as a float, so its message is formatted alike.
    async def main() -> None:
        protocol = NCPProtocol(max_packet_size=1 << 20, use_numpy=False)
        with pytest.raises(NetworkTimeoutError, match=r"No complete packet received for 0\.01 seconds"):
            await protocol.wait_data(timeout)
        protocol.connection_lost(None)

    asyncio.run(main())
