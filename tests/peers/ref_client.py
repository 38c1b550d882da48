"""
Drives a client connection of the reference ncplib (run by the reference interpreter only).

Reads one JSON operation per line on standard input (see ``common.ClientSession``), writes one
JSON result per line on standard output. ``{"op": "exit"}`` or end of input closes and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import common

import ncplib


def check_reference() -> None:
    """Refuses to run with the ncplib under test: this driver is the reference peer."""
    if Path(ncplib.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]):
        raise SystemExit("ref_client.py must run with the reference ncplib, not the one under test")


async def main() -> None:
    loop = asyncio.get_running_loop()
    session = common.ClientSession()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        op = json.loads(line)
        if op["op"] == "exit":
            break
        result = await session.run(op)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    await session.run({"op": "close"})


if __name__ == "__main__":
    check_reference()
    asyncio.run(main())
