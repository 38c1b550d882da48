"""
Idle memory per connection: how much a server's RSS grows with connections that send nothing.

For each server library (ours, the reference 6.1.0) and transport (plain TCP, TLS with a
throw-away self-signed certificate), a fresh ``idle_server.py`` process gets a few warm-up
connections, then ``--connections`` more that complete the handshake and stay idle; the growth
of the server's RSS over those is reported, in all and per connection. The clients are ours, in
this process.

Usage: ``.venv/bin/python bench/fleet/idle_memory.py [--connections 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import ncplib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WARM_UP = 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("openssl is needed for the TLS measurement")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def measure(python: str, count: int, tls: tuple[Path, Path] | None) -> dict[str, float]:
    args = [python, str(HERE / "idle_server.py")] + ([str(p) for p in tls] if tls else [])
    # A plain Popen: the server only prints one line and waits for its stdin to close.
    server = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(HERE))  # noqa: ASYNC220
    connections: list[ncplib.Connection] = []
    try:
        assert server.stdout is not None and server.stdin is not None
        info = json.loads(server.stdout.readline())
        context: ssl.SSLContext | bool = False
        if tls:
            context = ssl.create_default_context(cafile=str(tls[0]))

        async def more(n: int) -> None:
            for start in range(0, n, 50):
                connections.extend(
                    await asyncio.gather(
                        *(
                            ncplib.connect("127.0.0.1", info["port"], timeout=60, ssl=context)
                            for _ in range(min(50, n - start))
                        )
                    )
                )

        await more(WARM_UP)
        await asyncio.sleep(0.5)
        before = rss_kib(info["pid"])
        await more(count)
        await asyncio.sleep(1.0)
        grown = rss_kib(info["pid"]) - before
        return {"rss_growth_mb": grown / 1024, "bytes_per_connection": grown * 1024 / count}
    finally:
        for connection in connections:
            connection.close()
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(30)
        await asyncio.gather(*(c.wait_closed() for c in connections), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * args.connections + 256)), hard))
    sys.path.insert(0, str(REPO))
    from tools.refenv import reference_python

    pythons = {"ours": sys.executable, "6.1.0": str(reference_python())}
    with tempfile.TemporaryDirectory() as directory:
        tls = certificate(Path(directory))
        print(f"Server RSS growth for {args.connections} idle connections (after {WARM_UP} warm-up ones)")
        print("| transport | server | RSS growth MB | bytes per connection |\n|---|---|---:|---:|")
        for transport in ("TCP", "TLS"):
            for name, python in pythons.items():
                result = asyncio.run(measure(python, args.connections, tls if transport == "TLS" else None))
                print(
                    f"| {transport} | {name} | {result['rss_growth_mb']:.1f} | "
                    f"{result['bytes_per_connection']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
