"""
Collector: one task per connection awaiting ``response.recv()``, the public API only.

This is the code a user writes today; it runs unchanged under our ncplib and under the
reference 6.1.0 (with either library's interpreter). See :mod:`collector` for the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from collector import main
from shapes import SHAPES

import ncplib

# Connections opened at once (the rest wait), so a thousand do not all handshake together.
CONNECTING = 50


async def start(args: argparse.Namespace, counts: list[int]) -> list[Any]:
    shape = SHAPES[args.shape]
    gate = asyncio.Semaphore(CONNECTING)
    connected = 0
    everyone = asyncio.Event()

    async def collect(index: int) -> None:
        nonlocal connected
        async with gate:
            connection = await ncplib.connect("127.0.0.1", args.port, timeout=60)
        # Streams start together once every connection is made: a slow start must not leave the
        # first connections with a backlog that the window would then measure.
        connected += 1
        if connected == args.connections:
            everyone.set()
        await everyone.wait()
        response = connection.send(shape.packet_type, shape.field_name, COUN=0)
        param = shape.param
        while True:
            field = await response.recv()
            field[param]
            counts[index] += 1

    return [asyncio.create_task(collect(i)) for i in range(args.connections)]


if __name__ == "__main__":
    main(start)
