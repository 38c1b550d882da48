"""Physical units: sweeps to frequencies and dBm, I/Q captures to complex samples, as nodes encode them."""

from __future__ import annotations

import array
import functools
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest

from ncplib import _signal, units
from ncplib.packets import decode_packet, encode_packet

B = functools.partial(array.array, "B")
STAMP = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=timezone.utc)


def through_the_wire(params: dict[str, Any], use_numpy: bool) -> dict[str, Any]:
    """``params`` as a receiver decodes them (arrays padded to whole words, as on the wire)."""
    data = encode_packet("DSPL", 1, STAMP, b"", [("SWEP", 1, list(params.items()))])
    return dict(decode_packet(data, use_numpy)[4][0][2])


@pytest.mark.parametrize("use_numpy", [False, True])
def test_sweep_has_exactly_nbin_bins_never_the_padding(use_numpy: bool) -> None:
    scene = _signal.Scene(use_numpy=True, seed=1)
    bins = 1001  # Not a multiple of 4: the u8 array arrives with 3 padding bytes.
    pdat = scene.sweep(400.0, 500.0, bins, -20.0, 0.0)
    params = through_the_wire(
        {"PDAT": pdat, "FSTA": 400, "FSTP": 500, "RESB": 99900, "RLEV": -20, "NBIN": bins}, use_numpy
    )
    assert len(params["PDAT"]) == 1004
    frequencies = units.sweep_frequencies(params)
    levels = units.sweep_levels(params)
    assert frequencies.dtype == np.float64 and frequencies.shape == (bins,)
    assert levels.dtype == np.float32 and levels.shape == (bins,)
    spacing = 100e6 / bins
    assert frequencies[0] == pytest.approx(400e6 + spacing / 2)
    assert frequencies[-1] == pytest.approx(500e6 - spacing / 2)
    np.testing.assert_allclose(np.diff(frequencies), spacing)
    np.testing.assert_array_equal(levels, -20 - pdat.astype(np.float32) / 2)


def test_levels_follow_the_simulated_scene_within_a_quarter_db() -> None:
    # The node encodes power as RLEV - PDAT / 2 in half-dB steps: decoding gives the scene's power
    # back to within rounding, wherever it was not clipped.
    bins, rlev = 2000, -20.0
    truth = _signal.Scene(use_numpy=True, seed=7).spectrum_dbm(400.0, 500.0, bins, 3.0)
    pdat = _signal.Scene(use_numpy=True, seed=7).sweep(400.0, 500.0, bins, rlev, 3.0)
    levels = units.sweep_levels({"PDAT": pdat, "FSTA": 400, "FSTP": 500, "RLEV": rlev, "NBIN": bins})
    unclipped = (truth <= rlev) & (truth >= rlev - 127.5)
    assert unclipped.sum() > bins // 2
    assert np.abs(levels[unclipped] - truth[unclipped]).max() <= 0.25 + 1e-4


def test_sweep_scale_offset_and_bins_are_arguments() -> None:
    params = {"PDAT": array.array("B", [0, 10, 20, 0]), "FSTA": 1.0, "FSTP": 2.0, "RLEV": -20}
    with pytest.raises(ValueError, match="NBIN"):
        units.sweep_levels(params)
    levels = units.sweep_levels(params, bins=3, scale=-1.0, offset=10.0)
    np.testing.assert_array_equal(levels, [10.0, 0.0, -10.0])
    assert units.sweep_frequencies(params, bins=2).tolist() == [1.25e6, 1.75e6]
    sweep = units.sweep({**params, "NBIN": 3})
    assert sweep.levels.tolist() == [-20.0, -25.0, -30.0]
    assert sweep.timestamp is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"PDAT": array.array("B", [1, 2]), "FSTA": 1, "FSTP": 2, "RLEV": 0, "NBIN": 3},
            "fewer than the 3 bins",
        ),
        ({"PDAT": array.array("B", [1]), "FSTA": 2, "FSTP": 1, "RLEV": 0, "NBIN": 1}, "must be above FSTA"),
        ({"PDAT": array.array("B", [1]), "FSTA": 1, "FSTP": 2, "RLEV": 0, "NBIN": 0}, "at least 1 bin"),
        (
            {"PDAT": array.array("B", [1]), "FSTA": "1", "FSTP": 2, "RLEV": 0, "NBIN": 1},
            "FSTA must be a number",
        ),
        ({"FSTA": 1, "FSTP": 2, "RLEV": 0, "NBIN": 1}, "^not a sweep: no PDAT"),
    ],
)
def test_bad_sweeps_raise_value_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        units.sweep(params)


@pytest.mark.parametrize("use_numpy", [False, True])
def test_iq_samples_are_i_plus_jq_at_full_scale_one(use_numpy: bool) -> None:
    diqt = array.array("h", [0, 0, 32767, -32768, -16384, 16384, 1, -1])
    params = through_the_wire({"DIQT": diqt, "FCTR": 446, "SAMP": 4, "DECI": 8}, use_numpy)
    capture = units.iq_capture(params)
    assert capture.samples.dtype == np.complex64
    expected = np.array([0, 32767 / 32768 - 1j, -0.5 + 0.5j, (1 - 1j) / 32768], dtype=np.complex64)
    np.testing.assert_array_equal(capture.samples, expected)
    assert capture.sample_rate == 62.5e6 / 8
    assert capture.centre_frequency == 446e6
    assert np.abs(capture.samples).max() <= np.sqrt(2)


def test_iq_from_the_simulated_node_matches_its_samples() -> None:
    diqt = _signal.Scene(use_numpy=True, seed=3).iq(446.0, 1000, 8, 1.0)
    samples = units.iq_samples({"DIQT": diqt, "SAMP": 1000})
    np.testing.assert_array_equal(samples.real * 32768, diqt[0::2])
    np.testing.assert_array_equal(samples.imag * 32768, diqt[1::2])


def test_centre_frequency_adds_fctm_millihertz_and_rates_take_a_base() -> None:
    assert units.iq_centre_frequency({"FCTR": 446, "FCTM": 250}) == 446e6 + 0.25
    assert units.iq_centre_frequency({"FCTR": 100.5}) == 100.5e6
    assert units.iq_sample_rate({"DECI": 4}, base_rate=100e6) == 25e6
    assert units.iq_samples({"DIQT": array.array("h", [100, 200])}, scale=0.5).tolist() == [50 + 100j]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"FCTR": 1, "DECI": 1}, "^not an I/Q capture: no DIQT"),
        ({"DIQT": array.array("h", [1, 2]), "FCTR": 1, "DECI": 0}, "DECI must be at least 1"),
        ({"DIQT": array.array("h", [1, 2]), "FCTR": 1, "DECI": 1, "SAMP": 2}, "fewer than 2 \\* SAMP"),
        ({"DIQT": array.array("f", [1, 2]), "FCTR": 1, "DECI": 1}, "integer array"),
        ({"DIQT": array.array("h", [1, 2]), "DECI": 1}, "^not an I/Q capture: no FCTR"),
    ],
)
def test_bad_iq_captures_raise_value_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        units.iq_capture(params)


def test_public_names_are_exported_and_documented() -> None:
    import ast
    import pathlib
    import types

    public = {
        name
        for name, value in vars(units).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
        and getattr(value, "__module__", units.__name__) == units.__name__
    }
    assert public == set(units.__all__)
    # Each constant has a #: comment (what Sphinx documents) and appears in the API reference.
    source = pathlib.Path(units.__file__).read_text().splitlines()
    reference = (pathlib.Path(__file__).parents[1] / "docs" / "recording.rst").read_text()
    for node in ast.parse("\n".join(source)).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            name = getattr(target, "id", "")
            if name in units.__all__:
                assert source[node.lineno - 2].lstrip().startswith("#:"), name
                assert f".. autodata:: ncplib.units.{name}" in reference, name
