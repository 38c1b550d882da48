"""The synthetic radio scene behind the simulated node: both the numpy and pure-Python paths."""

from __future__ import annotations

import array
import statistics

import pytest

from ncplib import _signal
from ncplib._signal import IQ_SAMPLE_RATE_HZ, Scene, drift_frequency

np = pytest.importorskip("numpy")

MODES = [True, False]


def as_list(values: object) -> list[float]:
    """Plain Python numbers (numpy uint8 scalars would overflow in arithmetic)."""
    return [float(value) for value in values]  # type: ignore[attr-defined]


@pytest.mark.parametrize("use_numpy", MODES)
def test_sweep_types(use_numpy: bool) -> None:
    pdat = Scene(use_numpy=use_numpy, seed=3).sweep(400, 500, 1000, -20, 0.0)
    if use_numpy:
        assert isinstance(pdat, np.ndarray)
        assert pdat.dtype == np.uint8
    else:
        assert isinstance(pdat, array.array)
        assert pdat.typecode == "B"
    assert len(pdat) == 1000


def test_both_paths_draw_the_same_scene() -> None:
    fast = Scene(use_numpy=True, seed=3).sweep(400, 500, 1000, -20, 5.0)
    slow = Scene(use_numpy=False, seed=3).sweep(400, 500, 1000, -20, 5.0)
    assert abs(statistics.median(as_list(fast)) - statistics.median(as_list(slow))) <= 2
    # The same carriers in the same bins, whatever the noise.
    strong_fast = {k for k, value in enumerate(as_list(fast)) if value < 140}
    strong_slow = {k for k, value in enumerate(as_list(slow)) if value < 140}
    assert strong_fast
    assert len(strong_fast ^ strong_slow) <= 0.02 * len(strong_fast | strong_slow)


@pytest.mark.parametrize("use_numpy", MODES)
@pytest.mark.parametrize("t", [0.0, 3.0, 9.0])
def test_the_drifting_carrier_moves(use_numpy: bool, t: float) -> None:
    fsta, fstp, bins = 415.0, 485.0, 1400
    pdat = as_list(Scene(use_numpy=use_numpy, seed=1).sweep(fsta, fstp, bins, -20, t))
    strongest = min(range(bins), key=pdat.__getitem__)
    frequency = fsta + (strongest + 0.5) * (fstp - fsta) / bins
    assert frequency == pytest.approx(drift_frequency(t), abs=0.1)


def test_drift_covers_its_span() -> None:
    frequencies = [drift_frequency(t / 10) for t in range(int(_signal.DRIFT_PERIOD_S * 10))]
    assert max(frequencies) == pytest.approx(_signal.DRIFT_CENTRE_MHZ + _signal.DRIFT_SPAN_MHZ, abs=0.1)
    assert min(frequencies) == pytest.approx(_signal.DRIFT_CENTRE_MHZ - _signal.DRIFT_SPAN_MHZ, abs=0.1)


def test_bursty_carrier_switches() -> None:
    scene = Scene(use_numpy=True, seed=1)
    # 433.92 MHz is on during the first half of every 2 s.
    on = scene.sweep(433, 435, 40, -20, 0.5)
    off = scene.sweep(433, 435, 40, -20, 1.5)
    assert int(on.min()) < int(off.min()) - 30


@pytest.mark.parametrize("use_numpy", MODES)
def test_sweep_power_scale(use_numpy: bool) -> None:
    # Noise floor with 1 MHz bins: -174 + 60 + 12 = -102 dBm; RLEV -40: PDAT = 2 * 62 = 124.
    pdat = as_list(Scene(use_numpy=use_numpy, seed=1).sweep(1000, 1100, 100, -40, 0.0))
    assert 118 <= statistics.median(pdat) <= 130
    # A reference level far above everything clips to 255; far below clips to 0.
    assert set(as_list(Scene(use_numpy=use_numpy).sweep(1000, 1100, 100, 100, 0.0))) == {255}
    assert set(as_list(Scene(use_numpy=use_numpy).sweep(1000, 1100, 100, -200, 0.0))) == {0}


@pytest.mark.parametrize("use_numpy", MODES)
def test_iq_shows_a_tone_at_the_carrier_offset(use_numpy: bool) -> None:
    samples, decimation = 4096, 8
    # PMR446 carrier at 446.05 MHz, centre 1 MHz above it; at t=3 s the drifting carrier is far away.
    iq = Scene(use_numpy=use_numpy, seed=2).iq(447.05, samples, decimation, 3.0)
    values = np.asarray(iq, dtype=np.float64)
    assert len(values) == 2 * samples
    signal = values[0::2] + 1j * values[1::2]
    spectrum = np.abs(np.fft.fft(signal))
    rate = IQ_SAMPLE_RATE_HZ / decimation
    peak = np.fft.fftfreq(samples, 1 / rate)[int(np.argmax(spectrum))]
    assert peak == pytest.approx(-1e6, abs=2 * rate / samples)
    if use_numpy:
        assert iq.dtype == np.int16
    else:
        assert iq.typecode == "h"


def test_scene_refuses_numpy_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_signal, "np", None)
    with pytest.raises(ImportError):
        Scene(use_numpy=True)
    assert Scene().use_numpy is False
