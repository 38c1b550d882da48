"""The ``ncplib`` command, run as a separate process (``python -m ncplib``) against a simulated node."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncplib import cli
from ncplib.framing import PacketReader

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# How long a command process may take to exit once told to (Ctrl-C, SIGTERM, end of input): a
# guard against a hang, generous because a loaded machine can be slow to start and stop Python.
EXIT_WAIT = 60
# Ctrl-C cannot be sent to a child process's console like this on Windows.
posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def interrupt(process: subprocess.Popen[str]) -> None:
    """Ctrl-C where that can be sent to a child process; otherwise terminate it."""
    if sys.platform == "win32":
        process.terminate()
    else:
        process.send_signal(signal.SIGINT)


def ncplib_command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncplib", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def start_node_process(*args: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "node", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        pytest.fail(f"node did not start: {line!r} {process.communicate(timeout=EXIT_WAIT)}")
    return process, int(line.split(" (")[0].rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    process, port = start_node_process("--rate", "50")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        interrupt(process)
        try:
            _, stderr = process.communicate(timeout=EXIT_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        # Ctrl-C is how the node is stopped: a clean exit, no traceback.
        if sys.platform != "win32":
            assert process.returncode == 0, stderr
        assert "Traceback" not in stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [[], ["node"], ["send"], ["stream"], ["demo"]])
def test_help(command: list[str]) -> None:
    result = ncplib_command(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ncplib")
    assert "--help" in result.stdout


def test_no_command_prints_the_help_with_a_usage_status() -> None:
    result = ncplib_command()
    assert result.returncode == cli.EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("usage: ncplib")
    for command in ("node", "send", "stream", "demo"):
        assert f"    {command} " in result.stdout


def test_verbose_option_after_the_command(node: str) -> None:
    result = ncplib_command("send", node, "NODE", "STAT", "-v")
    assert result.returncode == 0, result.stderr
    assert "INFO: ncplib.client: Connected" in result.stderr
    assert ncplib_command("-v", "send", node, "NODE", "STAT", "-v").returncode == 0


@pytest.mark.parametrize("timeout", ["0.5", "1", "4.9"])
def test_a_short_timeout_provokes_no_warning(node: str, timeout: str) -> None:
    result = ncplib_command("send", node, "NODE", "STAT", "--timeout", timeout)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_send_shows_the_bins_not_the_padding(node: str) -> None:
    # 20 MHz in 30 kHz bins: 667 bins, sent as 668 u8 values (NCP pads to 4 bytes).
    args = ("send", node, "DSPC", "SWEP", "FSTA=88", "FSTP=108", "RESB=30000")
    lines = ncplib_command(*args).stdout.splitlines()
    pdat = next(line for line in lines if line.strip().startswith("PDAT"))
    assert "667 values, min " in pdat
    assert pdat.endswith("(+1 padding)")
    # The padding zero would be the minimum (a "signal" at RLEV): it is not among the values.
    assert "min 0," not in pdat
    reply = json.loads(ncplib_command(*args, "--json").stdout)
    assert reply["params"]["NBIN"]["value"] == 667
    assert len(reply["params"]["PDAT"]["value"]) == 667
    assert reply["params"]["PDAT"]["padding"] == 1
    assert 0 not in reply["params"]["PDAT"]["value"]


def test_stream_shows_the_bins_not_the_padding(node: str) -> None:
    result = ncplib_command(
        "stream", node, "DSPL", "SWEP", "FSTA=88", "FSTP=108", "RESB=30000", "--count", "2"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("PDAT data u8[667] " in line and "NBIN=667" in line for line in lines)
    assert not any(".. 0," in line or "[667] 0.." in line for line in lines)


def test_node_warnings_show_on_one_line_and_the_reply_still_prints(node: str) -> None:
    # The published sweep example: params the node does not simulate, and more bins than it gives.
    result = ncplib_command(
        "send", node, "DSPC", "SWEP", "FSTA=10000", "FSTP=18000", "INPT=1", "BDEX=1", "BINP=2"
    )
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("ncplib: warning: DSPC SWEP ")
    assert "INPT, BDEX, BINP not used by this node" in warning
    assert "more than 65536" in warning
    assert "PDAT  data u8    65536 values" in result.stdout


def test_stream_of_a_one_shot_command_stops_after_its_reply(node: str) -> None:
    # Waiting for more would take the whole --timeout, then fail.
    result = ncplib_command("stream", node, "DSPC", "SWEP", "--timeout", "60", timeout=30)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "DSPC is answered once: only DSPL commands stream" in result.stderr
    assert result.stderr.startswith("1 field, ")


def test_stream_save_refuses_to_overwrite_without_force(node: str, tmp_path: Path) -> None:
    saved = tmp_path / "sweeps.ncp"
    saved.write_bytes(b"an earlier capture")
    args = ("stream", node, "DSPL", "SWEP", "--count", "1", "-q", "--save", str(saved))
    assert_one_line_error(ncplib_command(*args), cli.EXIT_USAGE, str(saved), "exists", "--force")
    assert saved.read_bytes() == b"an earlier capture"
    result = ncplib_command(*args, "--force")
    assert result.returncode == 0, result.stderr
    assert saved.read_bytes()[:4] == b"\xdd\xcc\xbb\xaa"


def test_send_prints_the_reply(node: str) -> None:
    result = ncplib_command("send", node, "DSPC", "SWEP", "FSTA=400", "FSTP=500", "RESB=100000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DSPC SWEP  field id ")
    pdat = next(line for line in lines if line.strip().startswith("PDAT"))
    assert "data u8" in pdat
    assert "1000 values, min " in pdat
    assert any(line.split()[:3] == ["FSTA", "i32", "400"] for line in lines)


def test_send_json(node: str) -> None:
    result = ncplib_command("send", node, "DSPC", "TIME", "SAMP=u32:64", "FCTR=f64:446.5", "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert (reply["packet_type"], reply["field"]) == ("DSPC", "TIME")
    params = reply["params"]
    assert params["DIQT"]["type"] == "data i16"
    assert len(params["DIQT"]["value"]) == 128
    assert all(isinstance(value, int) for value in params["DIQT"]["value"])
    assert params["SAMP"] == {"type": "i32", "value": 64}
    # The node echoes FCTR as it came: an f64.
    assert params["FCTR"] == {"type": "f64", "value": 446.5}


def test_send_node_error_exits_1(node: str) -> None:
    result = ncplib_command("send", node, "DSPC", "XXXX")
    assert_one_line_error(result, cli.EXIT_COMMAND_ERROR, "Unknown command", "400")
    assert result.stdout == ""


def test_send_bad_request_exits_1(node: str) -> None:
    result = ncplib_command("send", node, "DSPC", "SWEP", "FSTA=500", "FSTP=400")
    assert_one_line_error(result, cli.EXIT_COMMAND_ERROR, "Bad request", "FSTP must be greater than FSTA")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["DSPC", "SWEP", "FSTA=u32:-1"], "out of range"),
        (["DSPC", "SWEP", "fsta=1"], "invalid param name"),
        (
            ["dspc", "SWEP"],
            "invalid packet type 'dspc': use 1 to 4 uppercase letters or digits (did you mean DSPC?)",
        ),
        (["DSPC", "swep"], "(did you mean SWEP?)"),
        (["DSPC", "SWEP", "fsta=1"], "(did you mean FSTA?)"),
        (["DSPC", "SWEP", "--timeout", "0"], "--timeout"),
    ],
)
def test_send_bad_arguments_exit_2(node: str, args: list[str], needle: str) -> None:
    result = ncplib_command("send", node, *args)
    assert result.returncode == cli.EXIT_USAGE
    assert "Traceback" not in result.stderr
    assert needle in result.stderr


def test_send_bad_address_exits_2() -> None:
    result = ncplib_command("send", "node:99999", "DSPC", "SWEP")
    assert_one_line_error(result, cli.EXIT_USAGE, "invalid port")


def test_send_connection_refused_exits_3() -> None:
    port = closed_port()
    result = ncplib_command("send", f"127.0.0.1:{port}", "DSPC", "SWEP")
    assert_one_line_error(result, cli.EXIT_NETWORK, f"cannot connect to 127.0.0.1:{port}", "refused")


def test_send_timeout_exits_3() -> None:
    # A listening socket that never answers the handshake.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = ncplib_command("send", f"127.0.0.1:{port}", "DSPC", "SWEP", "--timeout", "0.5")
    assert_one_line_error(result, cli.EXIT_NETWORK, "timed out")


def test_stream_saves_packets_that_decode_back(node: str, tmp_path: Path) -> None:
    saved = tmp_path / "sweeps.ncp"
    result = ncplib_command(
        "stream", node, "DSPL", "SWEP", "FSTA=100", "FSTP=101", "RESB=10000", "--count", "3", "--json",
        "--save", str(saved),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(printed) == 3
    reader = PacketReader()
    reader.feed(saved.read_bytes())
    packets = reader.read_packets()
    assert len(packets) == 3
    for packet, shown in zip(packets, printed, strict=True):
        packet_type, packet_id, timestamp, _, fields = packet
        ((name, field_id, params),) = fields
        assert (packet_type, packet_id, name, field_id) == (
            shown["packet_type"],
            shown["packet_id"],
            shown["field"],
            shown["field_id"],
        )
        assert timestamp.isoformat() == shown["timestamp"]
        decoded = dict(params)
        assert list(decoded) == list(shown["params"])
        assert list(decoded["PDAT"]) == shown["params"]["PDAT"]["value"]
        assert decoded["NBIN"] == shown["params"]["NBIN"]["value"] == 100
    # The summary goes to stderr.
    assert "3 fields" in result.stderr
    assert "MB/s" in result.stderr


def test_stream_duration_prints_one_line_per_reply(node: str) -> None:
    result = ncplib_command("stream", node, "DSPL", "TIME", "SAMP=16", "--duration", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines
    assert all(" DSPL TIME id " in line and "DIQT data i16[32]" in line for line in lines)
    assert lines[0].startswith("#1 ")
    assert f"{len(lines)} fields" in result.stderr


def test_stream_node_error_exits_1(node: str) -> None:
    result = ncplib_command("stream", node, "DSPL", "SWEP", "RESB=-5", "--count", "2")
    assert_one_line_error(result, cli.EXIT_COMMAND_ERROR, "Bad request", "RESB")


def test_stream_save_to_unwritable_file_exits_2(node: str, tmp_path: Path) -> None:
    result = ncplib_command("stream", node, "DSPL", "SWEP", "--save", str(tmp_path / "missing" / "x.ncp"))
    assert_one_line_error(result, cli.EXIT_USAGE, "cannot write")


@pytest.mark.parametrize("timeout", ["0", "-3", "1.5"])
def test_node_timeout_must_be_a_whole_number_of_seconds(timeout: str) -> None:
    result = ncplib_command("node", "--port", "0", "--timeout", timeout)
    assert result.returncode == cli.EXIT_USAGE
    assert "argument --timeout: must be a whole number of at least 1" in result.stderr


def test_node_port_in_use_exits_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = ncplib_command("node", "--port", str(port))
    assert_one_line_error(result, cli.EXIT_NETWORK, f"cannot listen on 127.0.0.1:{port}")


@posix_signals
def test_node_stops_cleanly_on_sigterm() -> None:
    process, _ = start_node_process()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=EXIT_WAIT)
    assert process.returncode == 0
    assert "Traceback" not in stderr


@posix_signals
def test_stream_ctrl_c_exits_130_with_a_summary(node: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "stream", node, "DSPL", "SWEP", "FSTP=401"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        assert first.startswith("#1 DSPL SWEP")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=EXIT_WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in stderr
    assert "fields/s" in stderr


@posix_signals
def test_stream_stops_quietly_when_its_reader_goes_away(node: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "stream", node, "DSPL", "SWEP", "FSTP=401", "--no-status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        assert process.stdout.readline().startswith("#1 ")
        process.stdout.close()  # As "| head -1" does.
        stderr = process.stderr.read()
        process.wait(timeout=EXIT_WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "error" not in stderr


def test_console_script() -> None:
    script = Path(sys.executable).with_name("ncplib")
    if not script.exists():
        pytest.skip("ncplib is not installed as a console script in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30, env=ENV)
    assert result.returncode == 0
    assert result.stdout.startswith("ncplib ")
