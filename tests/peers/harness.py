"""
Test-side plumbing for interop tests: reference peers as subprocesses, our peers in-process.

A *pair* is (client kind, server kind), each ``"ours"`` or ``"ref"``. Reference peers always run
in their own process with the reference interpreter; our peers run in the test's event loop.
Every wait is bounded and every subprocess is reaped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pytest

PEERS = Path(__file__).resolve().parent
REPO = PEERS.parents[1]

# Bounds on every wait, so that a broken peer fails a test instead of hanging it.
START_TIMEOUT = 30.0
OP_TIMEOUT = 30.0


# The reference interpreter, or why it could not be had: looked for once per test process.
_reference: list[str | Exception] = []


def reference_python() -> str:
    """
    The reference interpreter (its virtual environment is created on first use, from the package
    index). When it cannot be created, the calling test is skipped with the reason, unless ``CI``
    is set in the environment: there a missing reference is a failure, not a skip.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tools.refenv import REFERENCE_REQUIREMENT, venv_dir
    from tools.refenv import reference_python as find

    if not _reference:
        try:
            _reference.append(str(find()))
        except (RuntimeError, OSError) as ex:
            _reference.append(ex)
    found = _reference[0]
    if isinstance(found, str):
        return found
    lines = str(found).strip().splitlines() or [type(found).__name__]
    why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    reason = (
        f"{REFERENCE_REQUIREMENT} is not available: {why} "
        f"(the interop tests install it from the package index into {venv_dir()} the first time, "
        "see tools/refenv.py; with CI set this is a failure)"
    )
    if os.environ.get("CI"):
        raise RuntimeError(reason) from found
    pytest.skip(reason)


def _reference_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NCPLIB_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _open_log(path: Path) -> BinaryIO:
    return open(path, "wb")


class ClientPeer(Protocol):
    """A client that runs :class:`common.ClientSession` operations."""

    kind: str

    async def call(self, op: dict[str, Any]) -> dict[str, Any]: ...


class OurClient:
    """Our client, in the test's own event loop."""

    kind = "ours"

    def __init__(self) -> None:
        from peers.common import ClientSession

        self._session = ClientSession()

    async def call(self, op: dict[str, Any]) -> dict[str, Any]:
        op = {"op_timeout": OP_TIMEOUT, **op}
        result = await self._session.run(op)
        # The same JSON round trip as a reference result takes.
        return json.loads(json.dumps(result))

    async def aclose(self) -> None:
        try:
            await self._session.run({"op": "close", "op_timeout": 10})
        finally:
            self._session.detach()


class RefClient:
    """The reference client, in a subprocess speaking JSON lines."""

    kind = "ref"

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self._process = process
        self.stderr_path = stderr_path

    @classmethod
    async def start(cls, stderr_path: Path) -> RefClient:
        stderr = _open_log(stderr_path)
        try:
            process = await asyncio.create_subprocess_exec(
                reference_python(),
                str(PEERS / "ref_client.py"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                cwd=str(PEERS),
                env=_reference_env(),
            )
        finally:
            stderr.close()
        return cls(process, stderr_path)

    async def call(self, op: dict[str, Any]) -> dict[str, Any]:
        op = {"op_timeout": OP_TIMEOUT, **op}
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(op).encode() + b"\n")
        await self._process.stdin.drain()
        line = await asyncio.wait_for(self._process.stdout.readline(), op["op_timeout"] + 5)
        if not line:
            raise RuntimeError(f"reference client exited; stderr:\n{self.stderr()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def aclose(self) -> None:
        process = self._process
        try:
            if process.returncode is None and process.stdin is not None:
                process.stdin.write(b'{"op": "exit"}\n')
                await process.stdin.drain()
                process.stdin.close()
            await asyncio.wait_for(process.wait(), 10)
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


class RefServer:
    """A reference server subprocess; it exits when its standard input closes."""

    def __init__(self, options: dict[str, Any], stderr_path: Path) -> None:
        self.options = options
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                [reference_python(), str(PEERS / "ref_server.py"), json.dumps(options)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=str(PEERS),
                env=_reference_env(),
            )
        line = _readline_within(self._process, START_TIMEOUT)
        if not line:
            self.stop()
            raise RuntimeError(f"reference server did not start; stderr:\n{self.stderr()}")
        self.port = int(json.loads(line)["port"])

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        process = self._process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _readline_within(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not box:
        process.kill()
        process.wait(10)
        reader.join(5)
    return box[0] if box else b""


class RefServers:
    """Reference servers shared by the tests of a session, one per set of options."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._servers: dict[str, RefServer] = {}

    def get(self, options: dict[str, Any]) -> RefServer:
        key = json.dumps(options, sort_keys=True)
        server = self._servers.get(key)
        if server is None:
            stderr_path = self._directory / f"ref-server-{len(self._servers)}.log"
            server = self._servers[key] = RefServer(options, stderr_path)
        return server

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@asynccontextmanager
async def serving(kind: str, options: dict[str, Any], ref_servers: RefServers) -> AsyncIterator[int]:
    """Yields the port of a server of the given kind, started with the given options."""
    if kind == "ref":
        yield ref_servers.get(options).port
        return
    from peers.common import start_test_server

    server = await start_test_server(options)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 10)


@asynccontextmanager
async def client_peer(kind: str, directory: Path) -> AsyncIterator[Any]:
    """Yields a client peer of the given kind, closed afterwards."""
    peer: Any = OurClient() if kind == "ours" else await RefClient.start(directory / "ref-client.log")
    try:
        yield peer
    finally:
        await peer.aclose()


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """Runs a test coroutine in a fresh event loop, bounded in time."""

    async def bounded() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(bounded())


def make_certificate(directory: Path) -> tuple[Path, Path, Path] | None:
    """
    A certificate for 127.0.0.1 as (certificate, key, authority to trust): self-signed by the
    openssl CLI, else issued by a trustme authority; None if neither is available.
    """
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return cert, key, cert
    try:
        import trustme
    except ImportError:
        return None
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    issued.private_key_pem.write_to_path(str(key))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    return cert, key, directory / "ca.pem"
