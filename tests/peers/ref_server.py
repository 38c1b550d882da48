"""
Runs a test server with the reference ncplib (run by the reference interpreter only).

Usage: ``ref_server.py OPTIONS_JSON``, options as in ``common.start_test_server``. Prints one JSON
line ``{"port": N}`` once listening, then serves until its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path

import common

import ncplib


def check_reference() -> None:
    """Refuses to run with the ncplib under test: this driver is the reference peer."""
    if Path(ncplib.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]):
        raise SystemExit("ref_server.py must run with the reference ncplib, not the one under test")


async def main(options: dict) -> None:
    server = await common.start_test_server(options)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    await stdin_closed.wait()
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)


if __name__ == "__main__":
    check_reference()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
