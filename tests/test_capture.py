"""Capture files: reading packets back one at a time, with offsets, damage named and skippable."""

from __future__ import annotations

import array
import io
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ncplib.capture import CaptureError, CaptureReader, field_packet, read_fields
from ncplib.errors import DecodeError
from ncplib.packets import encode_packet

START = datetime(2026, 5, 4, 3, 2, 1, 500000, tzinfo=timezone.utc)


def sweep_packet(k: int, bins: int = 100) -> bytes:
    params = [("PDAT", array.array("B", [k % 256] * bins)), ("NBIN", bins), ("FSTA", 400), ("FSTP", 500)]
    return encode_packet(
        "DSPL", k, START + timedelta(milliseconds=40 * k), b"\x01\x02\x03\x04", [("SWEP", 7, params)]
    )


def write_capture(path: Path, count: int = 3, bins: int = 100) -> list[int]:
    """Writes ``count`` sweep packets; returns the offset of each."""
    offsets = []
    with open(path, "wb") as out:
        for k in range(count):
            offsets.append(out.tell())
            out.write(sweep_packet(k, bins))
    return offsets


def test_packets_and_fields_come_back_with_offsets_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "sweeps.ncp"
    offsets = write_capture(path, 3)
    with CaptureReader(path) as reader:
        packets = list(reader)
        assert reader.offset == path.stat().st_size
    assert [packet.offset for packet in packets] == offsets
    assert [packet.packet_id for packet in packets] == [0, 1, 2]
    assert [packet.timestamp for packet in packets] == [
        START + timedelta(milliseconds=40 * k) for k in range(3)
    ]
    assert all(packet.info == b"\x01\x02\x03\x04" for packet in packets)
    fields = list(read_fields(path))
    assert [field.offset for field in fields] == offsets
    assert [field["PDAT"][0] for field in fields] == [0, 1, 2]
    assert fields[1].packet_type == "DSPL" and fields[1].name == "SWEP" and fields[1].id == 7
    assert fields[1].packet_timestamp == START + timedelta(milliseconds=40)


def test_field_packet_writes_what_the_reader_reads(tmp_path: Path) -> None:
    path = tmp_path / "sweeps.ncp"
    write_capture(path, 2)
    fields = list(read_fields(path))
    copy = tmp_path / "copy.ncp"
    with open(copy, "wb") as out:
        for field in fields:
            out.writelines(field_packet(field))
    again = list(read_fields(copy))
    assert again == fields
    assert [(f.packet_type, f.packet_id, f.packet_timestamp, f.name, f.id) for f in again] == [
        (f.packet_type, f.packet_id, f.packet_timestamp, f.name, f.id) for f in fields
    ]


def test_reads_from_a_file_object_with_numpy_arrays() -> None:
    np = pytest.importorskip("numpy")
    data = sweep_packet(5) + sweep_packet(6)
    fields = list(CaptureReader(io.BytesIO(data), use_numpy=True).fields())
    assert isinstance(fields[0]["PDAT"], np.ndarray)
    assert fields[1]["PDAT"].tolist() == [6] * 100


def corrupt(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as out:
        out.seek(offset)
        out.write(data)


def test_a_bad_header_is_named_by_its_offset_and_can_be_skipped(tmp_path: Path) -> None:
    path = tmp_path / "damaged.ncp"
    offsets = write_capture(path, 4)
    corrupt(path, offsets[1], b"XXXX")
    with CaptureReader(path) as reader:
        assert reader.read_packet() is not None
        with pytest.raises(CaptureError) as caught:
            reader.read_packet()
    assert isinstance(caught.value, DecodeError)
    assert caught.value.offset == offsets[1]
    assert f"damaged packet at byte offset {offsets[1]}" in str(caught.value)
    assert "magic" in caught.value.reason
    with CaptureReader(path, skip_damaged=True) as reader:
        ids = [packet.packet_id for packet in reader]
        assert ids == [0, 2, 3]
        assert [(d.offset, d.length) for d in reader.damaged] == [(offsets[1], offsets[2] - offsets[1])]


def test_undecodable_content_in_a_well_framed_packet_skips_just_that_packet(tmp_path: Path) -> None:
    path = tmp_path / "damaged.ncp"
    offsets = write_capture(path, 3)
    # The first field's size (a 24-bit word count after the field name) made too large.
    corrupt(path, offsets[1] + 32 + 4, b"\xff\xff\x00")
    with pytest.raises(CaptureError) as caught:
        list(read_fields(path))
    assert caught.value.offset == offsets[1]
    reader = CaptureReader(path, skip_damaged=True)
    with reader:
        assert [packet.packet_id for packet in reader] == [0, 2]
    assert reader.damaged[0].offset == offsets[1]
    assert reader.damaged[0].length == offsets[2] - offsets[1]


@pytest.mark.parametrize("cut", [10, 32 + 20])
def test_a_file_cut_short_names_the_last_packet(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.ncp"
    offsets = write_capture(path, 2)
    with open(path, "r+b") as out:
        out.truncate(offsets[1] + cut)
    with pytest.raises(CaptureError, match=f"byte offset {offsets[1]}: the file ends"):
        list(read_fields(path))
    with CaptureReader(path, skip_damaged=True) as reader:
        assert [packet.packet_id for packet in reader] == [0]
        assert reader.damaged[0].offset == offsets[1]


def test_a_header_announcing_too_large_a_packet_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "huge.ncp"
    write_capture(path, 1)
    corrupt(path, 8, (0x4000_0000).to_bytes(4, "little"))
    with (
        CaptureReader(path, max_packet_size=1 << 20) as reader,
        pytest.raises(CaptureError, match="more than"),
    ):
        list(reader)


def test_garbage_between_packets_is_skipped_to_the_next_header(tmp_path: Path) -> None:
    path = tmp_path / "garbage.ncp"
    # Garbage holding a false magic number (followed by an impossible size) before a real packet.
    garbage = b"junk" * 100 + b"\xdd\xcc\xbb\xaa" + b"SWEP" + b"\x01\x00\x00\x00" + b"junk" * 5
    path.write_bytes(sweep_packet(0) + garbage + sweep_packet(1))
    with CaptureReader(path, skip_damaged=True) as reader:
        assert [packet.packet_id for packet in reader] == [0, 1]
        assert reader.damaged[0].length == len(garbage)


def test_memory_stays_constant_however_large_the_file(tmp_path: Path) -> None:
    path = tmp_path / "large.ncp"
    packet = sweep_packet(1, bins=16000)
    with open(path, "wb") as out:
        for _ in range(1500):  # 24 MB
            out.write(packet)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_fields(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1500
    assert peak < 1_000_000  # A few packets' worth, not the file.


def test_bad_arguments() -> None:
    with pytest.raises(FileNotFoundError):
        CaptureReader("/nonexistent/capture.ncp")
    with pytest.raises(ValueError, match="max_packet_size"):
        CaptureReader(io.BytesIO(b""), max_packet_size=8)
