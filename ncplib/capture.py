"""
Capture files
=============

A capture file (``.ncp``) holds NCP packets back to back, exactly as they are sent on the wire;
``ncplib stream --save`` and ``ncplib record`` write them. :class:`CaptureReader` reads one
packet at a time, so a file of any size is read in constant memory::

    from ncplib.capture import CaptureReader

    with CaptureReader("sweeps.ncp") as capture:
        for field in capture.fields():
            print(field.packet_timestamp, field.packet_type, field.name, field.get("NBIN"))

A damaged packet (bad magic number, impossible size, undecodable content, or a file cut short)
raises :exc:`CaptureError`, which names its byte offset. With ``skip_damaged=True`` the reader
logs it, records it in :attr:`CaptureReader.damaged` and goes on from the next packet header
found after it.

:func:`field_packet` turns a field back into the bytes of a one-field packet, as the writers of
capture files do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from struct import Struct
from types import TracebackType
from typing import IO, Any

from ncplib import _wire as w
from ncplib.errors import DecodeError
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE
from ncplib.packets import decode_packet, encode_packet_buffers

__all__ = [
    "CaptureError",
    "CaptureReader",
    "CapturedPacket",
    "CapturedField",
    "Damage",
    "field_packet",
    "read_fields",
]

logger = logging.getLogger(__name__)

_HEADER_PREFIX = Struct("<4s4sI")
# How much is read at a time while looking for the next packet header after damage.
_SCAN_CHUNK = 64 * 1024
_NO_INFO = b"\x00\x00\x00\x00"


class CaptureError(DecodeError):
    """
    A damaged packet in a capture file. A :exc:`ncplib.DecodeError`.

    .. attribute:: offset

        The byte offset in the file where the damaged packet starts.

    .. attribute:: reason

        What is wrong with it, in words.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: damaged packet at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class Damage:
    """A damaged stretch of a capture file that was skipped."""

    #: Byte offset where the damaged packet starts.
    offset: int
    #: How many bytes were skipped (up to the next packet header or the end of the file).
    length: int
    #: What was wrong.
    reason: str


class CapturedField(dict[str, Any]):
    """
    A field read from a capture file: a :class:`dict` of param names to values, with the same
    attributes as a received :class:`~ncplib.Field` (``packet_type``, ``packet_id``,
    ``packet_timestamp``, ``name``, ``id``) and ``offset``, the byte offset of its packet in the
    file. It has no connection, so it cannot be replied to.
    """

    __slots__ = ("id", "name", "offset", "packet_id", "packet_timestamp", "packet_type")

    def __init__(
        self,
        packet_type: str,
        packet_id: int,
        packet_timestamp: datetime,
        name: str,
        id: int,
        params: list[tuple[str, Any]],
        offset: int,
    ) -> None:
        super().__init__(params)
        self.packet_type = packet_type
        self.packet_id = packet_id
        self.packet_timestamp = packet_timestamp
        self.name = name
        self.id = id
        self.offset = offset

    def __repr__(self) -> str:
        return f"<CapturedField {self.packet_type!r} {self.name!r} at {self.offset} {dict.__repr__(self)}>"


@dataclass(frozen=True)
class CapturedPacket:
    """One packet read from a capture file."""

    #: Byte offset of the packet in the file.
    offset: int
    #: Its size in bytes.
    size: int
    packet_type: str
    packet_id: int
    #: When it was sent (timezone-aware, UTC).
    timestamp: datetime
    #: The header's 4 info bytes.
    info: bytes
    #: Its fields.
    fields: list[CapturedField]


class CaptureReader:
    """
    Reads the packets of a capture file one at a time.

    :param file: A path, or a binary file object open for reading (not closed by the reader).
    :param bool skip_damaged: Skip damaged packets (logged, and listed in :attr:`damaged`)
        instead of raising :exc:`CaptureError`.
    :param bool use_numpy: Decode data params as numpy arrays (each packet is read into a buffer
        of its own, which its arrays view).
    :param int max_packet_size: The largest packet accepted, bytes; a header announcing a
        larger one is damage. Memory use is at most about this much.
    :raises OSError: if the file cannot be opened.

    Iterate over the reader (or call :meth:`packets`) for :class:`CapturedPacket` objects, or
    call :meth:`fields` for every field of every packet. Iteration raises
    :exc:`CaptureError` at a damaged packet, unless ``skip_damaged``; a
    :exc:`ncplib.DecodeWarning` is issued for recoverable defects, as for received packets.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        skip_damaged: bool = False,
        use_numpy: bool = False,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        if max_packet_size < w.MIN_PACKET_SIZE:
            raise ValueError(f"max_packet_size must be at least {w.MIN_PACKET_SIZE}")
        if use_numpy:
            import numpy  # noqa: F401  (fail now, not on the first array)
        self._own_file = isinstance(file, (str, os.PathLike))
        if isinstance(file, (str, os.PathLike)):
            self.path = os.fspath(file)
            self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        else:
            self.path = str(getattr(file, "name", "<capture>"))
            self._file = file
        self.skip_damaged = skip_damaged
        self.use_numpy = use_numpy
        self.max_packet_size = max_packet_size
        #: The damaged stretches skipped so far (with ``skip_damaged``).
        self.damaged: list[Damage] = []
        try:
            self._offset = self._file.tell()
        except (OSError, AttributeError):  # A pipe: offsets count from here.
            self._offset = 0

    @property
    def offset(self) -> int:
        """The byte offset of the next packet to read."""
        return self._offset

    def close(self) -> None:
        """Closes the file if the reader opened it."""
        if self._own_file:
            self._file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[CapturedPacket]:
        return self.packets()

    def packets(self) -> Iterator[CapturedPacket]:
        """
        Yields each packet from the current offset to the end of the file.

        :raises CaptureError: at a damaged packet, unless ``skip_damaged``.
        :raises OSError: if reading fails.
        """
        while True:
            packet = self.read_packet()
            if packet is None:
                return
            yield packet

    def fields(self) -> Iterator[CapturedField]:
        """Yields each field of each packet, in file order; raises what :meth:`packets` raises."""
        for packet in self.packets():
            yield from packet.fields

    def read_packet(self) -> CapturedPacket | None:
        """
        Reads the next packet, or returns :data:`None` at the end of the file.

        :raises CaptureError: if it is damaged, unless ``skip_damaged`` (then the next good one
            is returned).
        :raises OSError: if reading fails.
        """
        while True:
            start = self._offset
            try:
                return self._read_one(start)
            except _Damaged as damage:
                if not self.skip_damaged:
                    raise CaptureError(self.path, start, damage.reason) from damage.__cause__
                resume = damage.resume if damage.resume is not None else self._resync(start + 1)
                found = Damage(start, resume - start, damage.reason)
                self.damaged.append(found)
                logger.warning(
                    "%s: skipped %d damaged bytes at offset %d: %s",
                    self.path,
                    found.length,
                    start,
                    found.reason,
                )
                self._seek(resume)

    # Internals.

    def _seek(self, offset: int) -> None:
        self._file.seek(offset)
        self._offset = offset

    def _read_into(self, view: memoryview) -> int:
        """Fills ``view`` from the file as far as it goes; returns how many bytes were read."""
        filled = 0
        with view:
            while filled < len(view):
                n = self._file.readinto(view[filled:])  # type: ignore[attr-defined]
                if not n:
                    break
                filled += n
        return filled

    def _read_exactly(self, size: int) -> bytearray:
        buf = bytearray(size)
        del buf[self._read_into(memoryview(buf)) :]
        return buf

    def _read_one(self, start: int) -> CapturedPacket | None:
        # The file is at ``start``: reading goes on where the last packet ended.
        header = self._read_exactly(w.PACKET_HEADER_SIZE)
        if not header:
            return None
        if len(header) < w.PACKET_HEADER_SIZE:
            self._offset = start + len(header)
            raise _Damaged(f"the file ends {len(header)} bytes into a packet header")
        problem = self._header_problem(header)
        if problem is not None:
            raise _Damaged(problem)
        size = int(_HEADER_PREFIX.unpack_from(header)[2]) * 4
        # The packet's own buffer, read into in place (numpy arrays view it).
        buf = bytearray(size)
        buf[: w.PACKET_HEADER_SIZE] = header
        filled = w.PACKET_HEADER_SIZE + self._read_into(memoryview(buf)[w.PACKET_HEADER_SIZE :])
        if filled < size:
            raise _Damaged(f"the file ends after {filled} of the packet's {size} bytes")
        self._offset = start + size
        try:
            packet_type, packet_id, timestamp, info, fields = decode_packet(buf, self.use_numpy)
        except DecodeError as ex:
            # Framed correctly (its footer is where its header says): only its content is bad,
            # so the next packet starts right after it.
            framed = buf[-4:] == w.PACKET_FOOTER_MAGIC
            raise _Damaged(str(ex), start + size if framed else None) from ex
        return CapturedPacket(
            start,
            size,
            packet_type,
            packet_id,
            timestamp,
            info,
            [
                CapturedField(packet_type, packet_id, timestamp, name, field_id, params, start)
                for name, field_id, params in fields
            ],
        )

    def _header_problem(self, header: bytes | bytearray) -> str | None:
        magic, _type, size_words = _HEADER_PREFIX.unpack_from(header)
        size = size_words * 4
        if magic != w.PACKET_HEADER_MAGIC:
            return f"invalid packet header magic {magic.hex()}"
        if size < w.MIN_PACKET_SIZE:
            return f"the header gives {size} bytes, less than a header and footer"
        if size > self.max_packet_size:
            return f"the header gives {size} bytes, more than the maximum of {self.max_packet_size}"
        return None

    def _resync(self, offset: int) -> int:
        """The offset of the next plausible packet header at or after ``offset``, or the end."""
        magic = w.PACKET_HEADER_MAGIC
        self._file.seek(offset)
        carry = b""
        base = offset
        while True:
            chunk = self._file.read(_SCAN_CHUNK)
            if not chunk:
                return base + len(carry)
            data = carry + chunk
            pos = data.find(magic)
            while pos >= 0:
                if len(data) - pos < w.PACKET_HEADER_SIZE:
                    break  # Check it once the rest of its header is read.
                if self._header_problem(data[pos : pos + w.PACKET_HEADER_SIZE]) is None:
                    return base + pos
                pos = data.find(magic, pos + 1)
            keep = min(len(data), w.PACKET_HEADER_SIZE - 1) if pos < 0 else len(data) - pos
            base += len(data) - keep
            carry = data[len(data) - keep :]


class _Damaged(Exception):
    def __init__(self, reason: str, resume: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # Where the next packet starts, when that is known; else it is searched for.
        self.resume = resume


def read_fields(
    file: str | os.PathLike[str] | IO[bytes], *, skip_damaged: bool = False, use_numpy: bool = False
) -> Iterator[CapturedField]:
    """
    Yields every field of a capture file, closing the file at the end.

    Takes the arguments and raises the errors of :class:`CaptureReader`.
    """
    with CaptureReader(file, skip_damaged=skip_damaged, use_numpy=use_numpy) as reader:
        yield from reader.fields()


def field_packet(field: Any, info: bytes = _NO_INFO) -> list[bytes | memoryview]:
    """
    A field (received, or read from a capture) as the buffers of a one-field packet.

    The packet has the field's packet type, packet id and timestamp. Large values are not
    copied: the list holds views of them (see :func:`ncplib.packets.encode_packet_buffers`).

    :param field: A :class:`~ncplib.Field` or :class:`CapturedField`.
    :param bytes info: The header's info bytes; default zeros.
    :raises ValueError: if the field cannot be encoded (see :func:`ncplib.packets.encode_packet`).
    :raises TypeError: likewise.
    :returns: The buffers, in order.
    """
    return encode_packet_buffers(
        field.packet_type,
        field.packet_id,
        field.packet_timestamp,
        info,
        [(field.name, field.id, list(field.items()))],
    )
