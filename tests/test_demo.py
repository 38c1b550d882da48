"""``ncplib demo``: an in-process simulated node streamed over TCP, drawn as a waterfall."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from ncplib import cli
from ncplib.cli import _demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    assert (length, chunk_type) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_demo_writes_a_waterfall_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("numpy")
    output = tmp_path / "waterfall.png"
    status = cli.main(["demo", "--duration", "1", "--rate", "20", "--output", str(output)])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    assert "Received " in out
    assert " sweeps of 2000 bins " in out
    assert "MB/s" in out
    assert f"Waterfall written to {output}" in out
    assert png_size(output.read_bytes()) == (1000, 600)


def test_demo_without_matplotlib_prints_an_ascii_spectrum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes "import matplotlib" raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    output = tmp_path / "waterfall.png"
    status = cli.main(["demo", "--duration", "0.5", "--rate", "20", "--output", str(output)])
    lines = capsys.readouterr().out.splitlines()
    assert status == cli.EXIT_OK
    assert not output.exists()
    spectrum = next(line for line in lines if line.startswith("|"))
    assert spectrum.endswith("|")
    assert len(spectrum) == 74
    # Carriers stand out of the noise: the line uses the darkest shade somewhere, and blanks.
    assert "@" in spectrum
    assert " " in spectrum
    assert any("pip install 'ncplib[plot]'" in line for line in lines)


def test_demo_ascii_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = tmp_path / "waterfall.png"
    status = cli.main(["demo", "--duration", "0.3", "--ascii", "--output", str(output)])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    assert not output.exists()
    assert "400 MHz" in out
    assert "pip install" not in out


def test_ascii_spectrum_shades() -> None:
    line = _demo._ascii_spectrum([-100.0] * 50 + [-40.0] + [-100.0] * 49, width=10)
    assert line == "     @    "
    assert _demo._ascii_spectrum([-90.0, -90.0]) == "  "


def test_demo_without_numpy(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ncplib import _signal

    # The node synthesises in pure Python and the client decodes to array.array.
    monkeypatch.setattr(_signal, "np", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status = cli.main(["demo", "--duration", "0.5", "--rate", "20"])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    assert "array mode" in out
    assert any(line.startswith("|") and "@" in line for line in out.splitlines())


@pytest.mark.parametrize(
    ("output", "needles"),
    [
        ("waterfall.txt", ["--output", "waterfall.txt", "cannot write .txt files", ".png"]),
        ("no/such/dir/waterfall.png", ["cannot write", "no/such/dir/waterfall.png", "no directory"]),
        (".", ["--output .", "is a directory"]),
    ],
)
def test_demo_checks_its_output_before_streaming(
    output: str,
    needles: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    status = cli.main(["demo", "--duration", "30", "--output", output])
    captured = capsys.readouterr()
    assert status == cli.EXIT_USAGE
    # Nothing was streamed (30 s of it): the check comes first.
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("ncplib demo: error: ")
    for needle in needles:
        assert needle in line
    assert list(tmp_path.iterdir()) == []


def test_demo_reports_the_file_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("numpy")
    monkeypatch.chdir(tmp_path)
    status = cli.main(["demo", "--duration", "0.3", "--rate", "20", "--output", "waterfall"])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    # matplotlib adds ".png" to a name without an extension: the message names that file.
    assert "Waterfall written to waterfall.png" in out
    assert [path.name for path in tmp_path.iterdir()] == ["waterfall.png"]


@pytest.mark.parametrize("synthesis", ["numpy", "python"])
def test_demo_counts_bins_not_padding(
    synthesis: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ncplib import _signal

    if synthesis == "python":
        monkeypatch.setattr(_signal, "np", None)
    # 20 MHz in 30 kHz bins: 667 bins, which arrive padded to 668 u8 values.
    monkeypatch.setattr(_demo, "DEMO_SWEEP", (88, 108, 30000, -20))
    status = cli.main(["demo", "--duration", "0.3", "--rate", "20", "--ascii"])
    out = capsys.readouterr().out
    assert status == cli.EXIT_OK
    assert " of 667 bins in " in out
    # The padding zero would read as a signal at RLEV (-20 dBm); the strongest FM station is -38.
    last = next(line for line in out.splitlines() if line.startswith("Last sweep: "))
    strongest = float(last.split(" to ")[1].split()[0])
    assert strongest < -30
