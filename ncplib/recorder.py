"""
Recording fields to files
=========================

What ``ncplib record`` is built from, usable on its own:

- :class:`CaptureFiles` writes one node's fields as capture files (``.ncp``, see
  :mod:`ncplib.capture`), :class:`SigMFFiles` its I/Q captures as SigMF recordings (see
  :mod:`ncplib.sigmf_io`); both start a new file when the current one reaches a size or an age
  (rotation).
- :class:`BackgroundWriter` does the writing in a thread of its own, so the event loop never
  waits for the disk, behind a queue bounded in bytes: when the disk is slower than the nodes,
  :meth:`BackgroundWriter.put` waits, the loop stops taking fields, and the connections stop
  reading (TCP then slows the nodes). Memory never grows without bound.

After a failed write (a full disk, say) every file is closed in a valid state: a capture file
ends after the last packet written in full, a SigMF recording after its last whole capture
segment, with its metadata. The error is then raised by :meth:`BackgroundWriter.put` and
:meth:`BackgroundWriter.close` as a :exc:`RecordingError` naming the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

from ncplib.capture import field_packet

__all__ = [
    "RecordingError",
    "Sink",
    "CaptureFiles",
    "SigMFFiles",
    "BackgroundWriter",
    "file_label",
    "DEFAULT_MAX_PENDING",
]

logger = logging.getLogger(__name__)

#: The default bound of :class:`BackgroundWriter`'s queue, bytes (32 MB).
DEFAULT_MAX_PENDING = 32_000_000


class RecordingError(OSError):
    """
    Writing a file failed. An :exc:`OSError` with the system's ``errno`` and ``strerror`` and
    the file in ``filename``; ``str()`` is one line: ``cannot write PATH: REASON``.
    """

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def _recording_error(path: Path | str, ex: OSError) -> RecordingError:
    error = RecordingError(ex.errno or 0, ex.strerror or str(ex), os.fspath(ex.filename or path))
    error.__cause__ = ex
    return error


def file_label(address: str) -> str:
    """A node address made safe for a file name: ``10.0.0.7:9999`` -> ``10.0.0.7_9999``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", address).strip("_") or "node"


def _new_base(directory: Path, label: str, suffixes: tuple[str, ...]) -> Path:
    """
    ``DIR/LABEL_YYYYmmddTHHMMSS.mmmZ`` (UTC now; then ``-2``, ``-3``... while a file of that name
    with any of ``suffixes`` exists).
    """
    # Milliseconds, so that files rotated within a second still sort in order.
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    base = directory / f"{label}_{stamp}"
    number = 1
    path = base
    while any(path.with_name(path.name + suffix).exists() for suffix in suffixes):
        number += 1
        path = base.with_name(f"{base.name}-{number}")
    return path


class Sink(Protocol):
    """One node's output files, written from one thread only."""

    def write(self, item: Any) -> None:
        """Writes one item; raises :exc:`RecordingError` if writing fails."""

    def flush(self) -> None:
        """Makes what was written durable enough to survive a crash of the process."""

    def close(self) -> None:
        """Finishes the current file, leaving it valid, even after a failed write."""


class _Rotation:
    def __init__(self, max_bytes: int | None, max_seconds: float | None) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"the rotation size must be at least 1 byte, not {max_bytes}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"the rotation age must be positive, not {max_seconds}")
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    def due(self, size: int, opened: float) -> bool:
        if self.max_bytes is not None and size >= self.max_bytes:
            return True
        return self.max_seconds is not None and time.monotonic() - opened >= self.max_seconds


class _RotatedFiles:
    """What both kinds of files share: where, named after what, rotated when."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        label: str,
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.label = label
        self._rotation = _Rotation(max_bytes, max_seconds)
        #: Every file started so far (for SigMF, its metadata file), oldest first.
        self.paths: list[Path] = []
        #: Bytes written to all the files (for SigMF, of samples).
        self.nbytes = 0
        self._opened = 0.0


class CaptureFiles(_RotatedFiles):
    """
    One node's fields as capture files (``.ncp``), rotated by size and age.

    Files are named ``LABEL_YYYYmmddTHHMMSS.mmmZ.ncp`` (UTC, when opened; ``-2``... when that name
    is taken) in ``directory``; nothing is overwritten. A file is opened at the first item.

    :param directory: Where to write.
    :param str label: The node's part of the file names (see :func:`file_label`).
    :param max_bytes: Start a new file once the current one holds this many bytes.
    :param max_seconds: Start a new file once the current one is this many seconds old (checked
        when a field arrives).
    :raises ValueError: if a rotation bound is not positive.

    :meth:`write` takes a packet as a list of buffers (see :func:`ncplib.capture.field_packet`).
    """

    suffix = ".ncp"
    # The current file (set by _open), its size, and how much of it is known to be on disk
    # (complete packets only).
    _file: IO[bytes] | None = None
    _size = 0
    _committed = 0

    def _open(self) -> IO[bytes]:
        base = _new_base(self.directory, self.label, (self.suffix,))
        path = base.with_name(base.name + self.suffix)
        try:
            file = open(path, "xb")  # noqa: SIM115 - closed by close()
        except OSError as ex:
            raise _recording_error(path, ex) from None
        self.paths.append(path)
        self._file, self._opened, self._size, self._committed = file, time.monotonic(), 0, 0
        logger.info("Recording to %s", path)
        return file

    def write(self, item: list[bytes | memoryview]) -> None:
        """Appends one packet, given as its buffers."""
        if self._file is not None and self._rotation.due(self._size, self._opened):
            self.close()
        file = self._file if self._file is not None else self._open()
        try:
            file.writelines(item)
        except OSError as ex:
            self._fail(ex)
        size = sum(memoryview(buffer).nbytes for buffer in item)
        self._size += size
        self.nbytes += size

    def flush(self) -> None:
        """Writes out what is buffered."""
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as ex:
            self._fail(ex)
        self._committed = self._size

    def _fail(self, ex: OSError) -> None:
        path = self.paths[-1]
        self._abort()
        raise _recording_error(path, ex) from None

    def _abort(self) -> None:
        """Closes the current file after a failed write, cut back to its last whole packet."""
        file, self._file = self._file, None
        if file is None:
            return
        path = self.paths[-1]
        # Whatever is still buffered is dropped with the file object; then the file is cut back
        # to the packets known to be whole (truncating needs no free space).
        with contextlib.suppress(OSError, ValueError):
            os.truncate(path, self._committed)
        with contextlib.suppress(OSError, ValueError):
            file.close()
        with contextlib.suppress(OSError):
            os.truncate(path, self._committed)
        logger.info("%s ends after %d bytes of whole packets", path, self._committed)

    def close(self) -> None:
        """Finishes the current file."""
        if self._file is None:
            return
        try:
            self._file.flush()
            self._committed = self._size
        except OSError as ex:
            self._fail(ex)
        file, self._file = self._file, None
        file.close()


class SigMFFiles(_RotatedFiles):
    """
    One node's I/Q captures as SigMF recordings, rotated by size and age, and whenever the
    sample rate changes (SigMF has one per recording).

    Named as for :class:`CaptureFiles`, with ``.sigmf-data`` and ``.sigmf-meta``. Takes the
    arguments of :class:`CaptureFiles`, and ``helo``, the node's ``HELO`` params when known (see
    :class:`ncplib.sigmf_io.SigMFWriter`). :meth:`write` takes a field; fields that are not I/Q
    captures are passed over, with one warning per field name.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        label: str,
        *,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
        helo: Mapping[str, Any] | None = None,
    ) -> None:
        from ncplib.sigmf_io import SigMFWriter

        super().__init__(directory, label, max_bytes=max_bytes, max_seconds=max_seconds)
        self._writer_class = SigMFWriter
        self.helo = helo
        self._writer: SigMFWriter | None = None
        self._skipped: set[str] = set()

    def write(self, item: Any) -> None:
        """Appends one I/Q capture as a capture segment."""
        from ncplib.units import iq_sample_rate, is_iq_capture

        if not is_iq_capture(item):
            if item.name not in self._skipped:
                self._skipped.add(item.name)
                logger.warning("%s: SigMF holds I/Q captures only: skipping %s fields", self.label, item.name)
            return
        writer = self._writer
        if writer is not None and (
            not writer.accepts(item) or self._rotation.due(writer.nbytes, self._opened)
        ):
            self.close()
            writer = None
        if writer is None:
            base = _new_base(self.directory, self.label, (".sigmf-data", ".sigmf-meta"))
            try:
                writer = self._writer_class(base, iq_sample_rate(item), helo=self.helo)
            except OSError as ex:
                raise _recording_error(base.with_name(base.name + ".sigmf-data"), ex) from None
            self._writer, self._opened = writer, time.monotonic()
            self.paths.append(writer.meta_path)
            logger.info("Recording to %s", writer.meta_path)
        before = writer.nbytes
        try:
            writer.add(item)
        except OSError as ex:
            error = _recording_error(writer.data_path, ex)
            self.close()
            raise error from None
        self.nbytes += writer.nbytes - before

    def flush(self) -> None:
        """Nothing to do: every capture segment is flushed as it is written."""

    def close(self) -> None:
        """Finishes the current recording: writes its metadata."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError as ex:
            raise _recording_error(writer.meta_path, ex) from None


class BackgroundWriter:
    """
    Writes items to sinks in a thread of its own, behind a queue bounded in bytes.

    Use it from one event loop: ``async with BackgroundWriter() as writer: await
    writer.put(sink, item, nbytes)``. Leaving the block (or :meth:`close`) writes what is
    queued, closes every sink that was written to, and stops the thread.

    :param int max_pending: The most bytes queued; :meth:`put` waits while the queue is full
        (an item larger than the bound is queued alone).

    After a write fails, the thread closes every sink (each leaves its files valid) and stops;
    :meth:`put` and :meth:`close` then raise the :exc:`RecordingError`.
    """

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[tuple[Sink, Any, int] | None] = deque()
        self._pending = 0
        self._sinks: list[Sink] = []
        self._error: RecordingError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._space: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._finished: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Bytes queued, not yet written."""
        return self._pending

    @property
    def error(self) -> RecordingError | None:
        """The failure that stopped the writer, if one did."""
        return self._error

    async def __aenter__(self) -> BackgroundWriter:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        """Starts the thread; called by ``async with``. Needs a running event loop."""
        if self._thread is not None:
            raise RuntimeError("the writer was started before")
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._finished = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="ncplib-writer", daemon=True)
        self._thread.start()

    async def put(self, sink: Sink, item: Any, nbytes: int) -> None:
        """
        Queues ``item`` to be written to ``sink``, waiting while the queue is full.

        :param sink: Where to write it.
        :param item: What its ``write`` takes.
        :param int nbytes: Its size, counted against the bound.
        :raises RecordingError: if a write has failed.
        :raises RuntimeError: if the writer is not started or is closed.
        """
        space = self._space
        if self._error is not None:
            raise self._error
        if space is None or self._closed:
            raise RuntimeError("the writer is not running")
        while True:
            if self._error is not None:
                raise self._error
            space.clear()
            with self._lock:
                if self._pending == 0 or self._pending + nbytes <= self.max_pending:
                    self._pending += nbytes
                    self._queue.append((sink, item, nbytes))
                    self._ready.notify()
                    return
            await space.wait()

    async def close(self) -> None:
        """
        Writes what is queued, closes the sinks and stops the thread. Calling it again does
        nothing more.

        :raises RecordingError: if a write failed (the files are valid all the same).
        """
        if not self._closed and self._thread is not None and self._finished is not None:
            self._closed = True
            with self._lock:
                self._queue.append(None)
                self._ready.notify()
            # The thread resolves _finished as its last act: wait for that without blocking the
            # loop, then the join returns at once.
            await asyncio.shield(self._finished)
            self._thread.join()
        if self._error is not None:
            raise self._error

    # The thread.

    def _wake_loop(self, *, finished: bool = False) -> None:
        loop, space = self._loop, self._space
        if loop is None or space is None:  # pragma: no cover - started with both
            return

        def wake() -> None:
            space.set()
            if finished and self._finished is not None and not self._finished.done():
                self._finished.set_result(None)

        with contextlib.suppress(RuntimeError):  # The loop is closed: nobody waits.
            loop.call_soon_threadsafe(wake)

    def _run(self) -> None:
        try:
            self._write_batches()
        finally:
            self._close_sinks()
            self._wake_loop(finished=True)

    def _write_batches(self) -> None:
        touched: set[int] = set()
        while True:
            with self._lock:
                while not self._queue:
                    self._ready.wait()
                batch = list(self._queue)
                self._queue.clear()
            stop = False
            done_bytes = 0
            for entry in batch:
                if entry is None:
                    stop = True
                    continue
                sink, item, nbytes = entry
                done_bytes += nbytes
                if self._error is not None:
                    continue  # Drop what is queued behind a failure.
                if id(sink) not in touched:
                    touched.add(id(sink))
                    self._sinks.append(sink)
                try:
                    sink.write(item)
                except RecordingError as ex:
                    self._failed(ex)
                except Exception as ex:
                    # Something a node sent that cannot be written (a malformed I/Q capture):
                    # that item is lost, the recording goes on.
                    logger.warning("Not written: %s", ex)
            if self._error is None:
                for sink in self._sinks:
                    try:
                        sink.flush()
                    except RecordingError as ex:
                        self._failed(ex)
                        break
            with self._lock:
                self._pending -= done_bytes
            self._wake_loop()
            if stop:
                break

    def _failed(self, ex: RecordingError) -> None:
        if self._error is None:
            logger.debug("Writer stopped: %s", ex)  # Raised to the caller.
            self._error = ex
            self._close_sinks()

    def _close_sinks(self) -> None:
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            try:
                sink.close()
            except RecordingError as ex:
                if self._error is None:
                    self._error = ex
                else:
                    logger.warning("%s", ex)
            except Exception:
                logger.exception("Could not finish the files of %r", sink)


def packet_item(field: Any) -> tuple[list[bytes | memoryview], int]:
    """A field as a :class:`CaptureFiles` item (a one-field packet's buffers) and its size."""
    buffers = field_packet(field)
    return buffers, sum(memoryview(buffer).nbytes for buffer in buffers)
