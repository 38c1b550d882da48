"""
SigMF recordings of I/Q captures
================================

`SigMF <https://sigmf.org>`_ is the recording format RF tools share (GNU Radio, inspectrum,
MATLAB, numpy through the ``sigmf`` package). :class:`SigMFWriter` writes the ``TIME`` I/Q
captures of a node as one SigMF recording: a ``.sigmf-data`` file of ``ci16_le`` samples (the
node's 16-bit I and Q, unchanged) and a ``.sigmf-meta`` file. Needs the ``sigmf`` package
(``pip install 'ncplib[sigmf]'``).

Each capture (one ``DIQT`` field) is one SigMF capture segment, with:

- ``core:sample_start``: where its samples start in the data file;
- ``core:frequency``: its centre frequency, Hz (``FCTR`` plus ``FCTM``, see :mod:`ncplib.units`);
- ``core:datetime``: its packet timestamp, UTC, ISO 8601 with microseconds.

The global object has ``core:datatype`` ``ci16_le``, ``core:sample_rate`` (``62.5 MHz / DECI``,
see :func:`ncplib.units.iq_sample_rate`), ``core:recorder``, a ``core:sha512`` of the data,
and, when the node's ``HELO`` is known, its identity: ``core:hw`` (name, firmware, MAC address)
and the ``HELO`` params themselves under ``ncplib:helo``.

SigMF has one sample rate per recording, so a capture at another rate cannot join a recording:
:meth:`SigMFWriter.accepts` says so, and the caller starts a new one.

Reading it back with the ``sigmf`` package::

    import sigmf

    recording = sigmf.sigmffile.fromfile("capture")            # capture.sigmf-meta
    samples = recording.read_samples()                          # complex, full scale 1.0
    for segment in recording.get_captures():
        print(segment["core:datetime"], segment["core:frequency"])
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

try:
    import numpy as np
    from sigmf import SigMFFile  # type: ignore[import-untyped]
except ImportError as ex:  # pragma: no cover - sigmf is an extra
    raise ImportError("ncplib.sigmf_io needs the sigmf package: pip install 'ncplib[sigmf]'") from ex

import ncplib
from ncplib.units import IQ_BASE_RATE_HZ, iq_centre_frequency, iq_sample_rate, is_iq_capture

__all__ = ["SigMFWriter", "sigmf_paths", "sigmf_datetime", "helo_description"]

logger = logging.getLogger(__name__)

DATATYPE = "ci16_le"
_SAMPLE_BYTES = 4  # ci16: 2 bytes of I, 2 of Q.
_META_SUFFIX = ".sigmf-meta"
_DATA_SUFFIX = ".sigmf-data"
_EXTENSION = {"name": "ncplib", "version": "1.0.0", "optional": True}
# errno values of a full disk or quota, and room to free beyond the metadata's size (blocks).
_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})
_ROOM_MARGIN = 8192


def sigmf_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """
    The data and metadata paths of a recording: ``path`` with ``.sigmf-data`` and
    ``.sigmf-meta`` (an existing ``.sigmf-data``, ``.sigmf-meta`` or ``.sigmf`` suffix is replaced).
    """
    base = Path(path)
    if base.suffix in (_META_SUFFIX, _DATA_SUFFIX, ".sigmf"):
        base = base.with_suffix("")
    return base.with_name(base.name + _DATA_SUFFIX), base.with_name(base.name + _META_SUFFIX)


def sigmf_datetime(stamp: datetime) -> str:
    """A timestamp as SigMF writes it: ISO 8601, UTC, with ``Z`` (``2026-01-02T03:04:05.678901Z``)."""
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(timezone.utc).replace(tzinfo=None)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def helo_description(helo: Mapping[str, Any]) -> str:
    """
    A node's identity in words, from the params of its ``HELO`` handshake field: its name
    (``SEID``), then its firmware (``NCPV``) and MAC address (``MACA``) when it sent them.
    """
    name = str(helo.get("SEID") or "RFeye node")
    details = [
        f"{label} {helo[key]}" for key, label in (("NCPV", "firmware"), ("MACA", "MAC")) if helo.get(key)
    ]
    return name + (f" ({', '.join(details)})" if details else "")


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


class SigMFWriter:
    """
    Writes I/Q captures as one SigMF recording, one capture segment per field.

    The samples go to the data file as they are added; the metadata file is written by
    :meth:`close`. Memory use does not grow with the recording.

    :param path: The recording's path, without suffix (``.sigmf-data`` and ``.sigmf-meta`` are
        added; see :func:`sigmf_paths`).
    :param float sample_rate: The recording's sample rate, Hz.
    :param helo: The params of the node's ``HELO`` field, when known: they identify the node in
        the global object.
    :param str description: ``core:description``.
    :param float base_rate: The digitiser's rate before decimation (see
        :func:`ncplib.units.iq_sample_rate`).
    :raises FileExistsError: if either file exists (nothing is overwritten).
    :raises OSError: if the data file cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: float,
        *,
        helo: Mapping[str, Any] | None = None,
        description: str | None = None,
        base_rate: float = IQ_BASE_RATE_HZ,
    ) -> None:
        self.data_path, self.meta_path = sigmf_paths(path)
        if self.meta_path.exists():
            raise FileExistsError(f"{self.meta_path} exists")
        self.sample_rate = float(sample_rate)
        self.base_rate = base_rate
        self.helo = dict(helo) if helo else None
        self.description = description
        self._file: IO[bytes] = open(self.data_path, "xb")  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha512()
        self._captures: list[dict[str, Any]] = []
        #: Complex samples written so far.
        self.samples = 0
        self._closed = False

    @property
    def nbytes(self) -> int:
        """Bytes of samples written so far."""
        return self.samples * _SAMPLE_BYTES

    @property
    def captures(self) -> int:
        """Capture segments written so far."""
        return len(self._captures)

    def accepts(self, field: Mapping[str, Any]) -> bool:
        """Whether ``field`` is an I/Q capture at this recording's sample rate."""
        return is_iq_capture(field) and iq_sample_rate(field, base_rate=self.base_rate) == self.sample_rate

    def add(self, field: Mapping[str, Any], timestamp: datetime | None = None) -> None:
        """
        Appends one I/Q capture as a new capture segment.

        :param field: A ``TIME`` reply (``DIQT``, ``FCTR``, ``DECI``, optionally ``SAMP`` and
            ``FCTM``): a received or recorded field, or a mapping.
        :param timestamp: When it was captured; default the field's ``packet_timestamp``.
        :raises ValueError: if it is not an I/Q capture, or its sample rate is not the
            recording's (see :meth:`accepts`).
        :raises OSError: if writing fails. The data file then ends after the last whole capture
            segment, and :meth:`close` writes the metadata of the segments before it.
        """
        if self._closed:
            raise ValueError("the recording is closed")
        rate = iq_sample_rate(field, base_rate=self.base_rate)
        if rate != self.sample_rate:
            raise ValueError(f"sample rate {rate:g} Hz is not the recording's {self.sample_rate:g} Hz")
        frequency = iq_centre_frequency(field)
        diqt = np.asarray(field["DIQT"])
        if diqt.ndim != 1 or diqt.dtype.kind not in "iu" or diqt.dtype.itemsize != 2:
            raise ValueError(f"DIQT must be a 1-D array of 16-bit integers, not {diqt.dtype}")
        count = len(diqt) // 2
        samp = field.get("SAMP")
        if isinstance(samp, int) and not isinstance(samp, bool) and 0 <= samp <= count:
            count = samp
        data = diqt[: 2 * count].astype("<i2", copy=False)
        if timestamp is None:
            timestamp = getattr(field, "packet_timestamp", None)
        segment: dict[str, Any] = {
            "core:sample_start": self.samples,
            "core:frequency": frequency,
        }
        if isinstance(timestamp, datetime):
            segment["core:datetime"] = sigmf_datetime(timestamp)
        raw = np.ascontiguousarray(data).view(np.uint8)
        written = self.nbytes
        try:
            self._file.write(raw.data)
            self._file.flush()
        except OSError:
            self._truncate(written)
            raise
        self._hash.update(raw.data)
        self._captures.append(segment)
        self.samples += count

    def _truncate(self, size: int) -> None:
        """Cuts the data file back to ``size`` bytes after a failed write (best effort)."""
        with contextlib.suppress(OSError):
            self._file.seek(size)
            self._file.truncate(size)
        # Whatever is still buffered belongs to the failed write: drop it with the file object.
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = open(self.data_path, "r+b")  # noqa: SIM115 - closed by close()
        self._file.truncate(size)
        self._file.seek(size)

    def metadata(self) -> dict[str, Any]:
        """The recording's SigMF metadata so far, as a JSON-ready dict."""
        global_info: dict[str, Any] = {
            "core:datatype": DATATYPE,
            "core:sample_rate": self.sample_rate,
            "core:recorder": f"ncplib {ncplib.__version__}",
            "core:sha512": self._hash.hexdigest(),
            "core:num_channels": 1,
        }
        if self.description:
            global_info["core:description"] = self.description
        if self.helo:
            global_info["core:hw"] = helo_description(self.helo)
            global_info["core:extensions"] = [_EXTENSION]
            global_info["ncplib:helo"] = {name: _json_value(value) for name, value in self.helo.items()}
        return {"global": global_info, "captures": list(self._captures), "annotations": []}

    def close(self) -> None:
        """
        Finishes the recording: closes the data file and writes the metadata file.

        The metadata file is written to a temporary name and then renamed, so it is either
        complete or absent. When the disk is too full for it, the last capture segments are
        given up (the data file cut back) to make room, so that the recording stays valid.
        Calling it again does nothing.

        :raises OSError: if the data file cannot be closed or the metadata file written.
        """
        if self._closed:
            return
        self._closed = True
        self._file.close()
        while True:
            try:
                self._write_metadata()
                break
            except OSError as ex:
                if ex.errno not in _DISK_FULL or not self._captures:
                    raise
                self._make_room(ex)
        logger.debug("Wrote %s: %d captures, %d samples", self.meta_path, self.captures, self.samples)

    def _write_metadata(self) -> None:
        recording = SigMFFile(metadata=self.metadata(), skip_checksum=True)
        recording.validate()
        partial = self.meta_path.with_name(self.meta_path.name + ".partial")
        try:
            with open(partial, "x", encoding="utf-8") as out:
                recording.dump(out, pretty=True)
                out.write("\n")
            os.replace(partial, self.meta_path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def _make_room(self, ex: OSError) -> None:
        """Gives up the last capture segments, freeing at least the metadata's size on disk."""
        needed = len(json.dumps(self.metadata(), indent=4)) + _ROOM_MARGIN
        keep = self.samples
        while self._captures and (self.samples - keep) * _SAMPLE_BYTES < needed:
            keep = self._captures.pop()["core:sample_start"]
        logger.warning(
            "%s: %s: dropping the last %d samples to make room for %s",
            self.data_path,
            ex.strerror,
            self.samples - keep,
            self.meta_path.name,
        )
        self.samples = keep
        os.truncate(self.data_path, self.nbytes)
        # The checksum covers what is left.
        self._hash = hashlib.sha512()
        with open(self.data_path, "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                self._hash.update(chunk)

    def __enter__(self) -> SigMFWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
