"""
Every code example in README.rst and docs/ runs.

- ``.. code-block:: python`` blocks are complete programs. Clients run against a simulated node
  (``ncplib node``) with port 9999 replaced by the node's port. Servers (blocks that call
  ``serve_forever``) are started on a free port and must answer a client's command.
- ``$ ncplib send`` and ``$ ncplib stream`` lines of ``.. code-block:: console`` blocks run
  against the same node and must succeed.
- ``>>>`` examples run as doctests.
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ncplib

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """``(line number, dedented code)`` of each ``.. code-block:: <language>`` in a reST file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        text = "\n".join(body)
        blocks.append((number + 1, textwrap.dedent(text).strip("\n") + "\n"))
    return blocks


def examples(language: str) -> list[pytest.param]:  # type: ignore[valid-type]
    found = []
    for path in DOCUMENTS:
        for line, code in code_blocks(path, language):
            found.append(pytest.param(code, id=f"{path.relative_to(ROOT)}:{line}"))
    return found


PYTHON_EXAMPLES = examples("python")
CLIENT_EXAMPLES = [example for example in PYTHON_EXAMPLES if "serve_forever" not in example.values[0]]
SERVER_EXAMPLES = [example for example in PYTHON_EXAMPLES if "serve_forever" in example.values[0]]
CONSOLE_COMMANDS = [
    pytest.param(line[2:], id=f"{example.id}:{index}")
    for example in examples("console")
    for index, line in enumerate(example.values[0].splitlines())
    if line.startswith(("$ ncplib send ", "$ ncplib stream "))
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_port(code: str, port: int) -> str:
    assert "9999" in code, "examples talk to port 9999"
    return re.sub(r"\b9999\b", str(port), code)


@pytest.fixture(scope="module")
def node_port() -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "node", "--port", "0", "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        assert "listening on" in line, line
        yield int(line.split(" (")[0].rsplit(":", 1)[1])
    finally:
        if sys.platform == "win32":
            process.terminate()
        else:
            process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def workdir(node_port: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``sweeps.ncp`` (saved with ``ncplib stream --save``) for the examples."""
    path = tmp_path_factory.mktemp("examples")
    result = subprocess.run(
        [sys.executable, "-m", "ncplib", "stream", f"127.0.0.1:{node_port}", "DSPL", "SWEP", "--count", "3",
         "-q", "--save", "sweeps.ncp"],
        cwd=path, capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


def test_examples_were_found() -> None:
    assert len(CLIENT_EXAMPLES) >= 8
    assert len(SERVER_EXAMPLES) >= 4
    assert len(CONSOLE_COMMANDS) >= 5
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    assert sum("README.rst" in example.id for example in PYTHON_EXAMPLES) >= 4
    # CI runs this very command: it must stay in the README, unchanged.
    command = (
        "python3 -m venv .venv && .venv/bin/python -m pip install -e '.[test]' && "
        ".venv/bin/python tools/run_tests.py"
    )
    assert command in readme


@pytest.mark.parametrize("code", PYTHON_EXAMPLES)
def test_examples_count_sweeps_by_nbin(code: str) -> None:
    # NCP pads a u8 PDAT to 4 bytes: an example that measures or searches PDAT without NBIN
    # reports padding zeros as bins at the reference level.
    if re.search(r"""\[["']PDAT["']\]""", code):
        assert "NBIN" in code or "data_values" in code, "read NBIN values of PDAT, the rest is padding"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_examples_say_where_their_capture_files_come_from(path: Path) -> None:
    # The tests provide sweeps.ncp; a reader has only the page: a file an example reads is
    # saved by a console command shown on the page before it (that the tests run too), or by
    # the example itself.
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for line, code in code_blocks(path, "python"):
        before = "\n".join(lines[:line])
        for name in re.findall(r"""(?:open|CaptureReader|read_fields)\(["']([^"']+\.ncp)["']""", code):
            written = re.search(rf"""open\(["']{re.escape(name)}["'], ["']w""", code)
            saved = re.search(rf"^\s*\$ ncplib stream .*--save {re.escape(name)}\b", before, re.MULTILINE)
            assert written or saved, (line, name)


def test_docstring_examples_count_sweeps_by_nbin() -> None:
    # As test_examples_count_sweeps_by_nbin, for the examples in the library's docstrings.
    unsafe = []
    for path in sorted((ROOT / "ncplib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                for line in (ast.get_docstring(node) or "").splitlines():
                    if re.search(r"""\[["']PDAT["']\]""", line) and not re.search("NBIN|data_values", line):
                        unsafe.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not unsafe


@pytest.mark.parametrize("code", CLIENT_EXAMPLES)
def test_client_example(code: str, node_port: int, workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", with_port(code, node_port) if "9999" in code else code],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip(), "every example prints something"
    # Nothing in the node's scene reaches its reference level (-20 dBm): a power of -20.0 dBm
    # is a padding value taken for a bin.
    assert "-20.0 dBm" not in result.stdout


async def _ask(port: int) -> object:
    deadline = time.monotonic() + 15
    while True:
        try:
            connection = await ncplib.connect("127.0.0.1", port, timeout=10)
            break
        except ncplib.NetworkError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    async with connection:
        try:
            return await asyncio.wait_for(connection.send("NODE", "STAT").recv(), 10)
        except ncplib.CommandError as ex:
            return ex


@pytest.mark.parametrize("code", SERVER_EXAMPLES)
def test_server_example(code: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", with_port(code, port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        answer = asyncio.run(_ask(port))
        assert process.poll() is None, "the server is still serving"
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    # Either a reply or the server's own "Unknown command" error: both prove it answered.
    if isinstance(answer, ncplib.CommandError):
        assert answer.detail == "Unknown command"
    else:
        assert isinstance(answer, ncplib.Field)
        assert answer.packet_type == "NODE"
    assert "Traceback" not in stderr


@pytest.mark.parametrize("command", CONSOLE_COMMANDS)
def test_console_command(command: str, node_port: int, tmp_path: Path) -> None:
    # A directory of its own: "--save FILE" refuses to overwrite a file another command saved.
    args = shlex.split(with_port(command, node_port))
    assert args[0] == "ncplib"
    result = subprocess.run(
        [sys.executable, "-m", "ncplib", *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", [path for path in DOCUMENTS if ">>> " in path.read_text(encoding="utf-8")])
def test_doctests(path: Path) -> None:
    failures, tried = doctest.testfile(
        str(path), module_relative=False, optionflags=doctest.ELLIPSIS, raise_on_error=False, verbose=False
    )
    assert tried > 0
    assert failures == 0
