"""
The asyncio protocol's receive core (``ncplib._receive``, compiled in ``_receive.pxi``): values
and misuse are handled as Python would, with either codec (the suite runs with each).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timezone

import pytest

from ncplib._protocol import NCPProtocol
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
