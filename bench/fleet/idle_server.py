"""
An NCP server whose connections only wait, for the idle-memory measurement; either library.

Usage: ``python idle_server.py [CERT KEY]`` (TLS when a certificate and key are given). Prints
``{"port": N, "pid": P}`` once listening on 127.0.0.1 and serves until its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import sys
import threading

import ncplib


async def handler(connection: object) -> None:
    async for _field in connection:  # type: ignore[attr-defined]
        pass


async def main() -> None:
    context = None
    if len(sys.argv) == 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await ncplib.start_server(handler, "127.0.0.1", 0, timeout=60, ssl=context)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(closed.set)), daemon=True
    ).start()
    await closed.wait()
    os._exit(0)  # the connections' teardown is not measured


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(main())
