"""``ncplib read``, ``ncplib convert`` and ``ncplib node --replay``, run as separate processes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from capture_util import small_disk
from test_cli import ENV, EXIT_WAIT, assert_one_line_error, interrupt, ncplib_command, start_node_process

from ncplib import cli, units
from ncplib.capture import CaptureReader, read_fields

sigmf = pytest.importorskip("sigmf")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Sweeps (1001 bins: padded on the wire) and I/Q captures saved from a simulated node."""
    directory = tmp_path_factory.mktemp("captures")
    process, port = start_node_process("--rate", "50")
    try:
        node = f"127.0.0.1:{port}"
        paths = {"swep": directory / "swep.ncp", "time": directory / "time.ncp"}
        for command, path in (
            (["DSPL", "SWEP", "FSTA=400", "FSTP=500", "RESB=99900"], paths["swep"]),
            (["DSPL", "TIME", "SAMP=3000", "FCTR=433.9"], paths["time"]),
        ):
            result = ncplib_command("stream", node, *command, "--count", "6", "-q", "--save", str(path))
            assert result.returncode == 0, result.stderr
        yield paths
    finally:
        interrupt(process)
        process.communicate(timeout=EXIT_WAIT)


def test_read_prints_every_field_with_its_offset(captures: dict[str, Path]) -> None:
    result = ncplib_command("read", str(captures["swep"]))
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n\n")
    fields = list(read_fields(captures["swep"]))
    assert len(blocks) == len(fields) == 6
    for block, field in zip(blocks, fields, strict=True):
        assert block.startswith(f"@{field.offset} DSPL SWEP  field id {field.id}")
        assert "PDAT  data u8    " in block
        assert "NBIN  i32        1001" in block


def test_read_json_holds_every_value(captures: dict[str, Path]) -> None:
    result = ncplib_command("read", str(captures["time"]), "--json")
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    fields = list(read_fields(captures["time"]))
    assert len(printed) == len(fields) == 6
    for shown, field in zip(printed, fields, strict=True):
        assert shown["timestamp"] == field.packet_timestamp.isoformat()
        assert shown["offset"] == field.offset
        assert shown["params"]["DIQT"]["value"] == list(field["DIQT"])
        assert shown["params"]["SAMP"]["value"] == 3000


def damage(source: Path, target: Path, packet: int) -> int:
    """Copies ``source`` with the magic number of packet ``packet`` spoilt; returns its offset."""
    with CaptureReader(source) as reader:
        offset = [p.offset for p in reader][packet]
    data = bytearray(source.read_bytes())
    data[offset : offset + 4] = b"JUNK"
    target.write_bytes(bytes(data))
    return offset


def test_read_a_damaged_capture_names_the_offset_or_skips_it(
    captures: dict[str, Path], tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.ncp"
    offset = damage(captures["swep"], damaged, 2)
    result = ncplib_command("read", str(damaged), "--json")
    assert_one_line_error(
        result, cli.EXIT_NETWORK, f"damaged packet at byte offset {offset}", "--skip-damaged"
    )
    assert len(result.stdout.splitlines()) == 2  # The fields before it were printed.
    result = ncplib_command("read", str(damaged), "--json", "--skip-damaged")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 5
    assert f"at offset {offset}" in result.stderr
    assert "Traceback" not in result.stderr


def test_read_a_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ncp"
    assert_one_line_error(ncplib_command("read", str(missing)), cli.EXIT_USAGE, str(missing), "No such file")


def test_convert_sweeps_to_npz_and_csv(captures: dict[str, Path], tmp_path: Path) -> None:
    sweeps = list(read_fields(captures["swep"]))
    result = ncplib_command(
        "convert", str(captures["swep"]), "--to", "npz", "--output", str(tmp_path / "s.npz")
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 6 sweeps" in result.stdout
    with np.load(tmp_path / "s.npz") as data:
        assert data["levels"].shape == (6, 1001)
        np.testing.assert_array_equal(data["frequencies"], units.sweep_frequencies(sweeps[0]))
        np.testing.assert_array_equal(data["levels"][5], units.sweep_levels(sweeps[5]))
        assert data["times"].tolist() == [s.packet_timestamp.replace(tzinfo=None) for s in sweeps]
    result = ncplib_command(
        "convert", str(captures["swep"]), "--to", "csv", "--output", str(tmp_path / "s.csv")
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "s.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert len(rows) == 7 and len(rows[0]) == 1002
    np.testing.assert_array_equal(np.array(rows[6][1:], dtype=np.float32), units.sweep_levels(sweeps[5]))


def test_convert_iq_to_sigmf_reads_back_every_sample(captures: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "iq"
    result = ncplib_command("convert", str(captures["time"]), "--to", "sigmf", "--output", str(output))
    assert result.returncode == 0, result.stderr
    fields = list(read_fields(captures["time"], use_numpy=True))
    recording = sigmf.sigmffile.fromfile(str(output))
    np.testing.assert_array_equal(
        recording.read_samples().astype(np.complex64), np.concatenate([units.iq_samples(f) for f in fields])
    )
    captures_ = recording.get_captures()
    assert len(captures_) == 6
    assert all(c["core:frequency"] == pytest.approx(433.9e6) for c in captures_)
    assert recording.get_global_info()["core:sample_rate"] == 62.5e6 / 8


@pytest.mark.parametrize(("to", "kind"), [("sigmf", "SWEP"), ("npz", "TIME"), ("csv", "TIME")])
def test_convert_the_wrong_kind_of_capture_exits_2(
    captures: dict[str, Path], tmp_path: Path, to: str, kind: str
) -> None:
    source = captures["swep" if kind == "SWEP" else "time"]
    result = ncplib_command("convert", str(source), "--to", to, "--output", str(tmp_path / "out"))
    assert_one_line_error(result, cli.EXIT_USAGE, "no ")
    assert list(tmp_path.iterdir()) == []


def test_convert_never_overwrites(captures: dict[str, Path], tmp_path: Path) -> None:
    existing = tmp_path / "s.csv"
    existing.write_text("keep me")
    result = ncplib_command("convert", str(captures["swep"]), "--to", "csv", "--output", str(existing))
    assert_one_line_error(result, cli.EXIT_USAGE, str(existing), "exists")
    assert existing.read_text() == "keep me"


def test_convert_to_a_full_disk_exits_2_and_leaves_no_partial_file(
    captures: dict[str, Path], tmp_path: Path
) -> None:
    big = tmp_path / "big.ncp"
    with open(big, "wb") as out:
        for _ in range(60):  # 360 sweeps: about 3 MB of CSV, more than the disk holds.
            out.write(captures["swep"].read_bytes())
    with small_disk(tmp_path) as disk:
        output = disk.directory / "s.csv"
        result = subprocess.run(
            [sys.executable, "-m", "ncplib", "convert", str(big), "--to", "csv", "--output", str(output)],
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
            preexec_fn=disk.preexec_fn,
        )
        assert_one_line_error(result, cli.EXIT_USAGE, f"cannot write {output}", disk.reason)
        assert not output.exists()


def test_replay_serves_the_recorded_fields(captures: dict[str, Path]) -> None:
    process, port = start_node_process("--replay", str(captures["swep"]), "--speed", "4")
    try:
        node = f"127.0.0.1:{port}"
        result = ncplib_command("stream", node, "DSPL", "SWEP", "--json", "--duration", "5")
        assert result.returncode == 0, result.stderr
        replayed = [json.loads(line) for line in result.stdout.splitlines()]
        recorded = [
            json.loads(line)
            for line in ncplib_command("read", str(captures["swep"]), "--json").stdout.splitlines()
        ]
        # Every recorded sweep once, in order, and no more (no --loop).
        assert [r["params"] for r in replayed] == [r["params"] for r in recorded]
        # A one-off command gets the next recorded sweep each time.
        first = json.loads(ncplib_command("send", node, "DSPC", "SWEP", "--json").stdout)
        assert first["params"] == recorded[0]["params"]
        result = ncplib_command("send", node, "DSPL", "TIME")
        assert_one_line_error(result, cli.EXIT_COMMAND_ERROR, "Unknown command")
    finally:
        interrupt(process)
        _, stderr = process.communicate(timeout=EXIT_WAIT)
    assert "Traceback" not in stderr


def test_replay_loops(captures: dict[str, Path]) -> None:
    process, port = start_node_process("--replay", str(captures["time"]), "--speed", "20", "--loop")
    try:
        result = ncplib_command("stream", f"127.0.0.1:{port}", "DSPL", "TIME", "--json", "--count", "14")
        assert result.returncode == 0, result.stderr
        replayed = [json.loads(line)["params"]["DIQT"]["value"] for line in result.stdout.splitlines()]
        assert len(replayed) == 14
        recorded = [list(f["DIQT"]) for f in read_fields(captures["time"])]
        assert replayed == recorded + recorded + recorded[:2]
    finally:
        interrupt(process)
        process.communicate(timeout=EXIT_WAIT)


def test_replay_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = ncplib_command("node", "--port", "0", "--replay", str(tmp_path / "missing.ncp"))
    assert_one_line_error(result, cli.EXIT_USAGE, "missing.ncp", "No such file")


@pytest.mark.parametrize("option", [("--speed", "2"), ("--loop",)])
def test_replay_options_without_replay_exit_2(option: tuple[str, ...]) -> None:
    result = ncplib_command("node", "--port", "0", *option)
    assert_one_line_error(result, cli.EXIT_USAGE, "--speed and --loop need --replay")
