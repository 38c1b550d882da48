"""
Converting captured fields
==========================

Writes the sweeps or I/Q captures of a stream of fields (usually read from a capture file with
:mod:`ncplib.capture`) in formats other tools read, in physical units (see :mod:`ncplib.units`):

- :func:`sweeps_to_csv`: one row per sweep, the packet time then the level of each bin (dBm);
  the header row gives each bin's frequency (Hz).
- :func:`sweeps_to_npz`: a numpy ``.npz`` file with ``frequencies`` (float64, Hz, shape
  ``(bins,)``), ``times`` (``datetime64[us]``, UTC, shape ``(sweeps,)``) and ``levels``
  (float32, dBm, shape ``(sweeps, bins)``).
- :func:`iq_to_sigmf`: SigMF recordings (see :mod:`ncplib.sigmf_io`).

A sweep is a field with ``PDAT``, ``FSTA`` and ``FSTP``; an I/Q capture one with ``DIQT`` and
``FCTR``; other fields are passed over. Rows of a CSV or NPZ file share one frequency axis, so
every sweep must have the same ``FSTA``, ``FSTP`` and bin count (else :exc:`ValueError`).

Memory does not grow with the input, except for the times of an NPZ file (8 bytes per sweep).
"""

from __future__ import annotations

import array
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ncplib.units import iq_sample_rate, is_iq_capture, is_sweep, sweep_frequencies, sweep_levels

__all__ = ["sweeps_to_csv", "sweeps_to_npz", "iq_to_sigmf", "NoData"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class NoData(ValueError):
    """The input holds no field of the kind the output format needs."""


def _sweeps(fields: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    return (field for field in fields if is_sweep(field))


class _Axis:
    """The frequency axis of the first sweep, which every later sweep must share."""

    def __init__(self, first: Mapping[str, Any]) -> None:
        self.key = self._key(first)
        self.frequencies = sweep_frequencies(first)

    @staticmethod
    def _key(sweep: Mapping[str, Any]) -> tuple[float, float, int]:
        return (float(sweep["FSTA"]), float(sweep["FSTP"]), len(sweep_frequencies(sweep)))

    def check(self, sweep: Mapping[str, Any]) -> None:
        key = self._key(sweep)
        if key != self.key:
            where = getattr(sweep, "offset", None)
            at = f" (packet at byte offset {where})" if where is not None else ""
            raise ValueError(
                "sweeps differ in frequency range or bins: "
                f"{self.key[0]:g}-{self.key[1]:g} MHz in {self.key[2]} bins, then "
                f"{key[0]:g}-{key[1]:g} MHz in {key[2]} bins{at}"
            )


def _microseconds(field: Mapping[str, Any]) -> int:
    stamp = getattr(field, "packet_timestamp", None)
    if not isinstance(stamp, datetime):
        raise ValueError("a sweep has no packet timestamp")
    delta = stamp - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def sweeps_to_csv(fields: Iterable[Mapping[str, Any]], out: IO[str]) -> int:
    """
    Writes sweeps as CSV: a header row ``time`` then each bin's frequency in Hz, then one row
    per sweep: its packet time (ISO 8601, UTC) and each bin's level in dBm.

    :param fields: Received or recorded fields; those that are not sweeps are passed over.
    :param out: A text file open for writing.
    :raises NoData: if there is no sweep.
    :raises ValueError: if sweeps differ in frequency axis, or one is malformed.
    :raises OSError: if writing fails.
    :returns: The number of sweeps written.
    """
    axis: _Axis | None = None
    count = 0
    for sweep in _sweeps(fields):
        if axis is None:
            axis = _Axis(sweep)
            out.write("time," + ",".join(repr(float(f)) for f in axis.frequencies.tolist()) + "\n")
        else:
            axis.check(sweep)
        stamp = getattr(sweep, "packet_timestamp", None)
        when = stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if stamp else ""
        levels = sweep_levels(sweep).tolist()
        out.write(when + "," + ",".join(f"{level:.9g}" for level in levels) + "\n")
        count += 1
    if axis is None:
        raise NoData("no sweeps (fields with PDAT, FSTA and FSTP)")
    return count


def _write_npy(archive: zipfile.ZipFile, name: str, array_: npt.NDArray[Any]) -> None:
    with archive.open(name + ".npy", "w", force_zip64=True) as out:
        np.lib.format.write_array(out, array_, allow_pickle=False)


def sweeps_to_npz(
    open_fields: Callable[[], Iterable[Mapping[str, Any]]], path: str | os.PathLike[str]
) -> int:
    """
    Writes sweeps to an NPZ file (``numpy.load`` reads it): ``frequencies``, ``times`` and
    ``levels`` (see the module documentation).

    The input is read twice, once to count the sweeps and once to write their levels, so the
    levels never have to fit in memory.

    :param open_fields: Called (twice) for the fields, the same each time.
    :param path: The file to create; it must not exist.
    :raises NoData: if there is no sweep.
    :raises ValueError: if sweeps differ in frequency axis, one is malformed, or the second
        reading differs from the first.
    :raises FileExistsError: if ``path`` exists.
    :raises OSError: if writing fails.
    :returns: The number of sweeps written.
    """
    axis: _Axis | None = None
    times = array.array("q")
    for sweep in _sweeps(open_fields()):
        if axis is None:
            axis = _Axis(sweep)
        else:
            axis.check(sweep)
        times.append(_microseconds(sweep))
    if axis is None:
        raise NoData("no sweeps (fields with PDAT, FSTA and FSTP)")
    bins = len(axis.frequencies)
    with open(path, "xb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        _write_npy(archive, "frequencies", axis.frequencies)
        _write_npy(archive, "times", np.frombuffer(times, dtype=np.int64).astype("datetime64[us]"))
        header = {"descr": "<f4", "fortran_order": False, "shape": (len(times), bins)}
        written = 0
        with archive.open("levels.npy", "w", force_zip64=True) as out:
            np.lib.format.write_array_header_2_0(out, header)
            for sweep in _sweeps(open_fields()):
                axis.check(sweep)
                if written == len(times):
                    raise ValueError("the input changed while it was converted")
                out.write(sweep_levels(sweep).astype("<f4").tobytes())
                written += 1
        if written != len(times):
            raise ValueError("the input changed while it was converted")
    return written


def iq_to_sigmf(
    fields: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    helo: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> list[Path]:
    """
    Writes I/Q captures as SigMF recordings, one capture segment per field.

    SigMF has one sample rate per recording: the captures go to ``path`` until one at another
    sample rate comes, which starts ``path-2``, and so on.

    :param fields: Received or recorded fields; those that are not I/Q captures are passed over,
        except a ``LINK`` ``HELO`` field, whose params identify the node when ``helo`` is not
        given.
    :param path: The first recording's path (see :func:`ncplib.sigmf_io.sigmf_paths`).
    :param helo: The node's ``HELO`` params, when known.
    :param str description: ``core:description`` of each recording.
    :raises NoData: if there is no I/Q capture.
    :raises ValueError: if a capture is malformed.
    :raises FileExistsError: if a recording's files exist.
    :raises OSError: if writing fails. Recordings finished before stay valid.
    :returns: The metadata paths of the recordings written.
    """
    from ncplib.sigmf_io import SigMFWriter

    written: list[Path] = []
    writer: SigMFWriter | None = None
    try:
        for field in fields:
            if getattr(field, "packet_type", None) == "LINK" and getattr(field, "name", None) == "HELO":
                helo = helo or dict(field)
                continue
            if not is_iq_capture(field):
                continue
            if writer is None or not writer.accepts(field):
                if writer is not None:
                    writer.close()
                    written.append(writer.meta_path)
                target = Path(path) if not written else _numbered(Path(path), len(written) + 1)
                writer = SigMFWriter(target, iq_sample_rate(field), helo=helo, description=description)
            writer.add(field)
    finally:
        if writer is not None:
            writer.close()
            written.append(writer.meta_path)
    if not written:
        raise NoData("no I/Q captures (fields with DIQT and FCTR)")
    return written


def _numbered(path: Path, number: int) -> Path:
    from ncplib.sigmf_io import sigmf_paths

    _data, meta = sigmf_paths(path)
    base = meta.with_suffix("")
    return base.with_name(f"{base.name}-{number}")
