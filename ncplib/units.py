"""
Physical units
==============

Turns the params of a sweep (``SWEP``) or an I/Q capture (``TIME``) reply into numbers with
units: the frequency of each bin in hertz and its level in dBm, or complex I/Q samples with
their sample rate and centre frequency. Needs numpy (``pip install 'ncplib[numpy]'``).

The functions take any mapping of param names to values: a received
:class:`~ncplib.Field`, a field read from a capture file (:mod:`ncplib.capture`) or a plain
:class:`dict`. Data params may be :class:`array.array` or numpy arrays.

Where the conventions come from
-------------------------------

CRFS does not publish how every node model encodes its data. The defaults below are the encoding
the simulated node (:mod:`ncplib.node`) documents; each one is an argument, so data from a node
that encodes differently is converted by passing that node's values.

- ``PDAT`` (data u8): one value per bin, in half-dB steps below the reference level:
  ``level_dBm = RLEV - PDAT / 2`` (``scale=-0.5``, ``offset`` = the reply's ``RLEV``).
- Bins: ``NBIN`` equal bins from ``FSTA`` to ``FSTP`` (MHz); a bin's frequency is its centre.
  A u8 array is padded with up to 3 zero bytes on the wire, so only the first ``NBIN`` values
  are bins.
- ``DIQT`` (data i16): I and Q interleaved. Full scale is 1.0: each value is divided by 32768
  (``scale=1/32768``), the convention of SigMF's ``ci16`` readers, so every value falls in
  [-1, 1).
- Sample rate: the digitiser's 62.5 MHz divided by ``DECI`` (``base_rate=62.5e6``).
- Centre frequency: ``FCTR`` (MHz) plus ``FCTM`` (millihertz) when the reply has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

try:
    import numpy as np
    import numpy.typing as npt
except ImportError as ex:  # pragma: no cover - numpy is an extra
    raise ImportError("ncplib.units needs numpy: pip install 'ncplib[numpy]'") from ex

from ncplib import _signal

__all__ = [
    "Sweep",
    "IQCapture",
    "sweep_frequencies",
    "sweep_levels",
    "sweep",
    "iq_samples",
    "iq_sample_rate",
    "iq_centre_frequency",
    "iq_capture",
    "is_sweep",
    "is_iq_capture",
    "PDAT_SCALE_DB",
    "IQ_SCALE",
    "IQ_BASE_RATE_HZ",
]

#: The default ``scale`` of :func:`sweep_levels`: dB per ``PDAT`` step, -0.5 (negative: a
#: larger value is a lower level), the simulated node's encoding (``RLEV - PDAT / 2`` dBm).
PDAT_SCALE_DB: float = -0.5
#: The default ``scale`` of :func:`iq_samples`: the multiplier, 1/32768, from ``DIQT`` i16
#: integers to floats of full scale 1.0 (SigMF's ``ci16`` convention).
IQ_SCALE: float = 1.0 / 32768
#: The default ``base_rate`` of :func:`iq_sample_rate`: the digitiser's sample rate before
#: decimation, 62.5e6 Hz (the sample rate is this divided by ``DECI``).
IQ_BASE_RATE_HZ: float = _signal.IQ_SAMPLE_RATE_HZ

_MHZ = 1e6
_MILLIHERTZ = 1e-3


def _param(params: Mapping[str, Any], name: str, what: str) -> Any:
    try:
        return params[name]
    except KeyError:
        raise ValueError(f"not {what}: no {name} param") from None


def _number(params: Mapping[str, Any], name: str, what: str) -> float:
    value = _param(params, name, what)
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    return float(value)


def _timestamp(params: Mapping[str, Any]) -> datetime | None:
    stamp = getattr(params, "packet_timestamp", None)
    return stamp if isinstance(stamp, datetime) else None


def is_sweep(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` look like a sweep reply (they have ``PDAT``, ``FSTA`` and ``FSTP``)."""
    return "PDAT" in params and "FSTA" in params and "FSTP" in params


def is_iq_capture(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` look like an I/Q capture reply (they have ``DIQT`` and ``FCTR``)."""
    return "DIQT" in params and "FCTR" in params


def _bins(params: Mapping[str, Any], bins: int | None) -> int:
    if bins is None:
        value = _param(params, "NBIN", "a sweep (pass bins= when the node sends no NBIN)")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"NBIN must be an integer, not {value!r}")
        bins = int(value)
    if bins < 1:
        raise ValueError(f"a sweep has at least 1 bin, not {bins}")
    return bins


def sweep_frequencies(params: Mapping[str, Any], *, bins: int | None = None) -> npt.NDArray[np.float64]:
    """
    The centre frequency of each bin of a sweep.

    :param params: The sweep reply: ``FSTA`` and ``FSTP`` (MHz) and ``NBIN``.
    :param bins: The number of bins, for nodes that send no ``NBIN``; default ``NBIN``.
    :raises ValueError: if a param is missing or not a number, or ``FSTP`` is not above ``FSTA``.
    :returns: float64 array of ``NBIN`` frequencies in Hz, ascending:
        ``FSTA + (k + 0.5) * (FSTP - FSTA) / NBIN`` for bin ``k``.
    """
    fsta = _number(params, "FSTA", "a sweep") * _MHZ
    fstp = _number(params, "FSTP", "a sweep") * _MHZ
    if not fstp > fsta:
        raise ValueError(f"FSTP ({fstp / _MHZ:g} MHz) must be above FSTA ({fsta / _MHZ:g} MHz)")
    count = _bins(params, bins)
    spacing = (fstp - fsta) / count
    return fsta + (np.arange(count, dtype=np.float64) + 0.5) * spacing


def sweep_levels(
    params: Mapping[str, Any],
    *,
    scale: float = PDAT_SCALE_DB,
    offset: float | None = None,
    bins: int | None = None,
) -> npt.NDArray[np.float32]:
    """
    The level of each bin of a sweep: ``offset + scale * PDAT``.

    :param params: The sweep reply: ``PDAT``, ``NBIN`` and (for the default offset) ``RLEV``.
    :param float scale: dB per ``PDAT`` step; default -0.5, the simulated node's encoding.
    :param offset: The level of ``PDAT == 0`` in dBm; default the reply's ``RLEV``.
    :param bins: The number of bins, for nodes that send no ``NBIN``; default ``NBIN``.
    :raises ValueError: if a param is missing or invalid, or ``PDAT`` holds fewer than ``NBIN``
        values.
    :returns: float32 array of ``NBIN`` levels in dBm; the padding after the last bin of a u8
        ``PDAT`` is left out.
    """
    count = _bins(params, bins)
    pdat = np.asarray(_param(params, "PDAT", "a sweep"))
    if pdat.ndim != 1 or pdat.dtype.kind not in "uif":
        raise ValueError(f"PDAT must be a 1-D numeric array, not {pdat.dtype} of shape {pdat.shape}")
    if len(pdat) < count:
        raise ValueError(f"PDAT holds {len(pdat)} values, fewer than the {count} bins of NBIN")
    base = _number(params, "RLEV", "a sweep") if offset is None else float(offset)
    levels: npt.NDArray[np.float32] = pdat[:count].astype(np.float32)
    levels *= np.float32(scale)
    levels += np.float32(base)
    return levels


@dataclass(frozen=True)
class Sweep:
    """One spectrum sweep in physical units."""

    #: float64 array of bin centre frequencies, Hz.
    frequencies: npt.NDArray[np.float64]
    #: float32 array of levels, dBm, one per frequency.
    levels: npt.NDArray[np.float32]
    #: When the node sent it (the packet timestamp, UTC), if known.
    timestamp: datetime | None


def sweep(
    params: Mapping[str, Any],
    *,
    scale: float = PDAT_SCALE_DB,
    offset: float | None = None,
    bins: int | None = None,
) -> Sweep:
    """
    A sweep reply in physical units: :func:`sweep_frequencies` and :func:`sweep_levels` together.

    Takes the arguments and raises the errors of :func:`sweep_levels`. The timestamp is the
    field's ``packet_timestamp`` when ``params`` is a received or recorded field.
    """
    return Sweep(
        sweep_frequencies(params, bins=bins),
        sweep_levels(params, scale=scale, offset=offset, bins=bins),
        _timestamp(params),
    )


def iq_samples(params: Mapping[str, Any], *, scale: float = IQ_SCALE) -> npt.NDArray[np.complex64]:
    """
    The complex samples of an I/Q capture: ``(I + jQ) * scale``.

    :param params: The capture reply: ``DIQT`` (data i16, I and Q interleaved). When it has
        ``SAMP``, only the first ``SAMP`` pairs are samples.
    :param float scale: Multiplier per integer; default ``1/32768`` (full scale 1.0).
    :raises ValueError: if ``DIQT`` is missing, not a 1-D integer array, or holds fewer values
        than ``2 * SAMP``.
    :returns: complex64 array of samples.
    """
    diqt = np.asarray(_param(params, "DIQT", "an I/Q capture"))
    if diqt.ndim != 1 or diqt.dtype.kind not in "iu":
        raise ValueError(f"DIQT must be a 1-D integer array, not {diqt.dtype} of shape {diqt.shape}")
    count = len(diqt) // 2
    samp = params.get("SAMP")
    if isinstance(samp, int) and not isinstance(samp, bool):
        if 2 * samp > len(diqt):
            raise ValueError(f"DIQT holds {len(diqt)} values, fewer than 2 * SAMP ({2 * samp})")
        count = int(samp)
    pairs = diqt[: 2 * count].astype(np.float32).reshape(count, 2)
    samples = np.empty(count, dtype=np.complex64)
    samples.real = pairs[:, 0]
    samples.imag = pairs[:, 1]
    samples *= np.float32(scale)
    return samples


def iq_sample_rate(params: Mapping[str, Any], *, base_rate: float = IQ_BASE_RATE_HZ) -> float:
    """
    The sample rate of an I/Q capture: ``base_rate / DECI``.

    :param params: The capture reply, with ``DECI`` (decimation, at least 1).
    :param float base_rate: The digitiser's rate before decimation, Hz; default 62.5 MHz, the
        simulated node's.
    :raises ValueError: if ``DECI`` is missing, not a number or below 1.
    :returns: Samples per second, Hz.
    """
    deci = _number(params, "DECI", "an I/Q capture")
    if not deci >= 1:
        raise ValueError(f"DECI must be at least 1, not {deci:g}")
    return base_rate / deci


def iq_centre_frequency(params: Mapping[str, Any]) -> float:
    """
    The centre frequency of an I/Q capture: ``FCTR`` MHz plus ``FCTM`` millihertz when present.

    :raises ValueError: if ``FCTR`` is missing, or it or ``FCTM`` is not a number.
    :returns: Hz.
    """
    centre = _number(params, "FCTR", "an I/Q capture") * _MHZ
    if "FCTM" in params:
        centre += _number(params, "FCTM", "an I/Q capture") * _MILLIHERTZ
    return centre


@dataclass(frozen=True)
class IQCapture:
    """One I/Q capture in physical units."""

    #: complex64 array of samples, full scale 1.0.
    samples: npt.NDArray[np.complex64]
    #: Samples per second, Hz.
    sample_rate: float
    #: Centre frequency, Hz.
    centre_frequency: float
    #: When the node sent it (the packet timestamp, UTC), if known.
    timestamp: datetime | None


def iq_capture(
    params: Mapping[str, Any], *, scale: float = IQ_SCALE, base_rate: float = IQ_BASE_RATE_HZ
) -> IQCapture:
    """
    An I/Q capture reply in physical units: :func:`iq_samples`, :func:`iq_sample_rate` and
    :func:`iq_centre_frequency` together; raises their errors.
    """
    return IQCapture(
        iq_samples(params, scale=scale),
        iq_sample_rate(params, base_rate=base_rate),
        iq_centre_frequency(params),
        _timestamp(params),
    )
