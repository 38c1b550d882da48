"""
Synthetic radio scene for the simulated node
============================================

A fixed set of transmitters (FM broadcast, PMR, ISM, DVB-T, GSM, LTE, Wi-Fi) over a thermal noise
floor, plus one carrier whose frequency drifts slowly up and down around 450 MHz and one that
switches on and off, so that a waterfall of successive sweeps shows structure.

Two renderings of the same scene: a power spectrum (``SWEP``) and complex baseband samples
(``TIME``). numpy is used when it is installed; without it the same scene is computed in pure
Python (slower, but the results have the same shape, types and statistics).
"""

from __future__ import annotations

import array
import math
import random
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    np = None  # type: ignore[assignment]

__all__ = [
    "Carrier",
    "CARRIERS",
    "DRIFT_CENTRE_MHZ",
    "DRIFT_SPAN_MHZ",
    "DRIFT_PERIOD_S",
    "IQ_SAMPLE_RATE_HZ",
    "Scene",
    "drift_frequency",
    "numpy_available",
]

#: Sample rate of the simulated digitiser before decimation: 62.5 MHz.
IQ_SAMPLE_RATE_HZ = 62.5e6
#: Receiver noise figure, dB. The noise floor is ``-174 dBm/Hz + 10 log10(RESB) + NF``.
NOISE_FIGURE_DB = 12.0
#: Standard deviation of the noise floor's bin-to-bin fluctuation, dB.
NOISE_RIPPLE_DB = 2.0
#: Input power that reaches the full scale of the 16-bit I/Q samples, dBm.
IQ_FULL_SCALE_DBM = -30.0
IQ_FULL_SCALE = 32767

#: The drifting carrier moves sinusoidally around this frequency (MHz)...
DRIFT_CENTRE_MHZ = 450.0
#: ... this far either side of it (MHz) ...
DRIFT_SPAN_MHZ = 30.0
#: ... once every this many seconds.
DRIFT_PERIOD_S = 12.0
DRIFT_POWER_DBM = -48.0
DRIFT_BANDWIDTH_MHZ = 0.025


@dataclass(frozen=True)
class Carrier:
    """One simulated transmitter."""

    #: Centre frequency, MHz.
    frequency: float
    #: Total power, dBm.
    power: float
    #: Occupied bandwidth, MHz.
    bandwidth: float
    #: ``"tone"`` (a bell-shaped line) or ``"flat"`` (a flat-topped channel such as DVB-T or LTE).
    shape: str = "tone"
    #: If non-zero, the carrier is on for the first half of every period of this many seconds.
    burst_period: float = 0.0

    def is_on(self, t: float) -> bool:
        """Whether the carrier transmits at time ``t`` (seconds since the node started)."""
        if not self.burst_period:
            return True
        return (t % self.burst_period) < self.burst_period / 2


#: The fixed transmitters of the scene.
CARRIERS: tuple[Carrier, ...] = (
    # FM broadcast.
    Carrier(88.9, -45.0, 0.18),
    Carrier(94.6, -38.0, 0.18),
    Carrier(97.3, -52.0, 0.18),
    Carrier(101.1, -42.0, 0.18),
    Carrier(105.8, -56.0, 0.18),
    # UHF: PMR, an ISM-band device that transmits in bursts, PMR446, two DVB-T multiplexes.
    Carrier(410.5, -62.0, 0.0125),
    Carrier(433.92, -55.0, 0.2, burst_period=2.0),
    Carrier(446.05, -66.0, 0.0125),
    Carrier(474.0, -50.0, 7.6, "flat"),
    Carrier(490.0, -58.0, 7.6, "flat"),
    # GSM 900 downlink carriers.
    Carrier(936.4, -55.0, 0.2),
    Carrier(942.8, -61.0, 0.2),
    Carrier(951.6, -50.0, 0.2),
    # LTE 1800 and 2.4 GHz Wi-Fi.
    Carrier(1825.0, -62.0, 20.0, "flat"),
    Carrier(2437.0, -60.0, 20.0, "flat", burst_period=0.5),
)


def drift_frequency(t: float) -> float:
    """
    The frequency of the drifting carrier at time ``t``.

    :param float t: Seconds since the node started.
    :returns: The frequency in MHz.
    """
    return DRIFT_CENTRE_MHZ + DRIFT_SPAN_MHZ * math.sin(2 * math.pi * t / DRIFT_PERIOD_S)


def numpy_available() -> bool:
    """Whether numpy can be used (it is installed)."""
    return np is not None


def _noise_floor_dbm(bandwidth_hz: float) -> float:
    return -174.0 + 10 * math.log10(bandwidth_hz) + NOISE_FIGURE_DB


class Scene:
    """
    The simulated radio environment.

    :param use_numpy: Compute with numpy (``True``), in pure Python (``False``), or with numpy when
        it is installed (``None``).
    :param seed: Seed for the noise, for reproducible output.
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    """

    def __init__(self, *, use_numpy: bool | None = None, seed: int | None = None) -> None:
        if use_numpy is None:
            use_numpy = np is not None
        elif use_numpy and np is None:
            raise ImportError("numpy is not installed")
        self.use_numpy = use_numpy
        self._random = random.Random(seed)
        self._rng: Any = np.random.default_rng(seed) if use_numpy else None

    def carriers(self, t: float) -> list[Carrier]:
        """The carriers on the air at time ``t`` (seconds since the node started)."""
        on = [carrier for carrier in CARRIERS if carrier.is_on(t)]
        on.append(Carrier(drift_frequency(t), DRIFT_POWER_DBM, DRIFT_BANDWIDTH_MHZ))
        return on

    # Spectrum.

    def spectrum_dbm(self, fsta: float, fstp: float, bins: int, t: float) -> Any:
        """
        The power in each of ``bins`` equal bins from ``fsta`` to ``fstp`` MHz, in dBm.

        :returns: A float64 numpy array, or an ``array.array("d")`` in pure-Python mode.
        """
        spacing = (fstp - fsta) / bins  # MHz per bin
        rbw_hz = spacing * 1e6
        floor = _noise_floor_dbm(rbw_hz)
        carriers = self.carriers(t)
        if self.use_numpy:
            linear = 10 ** ((floor + self._rng.normal(0.0, NOISE_RIPPLE_DB, bins)) / 10)
            for carrier, lo, hi, peak, sigma, half in self._shapes(carriers, fsta, spacing, bins):
                f = fsta + (np.arange(lo, hi) + 0.5) * spacing
                distance = np.abs(f - carrier.frequency) - half
                linear[lo:hi] += peak * np.exp(-0.5 * (np.maximum(distance, 0.0) / sigma) ** 2)
            return 10 * np.log10(linear)
        gauss = self._random.gauss
        linear_list = [10 ** ((floor + gauss(0.0, NOISE_RIPPLE_DB)) / 10) for _ in range(bins)]
        for carrier, lo, hi, peak, sigma, half in self._shapes(carriers, fsta, spacing, bins):
            for k in range(lo, hi):
                distance = max(abs(fsta + (k + 0.5) * spacing - carrier.frequency) - half, 0.0)
                linear_list[k] += peak * math.exp(-0.5 * (distance / sigma) ** 2)
        return array.array("d", (10 * math.log10(p) for p in linear_list))

    @staticmethod
    def _shapes(
        carriers: list[Carrier], fsta: float, spacing: float, bins: int
    ) -> list[tuple[Carrier, int, int, float, float, float]]:
        """For each carrier that shows in the sweep: its bin range, peak power (mW) and shape."""
        shapes = []
        for carrier in carriers:
            # Power per bin: a bin narrower than the signal catches only its share of the power.
            peak_dbm = carrier.power + 10 * math.log10(min(1.0, spacing / carrier.bandwidth))
            if carrier.shape == "flat":
                half = carrier.bandwidth / 2
                sigma = max(spacing * 0.5, carrier.bandwidth * 0.02)
            else:
                half = 0.0
                sigma = max(carrier.bandwidth / 2.355, spacing * 0.5)
            reach = half + 6 * sigma
            lo = max(0, math.floor((carrier.frequency - reach - fsta) / spacing))
            hi = min(bins, math.ceil((carrier.frequency + reach - fsta) / spacing) + 1)
            if lo < hi:
                shapes.append((carrier, lo, hi, 10 ** (peak_dbm / 10), sigma, half))
        return shapes

    def sweep(self, fsta: float, fstp: float, bins: int, rlev: float, t: float) -> Any:
        """
        A sweep as NCP ``PDAT`` data: each bin's power in half-dB steps below the reference level.

        ``power_dBm = rlev - PDAT / 2``, so 0 is the reference level and 255 is 127.5 dB below it;
        powers outside that range are clipped.

        :param float fsta: Start frequency, MHz.
        :param float fstp: Stop frequency, MHz (greater than ``fsta``).
        :param int bins: The number of bins, at least 1.
        :param float rlev: Reference level, dBm.
        :param float t: Seconds since the node started.
        :returns: A uint8 numpy array, or an ``array.array("B")`` in pure-Python mode.
        """
        dbm = self.spectrum_dbm(fsta, fstp, bins, t)
        if self.use_numpy:
            return np.clip(np.rint((rlev - dbm) * 2), 0, 255).astype(np.uint8)
        return array.array("B", (min(255, max(0, round((rlev - p) * 2))) for p in dbm))

    # I/Q samples.

    def iq(self, fctr: float, samples: int, decimation: int, t: float) -> Any:
        """
        Complex baseband samples centred on ``fctr`` MHz as interleaved 16-bit I and Q.

        The sample rate is 62.5 MHz divided by ``decimation``; carriers within 40 % of it either side
        of the centre appear as tones over Gaussian noise.

        :param float fctr: Centre frequency, MHz.
        :param int samples: The number of complex samples, at least 1.
        :param int decimation: The decimation factor, at least 1.
        :param float t: Seconds since the node started.
        :returns: An int16 numpy array of ``2 * samples`` values (I, Q, I, Q, ...), or an
            ``array.array("h")`` in pure-Python mode.
        """
        rate = IQ_SAMPLE_RATE_HZ / decimation
        noise_rms = IQ_FULL_SCALE * 10 ** ((_noise_floor_dbm(rate) - IQ_FULL_SCALE_DBM) / 20)
        sigma = noise_rms / math.sqrt(2)
        tones = []
        for carrier in self.carriers(t):
            offset_hz = (carrier.frequency - fctr) * 1e6
            if abs(offset_hz) < 0.4 * rate:
                amplitude = IQ_FULL_SCALE * 10 ** ((carrier.power - IQ_FULL_SCALE_DBM) / 20)
                tones.append(
                    (2 * math.pi * offset_hz / rate, amplitude, self._random.uniform(0, 2 * math.pi))
                )
        if self.use_numpy:
            n = np.arange(samples)
            signal = self._rng.normal(0.0, sigma, samples) + 1j * self._rng.normal(0.0, sigma, samples)
            for step, amplitude, phase in tones:
                signal += amplitude * np.exp(1j * (step * n + phase))
            out = np.empty(2 * samples, dtype=np.int16)
            out[0::2] = np.clip(np.rint(signal.real), -32768, 32767)
            out[1::2] = np.clip(np.rint(signal.imag), -32768, 32767)
            return out
        gauss = self._random.gauss
        cos = math.cos
        sin = math.sin
        values = array.array("h", bytes(4 * samples))
        for k in range(samples):
            i = gauss(0.0, sigma)
            q = gauss(0.0, sigma)
            for step, amplitude, phase in tones:
                angle = step * k + phase
                i += amplitude * cos(angle)
                q += amplitude * sin(angle)
            values[2 * k] = min(32767, max(-32768, round(i)))
            values[2 * k + 1] = min(32767, max(-32768, round(q)))
        return values
