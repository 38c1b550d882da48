"""
Streaming NCP server for the end-to-end benchmark; runs with either library's interpreter.

It imports whichever ``ncplib`` its interpreter has (ours or the reference 6.1.0) and uses only
the API both share, plus ``Connection.drain()`` where the library has it. Without ``drain()`` it
polls the public ``transport``'s write buffer against the transport's high-water mark instead, so
neither server buffers without bound. Both keep asyncio's default write-buffer limits unless
``E2E_WRITE_HIGH`` (bytes) sets another high-water mark.

Usage: ``python ncp_server.py``. Prints ``{"port": N}`` once listening on 127.0.0.1 and serves
until its standard input closes. A client asks for a stream with packet ``DSPL`` field ``TIME``
(large I/Q fields) or packet ``DSPC`` field ``SWEP`` (small fields), param ``COUN`` = how many.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import os
import sys
import threading
from typing import Any

import ncplib

LARGE_SAMPLES = 512 * 1024 // 2  # 512 KiB of i16 per field
SMALL_BYTES = 256


async def _backpressure(connection: object) -> None:
    drain = getattr(connection, "drain", None)
    if drain is not None:
        await drain()
        return
    transport = connection.transport  # type: ignore[attr-defined]
    # The reference has no drain() to await: poll its public transport instead, against the same
    # high-water mark that drain() respects.
    high_water = transport.get_write_buffer_limits()[1]
    while transport.get_write_buffer_size() > high_water and not transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(0.0005)


async def stream(connection: object) -> None:
    large = array.array("h", (((i * 7) % 65536) - 32768 for i in range(LARGE_SAMPLES)))
    small = array.array("B", (i % 256 for i in range(SMALL_BYTES)))
    high_water = os.environ.get("E2E_WRITE_HIGH")
    if high_water:
        # An experiment, for both libraries alike. (On CPython 3.11 a large transport buffer costs
        # much copying: the transport compacts its bytearray as it sends.)
        connection.transport.set_write_buffer_limits(high=int(high_water))  # type: ignore[attr-defined]
    async for field in connection:  # type: ignore[attr-defined]
        count = int(field.get("COUN", 0))
        if field.packet_type == "DSPL" and field.name == "TIME":
            values, name = large, "DIQT"
        elif field.packet_type == "DSPC" and field.name == "SWEP":
            values, name = small, "PDAT"
        else:
            continue
        field.send(ACKN=1)
        # Small fields are written in bursts between waits, large ones one at a time.
        burst = 1 if values is large else 64
        for seq in range(count):
            if connection.is_closing():  # type: ignore[attr-defined]
                return
            field.send(SEQN=seq, **{name: values})
            if seq % burst == burst - 1:
                await _backpressure(connection)
        await _backpressure(connection)


async def main() -> None:
    server = await ncplib.start_server(stream, "127.0.0.1", 0, timeout=60)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    await closed.wait()
    server.close()


def run(coro: Any) -> Any:
    """``asyncio.run``, on uvloop's event loop when ``E2E_UVLOOP=1`` (ours only; needs uvloop)."""
    if os.environ.get("E2E_UVLOOP") == "1":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(coro)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    run(main())
