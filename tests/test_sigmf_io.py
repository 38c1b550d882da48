"""SigMF recordings of I/Q captures, read back with the sigmf package; NPZ and CSV of sweeps."""

from __future__ import annotations

import array
import csv
import errno
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sigmf = pytest.importorskip("sigmf")

from ncplib import _signal, convert, units  # noqa: E402
from ncplib.capture import CapturedField  # noqa: E402
from ncplib.sigmf_io import SigMFWriter, sigmf_paths  # noqa: E402

START = datetime(2026, 5, 4, 3, 2, 1, 250000, tzinfo=timezone.utc)
HELO = {"NCPV": "RFeye 4.2", "SEID": "node-12", "MACA": "00:0b:aa:12:34:56"}


def time_field(k: int, samples: int = 500, deci: int = 8, fctr: float = 446.0, **extra: Any) -> CapturedField:
    diqt = _signal.Scene(use_numpy=True, seed=k).iq(fctr, samples, deci, float(k))
    params = [("DIQT", diqt), ("FCTR", fctr), ("SAMP", samples), ("DECI", deci), *extra.items()]
    return CapturedField("DSPL", 1, START + timedelta(seconds=k), "TIME", 3, params, 0)


def sweep_field(k: int, bins: int = 301, fsta: float = 400, fstp: float = 500) -> CapturedField:
    pdat = _signal.Scene(use_numpy=True, seed=k).sweep(fsta, fstp, bins, -20.0, float(k))
    padded = array.array("B", pdat.tobytes() + bytes(-bins % 4))  # As the wire pads it.
    params = [("PDAT", padded), ("FSTA", fsta), ("FSTP", fstp), ("RLEV", -20), ("NBIN", bins)]
    return CapturedField("DSPL", 1, START + timedelta(milliseconds=100 * k), "SWEP", 3, params, 0)


def test_every_sample_and_segment_reads_back_with_sigmf(tmp_path: Path) -> None:
    fields = [time_field(0), time_field(1, fctr=450.0, FCTM=500), time_field(2, samples=123)]
    with SigMFWriter(tmp_path / "iq", 62.5e6 / 8, helo=HELO, description="test") as writer:
        for field in fields:
            writer.add(field)
    recording = sigmf.sigmffile.fromfile(str(tmp_path / "iq"))  # Checks the sha512 too.
    samples = recording.read_samples()
    expected = np.concatenate([units.iq_samples(field) for field in fields])
    assert samples.shape == (1123,)
    np.testing.assert_array_equal(samples.astype(np.complex64), expected)
    raw = np.fromfile(tmp_path / "iq.sigmf-data", dtype="<i2")
    np.testing.assert_array_equal(raw, np.concatenate([field["DIQT"] for field in fields]))
    captures = recording.get_captures()
    assert [c["core:sample_start"] for c in captures] == [0, 500, 1000]
    assert [c["core:frequency"] for c in captures] == [446e6, 450e6 + 0.5, 446e6]
    assert [c["core:datetime"] for c in captures] == [
        "2026-05-04T03:02:01.250000Z",
        "2026-05-04T03:02:02.250000Z",
        "2026-05-04T03:02:03.250000Z",
    ]
    info = recording.get_global_info()
    assert info["core:datatype"] == "ci16_le"
    assert info["core:sample_rate"] == 62.5e6 / 8
    assert info["core:hw"] == "node-12 (firmware RFeye 4.2, MAC 00:0b:aa:12:34:56)"
    assert info["ncplib:helo"] == HELO
    assert info["core:description"] == "test"
    np.testing.assert_array_equal(recording.read_samples_in_capture(2), units.iq_samples(fields[2]))


def test_a_capture_at_another_rate_is_refused_and_nothing_is_overwritten(tmp_path: Path) -> None:
    with SigMFWriter(tmp_path / "iq.sigmf-meta", 62.5e6 / 8) as writer:
        assert writer.accepts(time_field(0))
        assert not writer.accepts(time_field(1, deci=16))
        assert not writer.accepts(sweep_field(0))
        with pytest.raises(ValueError, match="sample rate"):
            writer.add(time_field(1, deci=16))
        writer.add(time_field(0))
    assert "core:hw" not in sigmf.sigmffile.fromfile(str(tmp_path / "iq")).get_global_info()
    with pytest.raises(FileExistsError):
        SigMFWriter(tmp_path / "iq", 62.5e6 / 8)
    assert sigmf_paths(tmp_path / "x.sigmf-data") == (tmp_path / "x.sigmf-data", tmp_path / "x.sigmf-meta")


def test_iq_to_sigmf_starts_a_recording_per_sample_rate_and_takes_helo_from_the_capture(
    tmp_path: Path,
) -> None:
    helo = CapturedField("LINK", 1, START, "HELO", 1, list(HELO.items()), 0)
    fields = [
        helo,
        time_field(0),
        sweep_field(0),
        time_field(1),
        time_field(2, deci=4),
        time_field(3, deci=4),
    ]
    written = convert.iq_to_sigmf(fields, tmp_path / "iq")
    assert written == [tmp_path / "iq.sigmf-meta", tmp_path / "iq-2.sigmf-meta"]
    first, second = (sigmf.sigmffile.fromfile(str(path)) for path in written)
    assert len(first.get_captures()) == 2 and len(second.get_captures()) == 2
    assert second.get_global_info()["core:sample_rate"] == 62.5e6 / 4
    assert first.get_global_info()["core:hw"].startswith("node-12")
    np.testing.assert_array_equal(
        second.read_samples(), np.concatenate([units.iq_samples(f) for f in fields[4:]])
    )
    with pytest.raises(convert.NoData):
        convert.iq_to_sigmf([sweep_field(0)], tmp_path / "none")
    assert not (tmp_path / "none.sigmf-data").exists()


def test_sweeps_to_npz_and_csv_hold_frequencies_times_and_levels(tmp_path: Path) -> None:
    fields = [sweep_field(k) for k in range(4)]
    fields.insert(2, time_field(0))  # Passed over.
    sweeps = [f for f in fields if f.name == "SWEP"]
    assert convert.sweeps_to_npz(lambda: iter(fields), tmp_path / "s.npz") == 4
    with np.load(tmp_path / "s.npz") as data:
        assert set(data.files) == {"frequencies", "times", "levels"}
        np.testing.assert_array_equal(data["frequencies"], units.sweep_frequencies(sweeps[0]))
        assert data["levels"].dtype == np.float32 and data["levels"].shape == (4, 301)
        np.testing.assert_array_equal(data["levels"], np.stack([units.sweep_levels(f) for f in sweeps]))
        assert data["times"].dtype == np.dtype("datetime64[us]")
        assert data["times"].tolist() == [f.packet_timestamp.replace(tzinfo=None) for f in sweeps]
    with open(tmp_path / "s.csv", "w", newline="") as out:
        assert convert.sweeps_to_csv(fields, out) == 4
    with open(tmp_path / "s.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert len(rows) == 5 and rows[0][0] == "time"
    np.testing.assert_array_equal(np.array(rows[0][1:], dtype=float), units.sweep_frequencies(sweeps[0]))
    assert rows[1][0] == "2026-05-04T03:02:01.250000Z"
    np.testing.assert_array_equal(np.array(rows[3][1:], dtype=np.float32), units.sweep_levels(sweeps[2]))


def test_sweeps_on_different_axes_are_refused(tmp_path: Path) -> None:
    fields = [sweep_field(0), sweep_field(1, bins=300)]
    with pytest.raises(ValueError, match="differ in frequency range or bins"):
        convert.sweeps_to_npz(lambda: iter(fields), tmp_path / "s.npz")
    with open(tmp_path / "s.csv", "w") as out, pytest.raises(ValueError, match="400-500 MHz in 300 bins"):
        convert.sweeps_to_csv(fields, out)
    with pytest.raises(convert.NoData):
        convert.sweeps_to_npz(lambda: iter([time_field(0)]), tmp_path / "t.npz")


def test_a_full_disk_gives_up_the_last_captures_to_keep_the_recording_valid(tmp_path: Path) -> None:
    from capture_util import small_disk

    with small_disk(tmp_path, size=300 * 1024) as disk:
        if disk.preexec_fn is not None:
            pytest.skip("no tmpfs to fill (mounting one needs root on Linux)")
        writer = SigMFWriter(disk.directory / "iq", 62.5e6 / 8, helo=HELO)
        with pytest.raises(OSError) as caught:
            for k in range(100):  # 100 * 40 kB: more than the disk holds.
                writer.add(time_field(k, samples=10000))
        assert caught.value.errno == errno.ENOSPC
        added = writer.captures
        writer.close()  # Room for the metadata, if need be, from the last captures.
        recording = sigmf.sigmffile.fromfile(str(disk.directory / "iq"))  # Checksum included.
        kept = len(recording.get_captures())
        assert 0 < kept <= added < 100
        assert recording.read_samples().shape == (10000 * kept,)
        expected = np.concatenate([units.iq_samples(time_field(k, samples=10000)) for k in range(kept)])
        np.testing.assert_array_equal(recording.read_samples().astype(np.complex64), expected)
