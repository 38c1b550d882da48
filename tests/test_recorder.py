"""Recording: rotated capture files and SigMF recordings, written by a thread behind a bounded queue."""

from __future__ import annotations

import asyncio
import errno
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from netutil import run
from test_capture import sweep_packet
from test_sigmf_io import time_field

from ncplib.capture import CaptureReader, read_fields
from ncplib.recorder import (
    BackgroundWriter,
    CaptureFiles,
    RecordingError,
    SigMFFiles,
    file_label,
    packet_item,
)

sigmf = pytest.importorskip("sigmf")


def packets(count: int) -> list[Any]:
    """Fields of ``count`` sweep packets, as a node would have sent them."""
    out = []
    for k in range(count):
        with CaptureReader(io.BytesIO(sweep_packet(k))) as reader:
            out.extend(reader.fields())
    return out


def test_file_labels_are_safe_names() -> None:
    assert file_label("10.0.0.7:9999") == "10.0.0.7_9999"
    assert file_label("[fe80::1]:9999") == "fe80_1_9999"
    assert file_label("node-12") == "node-12"


def test_capture_files_rotate_by_size_and_never_overwrite(tmp_path: Path) -> None:
    fields = packets(7)
    size = packet_item(fields[0])[1]
    sink = CaptureFiles(tmp_path, "node", max_bytes=3 * size)
    for field in fields:
        sink.write(packet_item(field)[0])
    sink.close()
    assert [len(list(read_fields(path))) for path in sink.paths] == [3, 3, 1]
    assert len(set(sink.paths)) == 3 and all(path.name.startswith("node_") for path in sink.paths)
    assert [f.packet_id for path in sink.paths for f in read_fields(path)] == list(range(7))
    assert sink.nbytes == 7 * size


class FailingFile:
    """A file that takes ``room`` more bytes, then fails with ENOSPC (after writing some)."""

    def __init__(self, file: Any, room: int) -> None:
        self.file = file
        self.room = room

    def writelines(self, buffers: list[Any]) -> None:
        data = b"".join(bytes(buffer) for buffer in buffers)
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def test_a_failed_write_leaves_the_file_cut_back_to_whole_packets(tmp_path: Path) -> None:
    fields = packets(5)
    sink = CaptureFiles(tmp_path, "node")
    for field in fields[:3]:
        sink.write(packet_item(field)[0])
    sink.flush()
    assert sink._file is not None
    sink._file = FailingFile(sink._file, packet_item(fields[3])[1] // 2)  # type: ignore[assignment]
    with pytest.raises(RecordingError) as caught:
        sink.write(packet_item(fields[3])[0])
    assert str(caught.value) == f"cannot write {sink.paths[0]}: No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert [f.packet_id for f in read_fields(sink.paths[0])] == [0, 1, 2]  # Strict reading: no damage.
    sink.close()  # Nothing more to do.


def test_sigmf_files_start_a_recording_per_sample_rate_and_pass_over_sweeps(tmp_path: Path) -> None:
    sink = SigMFFiles(tmp_path, "node", helo={"SEID": "node-12"})
    for field in [time_field(0), packets(1)[0], time_field(1), time_field(2, deci=4)]:
        sink.write(field)
    sink.close()
    assert len(sink.paths) == 2
    first, second = (sigmf.sigmffile.fromfile(str(path)) for path in sink.paths)
    assert len(first.get_captures()) == 2 and len(second.get_captures()) == 1
    assert first.get_global_info()["core:hw"] == "node-12"


class SlowSink:
    """A sink whose writes wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.items: list[int] = []
        self.closed = False

    def write(self, item: int) -> None:
        if not self.gate.wait(30):
            raise AssertionError("the gate was never opened")
        if item < 0:
            raise RecordingError(errno.ENOSPC, "No space left on device", "slow.ncp")
        self.items.append(item)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_a_slow_disk_makes_put_wait_instead_of_queueing_without_bound() -> None:
    sink = SlowSink()

    async def main() -> None:
        threads = threading.active_count()
        async with BackgroundWriter(max_pending=1000) as writer:
            assert threading.active_count() == threads + 1
            for k in range(2):
                await writer.put(sink, k, 400)
            third = asyncio.ensure_future(writer.put(sink, 2, 400))
            for _ in range(50):
                await asyncio.sleep(0)
            # The sink has written nothing, so the queue cannot take a third item.
            assert not third.done()
            assert writer.pending == 800
            sink.gate.set()
            await third
        assert threading.active_count() == threads
        assert writer.pending == 0

    run(main)
    assert sink.items == [0, 1, 2]
    assert sink.closed


def test_a_failed_write_stops_the_writer_and_is_raised() -> None:
    sink = SlowSink()
    sink.gate.set()

    async def main() -> None:
        writer = BackgroundWriter(max_pending=1000)
        writer.start()
        await writer.put(sink, 0, 10)
        await writer.put(sink, -1, 10)
        with pytest.raises(RecordingError, match=r"cannot write slow\.ncp: No space left on device"):
            await writer.close()
        with pytest.raises(RecordingError):
            await writer.put(sink, 1, 10)

    run(main)
    assert sink.items == [0]
    assert sink.closed
