"""
The fuzz targets (fuzz/): a short run of each finds no crash, every seed passes their checks, and
those checks do catch a misbehaving codec or framer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("atheris")

RUNNER = Path(__file__).resolve().parent.parent / "fuzz" / "run.py"
if not RUNNER.exists():  # tests copied without the rest of the source tree
    pytest.skip("fuzz/ is not beside the tests", allow_module_level=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_fuzz_target_runs_briefly_without_a_crash(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--target", "all", "--seconds", "5", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for target in ("decode_pure", "framer"):
        line = next(x for x in lines if x.startswith(target))
        assert " ok " in line and "executions=-" not in line, line
    assert not list(tmp_path.glob("crash-*"))


def _fuzz_targets() -> Any:
    sys.path.insert(0, str(RUNNER.parent))
    try:
        import fuzz_targets
        import make_seeds
    finally:
        sys.path.remove(str(RUNNER.parent))
    return fuzz_targets, make_seeds


def test_every_seed_passes_every_target_checks() -> None:
    fuzz_targets, make_seeds = _fuzz_targets()
    seeds = make_seeds.vector_packets() + make_seeds.defect_packets()
    targets = ["decode_pure", "framer"]
    if fuzz_targets._codec is not None:
        targets += ["decode_compiled", "differential"]
    for name in targets:
        for seed in seeds:
            data = bytes(fuzz_targets.FRAMER_CONTROL_SIZE) + seed * 2 if name == "framer" else seed
            fuzz_targets.TARGETS[name](data)


def test_targets_report_an_exception_other_than_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz_targets, make_seeds = _fuzz_targets()

    def broken(buf: Any, use_numpy: bool = False) -> Any:
        raise IndexError("out of range")

    monkeypatch.setattr(fuzz_targets._pycodec, "decode_packet", broken)
    with pytest.raises(IndexError):
        fuzz_targets.decode_pure(make_seeds.vector_packets()[0])


def test_framer_target_reports_a_lost_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz_targets, make_seeds = _fuzz_targets()
    reader_class = fuzz_targets.framing.PacketReader

    class LossyReader(reader_class):  # type: ignore[misc,valid-type]
        def read_packets(self) -> list[Any]:
            return list(reader_class.read_packets(self))[1:]

    monkeypatch.setattr(fuzz_targets.framing, "PacketReader", LossyReader)
    packet = make_seeds.vector_packets()[0]
    with pytest.raises(AssertionError, match="other packets"):
        fuzz_targets.framer(bytes(fuzz_targets.FRAMER_CONTROL_SIZE) + packet)
