"""
An echo server in a process of its own, for the flood tests: ours or, run with the reference
environment's interpreter, ncplib 6.1.0's (only the arguments both have are used).

``python tests/flood_server.py TIMEOUT [--cert CERT --key KEY] [--auth USER:PASSWORD]
[--max-connections N]`` prints the port it listens on (127.0.0.1, a free port) and serves until
its stdin closes (``test_flood.FloodServer`` runs it as a context manager). It imports nothing
of the tests, so that the reference interpreter can run it.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

__all__ = ["self_signed_certificate"]


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """
    A certificate for 127.0.0.1 and localhost and its key, made with ``openssl`` in ``directory``
    (valid one day); :data:`None` when ``openssl`` is not installed.
    """
    import shutil

    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def _echo(connection: Any) -> None:
    import ncplib

    try:
        async for field in connection:
            field.send(**field)
    except ncplib.NCPError:
        pass


async def _serve(args: argparse.Namespace) -> None:
    import ncplib

    kwargs: dict[str, Any] = {"timeout": args.timeout}
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        kwargs["ssl"] = context
    if args.auth:
        user, _, password = args.auth.partition(":")
        kwargs["authenticate"] = lambda u, p: (u, p) == (user, password)
    if args.max_connections is not None:
        kwargs["max_connections"] = args.max_connections
    server = await ncplib.start_server(_echo, "127.0.0.1", 0, **kwargs)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("timeout", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    parser.add_argument("--max-connections", type=int)
    args = parser.parse_args(argv)
    import logging
    import resource

    logging.disable(logging.WARNING)  # thousands of refused or timed-out peers: no log flood
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
