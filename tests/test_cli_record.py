"""``ncplib record``, run as a separate process against simulated nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from capture_util import small_disk
from test_cli import (
    ENV,
    EXIT_WAIT,
    assert_one_line_error,
    closed_port,
    interrupt,
    ncplib_command,
    posix_signals,
    start_node_process,
)

from ncplib import cli, units
from ncplib.capture import read_fields

sigmf = pytest.importorskip("sigmf")


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[str]]:
    """Two simulated nodes."""
    started = [start_node_process("--rate", "40") for _ in range(2)]
    try:
        yield [f"127.0.0.1:{port}" for _, port in started]
    finally:
        for process, _ in started:
            interrupt(process)
        for process, _ in started:
            process.communicate(timeout=EXIT_WAIT)


def record(*args: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return ncplib_command("record", *args, timeout=timeout, **kwargs)  # type: ignore[arg-type]


def files(directory: Path, suffix: str) -> dict[str, list[Path]]:
    """The files in ``directory`` by node label."""
    found: dict[str, list[Path]] = {}
    for path in sorted(directory.glob("*" + suffix)):
        found.setdefault(path.name.rsplit("_", 1)[0], []).append(path)
    return found


def test_records_each_node_to_rotated_files_and_logs_refused_nodes(nodes: list[str], tmp_path: Path) -> None:
    refused = f"127.0.0.1:{closed_port()}"
    result = record(
        *nodes, refused, "--command", "DSPL SWEP FSTA=400 FSTP=500", "--output", str(tmp_path / "out"),
        "--duration", "2.5", "--rotate-s", "1", "--reconnect-max", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    recorded = files(tmp_path / "out", ".ncp")
    assert sorted(recorded) == sorted(address.replace(":", "_") for address in nodes)
    for paths in recorded.values():
        assert len(paths) >= 2  # Rotated after 1 s.
        fields = [field for path in paths for field in read_fields(path)]  # Strict: no damage.
        assert len(fields) >= 10
        assert all(
            field.packet_type == "DSPL" and field.name == "SWEP" and "PDAT" in field for field in fields
        )
        stamps = [field.packet_timestamp for field in fields]
        assert stamps == sorted(stamps)
    for address in nodes:
        assert f"ncplib record: {address}: connected\n" in result.stderr
    assert f"ncplib record: {refused}: not connected (Connection refused)" in result.stderr


def test_record_convert_and_read_back_with_sigmf(nodes: list[str], tmp_path: Path) -> None:
    result = record(
        nodes[0], "--command", "DSPL TIME SAMP=1000 FCTR=446", "--output", str(tmp_path), "--duration", "1"
    )
    assert result.returncode == 0, result.stderr
    (capture,) = tmp_path.glob("*.ncp")
    fields = list(read_fields(capture, use_numpy=True))
    assert fields
    result = ncplib_command("convert", str(capture), "--to", "sigmf", "--output", str(tmp_path / "iq"))
    assert result.returncode == 0, result.stderr
    recording = sigmf.sigmffile.fromfile(str(tmp_path / "iq"))
    np.testing.assert_array_equal(
        recording.read_samples().astype(np.complex64), np.concatenate([units.iq_samples(f) for f in fields])
    )
    assert len(recording.get_captures()) == len(fields)


def test_record_sigmf_directly_and_finish_on_ctrl_c(nodes: list[str], tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "record", nodes[1], "--command", "DSPL TIME SAMP=512",
         "--output", str(tmp_path), "--format", "sigmf"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        for _ in range(300):  # Until samples arrive (at most 30 s).
            data = list(tmp_path.glob("*.sigmf-data"))
            if data and data[0].stat().st_size >= 5 * 512 * 4:
                break
            time.sleep(0.1)
        else:
            pytest.fail("nothing recorded")
        interrupt(process)
        _, stderr = process.communicate(timeout=EXIT_WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if sys.platform != "win32":
        assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    (meta,) = tmp_path.glob("*.sigmf-meta")
    recording = sigmf.sigmffile.fromfile(str(meta))  # Complete, checksum included.
    captures = recording.get_captures()
    assert len(captures) >= 5
    assert recording.read_samples().shape == (512 * len(captures),)
    assert [c["core:sample_start"] for c in captures] == [512 * k for k in range(len(captures))]
    info = recording.get_global_info()
    assert info["core:sample_rate"] == 62.5e6 / 8
    # The node's identity, from the HELO of its handshake (the simulated node's default SEID).
    assert info["ncplib:helo"]["SEID"] == "rfeye-sim"
    assert "rfeye-sim" in info["core:hw"]


@pytest.mark.parametrize(
    ("fmt", "command"),
    [("ncp", "DSPL SWEP FSTA=400 FSTP=500 RESB=10000"), ("sigmf", "DSPL TIME SAMP=10000")],
)
def test_a_full_disk_stops_with_one_error_and_leaves_valid_files(
    tmp_path: Path, fmt: str, command: str
) -> None:
    node, port = start_node_process("--rate", "200")
    try:
        with small_disk(tmp_path) as disk:
            # Rotation closes files before the disk fills up (not with a per-file limit: there,
            # the file that reaches it must be the one failing).
            rotate = [] if disk.preexec_fn else ["--rotate-mb", "0.3"]
            result = subprocess.run(
                [sys.executable, "-m", "ncplib", "record", f"127.0.0.1:{port}", "--command", command,
                 "--format", fmt, "--output", str(disk.directory), "--duration", "60", *rotate],
                capture_output=True, text=True, timeout=90, env=ENV, preexec_fn=disk.preexec_fn,
            )  # fmt: skip
            assert result.returncode == cli.EXIT_USAGE, result.stderr
            assert "Traceback" not in result.stderr
            errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
            assert len(errors) == 1, result.stderr
            recorded = list(disk.directory.glob("*.ncp" if fmt == "ncp" else "*.sigmf-data"))
            prefix = "ncplib record: error: cannot write "
            assert errors[0].startswith(prefix) and errors[0].endswith(f": {disk.reason}")
            assert Path(errors[0][len(prefix) : -len(disk.reason) - 2]) in recorded
            if rotate:
                assert len(recorded) >= 2
            total = 0
            for path in recorded:
                assert os.path.getsize(path) > 0
                if fmt == "ncp":
                    total += len(list(read_fields(path)))  # Strict reading: every file whole.
                else:
                    # Complete, with metadata and a checksum that matches its data.
                    recording = sigmf.sigmffile.fromfile(str(path.with_suffix(".sigmf-meta")))
                    assert recording.read_samples().shape == (10000 * len(recording.get_captures()),)
                    total += len(recording.get_captures())
            assert total >= (50 if fmt == "ncp" else 10)
    finally:
        interrupt(node)
        node.communicate(timeout=EXIT_WAIT)


def test_an_unwritable_directory_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    output = blocker / "out"
    result = record("127.0.0.1:9", "--command", "DSPL SWEP", "--output", str(output), "--duration", "1")
    assert_one_line_error(result, cli.EXIT_USAGE, f"cannot write {output}", "Not a directory")


@posix_signals
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_directory_exits_2(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        result = record("127.0.0.1:9", "--command", "DSPL SWEP", "--output", str(tmp_path), "--duration", "1")
    finally:
        tmp_path.chmod(0o700)
    assert_one_line_error(result, cli.EXIT_USAGE, f"cannot write {tmp_path}", "Permission denied")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--command", "DSPL"], "use 'PACKET FIELD"),
        (["--command", "DSPL SWEP fsta=1"], "invalid param name"),
        (["--command", "DSPL SWEP", "--rotate-mb", "0"], "greater than 0"),
        (["--command", "DSPL SWEP", "--format", "wav"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = record("127.0.0.1:9", *args, "--output", str(tmp_path), "--duration", "1")
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert needle in result.stderr
    assert list(tmp_path.iterdir()) == []


@posix_signals
def test_a_live_table_on_a_terminal(nodes: list[str], tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ncplib", "record", nodes[0], f"127.0.0.1:{closed_port()}",
             "--command", "DSPL SWEP", "--output", str(tmp_path), "--duration", "2.5"],
            stdout=subprocess.DEVNULL, stderr=follower, env=ENV,
        )  # fmt: skip
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # The process ended and closed the terminal.
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=30) == 0
    finally:
        os.close(leader)
    text = output.decode()
    assert "fields/s" in text and "reconnects" in text and "last error" in text
    assert "\x1b[" in text  # Redrawn in place.
    assert f"{nodes[0]}" in text and "yes" in text
    assert "Connection refused" in text  # In the refused node's row...
    assert "ncplib record:" not in text and "WARNING" not in text  # ... and no log lines.


def total_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.ncp"))


def wait_for_growth(directory: Path, above: int) -> None:
    for _ in range(300):  # At most 30 s.
        if total_size(directory) > above:
            return
        time.sleep(0.1)
    pytest.fail(f"the recording did not grow past {above} bytes")


@posix_signals
def test_a_node_that_restarts_is_recorded_again(tmp_path: Path) -> None:
    port = closed_port()
    node, _ = start_node_process("--port", str(port), "--rate", "40")
    recorder = subprocess.Popen(
        [sys.executable, "-m", "ncplib", "record", f"127.0.0.1:{port}", "--command", "DSPL SWEP",
         "--output", str(tmp_path), "--reconnect-max", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        wait_for_growth(tmp_path, 0)
        node.kill()  # No goodbye: the connection just ends.
        node.communicate(timeout=EXIT_WAIT)
        before = total_size(tmp_path)
        node, _ = start_node_process("--port", str(port), "--rate", "40")
        wait_for_growth(tmp_path, before + 20_000)
        interrupt(recorder)
        _, stderr = recorder.communicate(timeout=EXIT_WAIT)
    finally:
        for process in (recorder, node):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert recorder.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"ncplib record: 127.0.0.1:{port}: reconnected (" in stderr
    final = [line for line in stderr.splitlines() if " reconnects" in line][-1]
    assert int(final.split(" reconnects")[0].rsplit(" ", 1)[1]) >= 1
    fields = [field for path in sorted(tmp_path.glob("*.ncp")) for field in read_fields(path)]
    assert all(field.name == "SWEP" and "PDAT" in field for field in fields)


def test_a_rejected_command_records_nothing_and_exits_1(nodes: list[str], tmp_path: Path) -> None:
    result = record(
        nodes[0], "--command", "DSPL SWEP FSTA=400 FSTP=300", "--output", str(tmp_path / "out"),
        "--duration", "1.5",
    )  # fmt: skip
    assert result.returncode == cli.EXIT_COMMAND_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert f"ncplib record: error: nothing recorded: {nodes[0]}: " in result.stderr
    assert not list((tmp_path / "out").iterdir())


def test_only_unreachable_nodes_record_nothing_and_exit_3(tmp_path: Path) -> None:
    refused = f"127.0.0.1:{closed_port()}"
    result = record(
        refused, "--command", "DSPL SWEP", "--output", str(tmp_path / "out"), "--duration", "1",
        "--reconnect-max", "0.5",
    )  # fmt: skip
    assert result.returncode == cli.EXIT_NETWORK, result.stderr
    assert f"ncplib record: error: nothing recorded: {refused}: Connection refused" in result.stderr
