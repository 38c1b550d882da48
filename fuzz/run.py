"""
Runs the fuzz targets for a bounded time each and reports what they did.

Usage: ``python fuzz/run.py --target NAME|all --seconds N [--work-dir DIR] [--max-len BYTES]``

Each target runs in a subprocess of its own under libFuzzer (``-max_total_time=N``), starting
from the seed corpus built from ``tests/vectors`` plus whatever an earlier run kept in
``WORK/corpus/TARGET``. Printed per target: executions, executions per second, coverage (libFuzzer
``cov`` edges and ``ft`` features, at start and end) and corpus size. Crash inputs are saved as
``WORK/crash-TARGET-*``. Exits with 1 if any target crashed or failed, else 0; a target that
cannot run here (no compiled codec) is reported as skipped.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_seeds  # noqa: E402

TARGETS = ("decode_pure", "decode_compiled", "framer", "differential")
UNAVAILABLE = 3  # fuzz_targets.py's exit code when a target cannot run here

_STATUS = re.compile(r"^#(\d+)\s+(INITED|DONE|NEW|REDUCE|pulse|RELOAD)\s+(.*)$")
_FIGURE = re.compile(r"(cov|ft|exec/s): (\d+)")
_CORPUS = re.compile(r"corp: (\d+)/")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"(?:Test unit written to|written to) (\S+)")


@dataclass
class Outcome:
    """What one target's run did."""

    target: str
    status: str = "ok"
    executions: int | None = None
    exec_per_second: int | None = None
    cov_start: int | None = None
    cov_end: int | None = None
    ft_start: int | None = None
    ft_end: int | None = None
    corpus: int | None = None
    artifacts: list[str] = field(default_factory=list)
    detail: str = ""


def parse(outcome: Outcome, output: str) -> None:
    """Fills in the figures from libFuzzer's output."""
    for line in output.splitlines():
        status = _STATUS.match(line)
        if status:
            figures = dict(_FIGURE.findall(status.group(3)))
            corpus = _CORPUS.search(status.group(3))
            if status.group(2) == "INITED":
                outcome.cov_start = int(figures.get("cov", 0))
                outcome.ft_start = int(figures.get("ft", 0))
            if "cov" in figures:
                outcome.cov_end = int(figures["cov"])
                outcome.ft_end = int(figures.get("ft", 0))
            if "exec/s" in figures:
                outcome.exec_per_second = int(figures["exec/s"])
            if corpus:
                outcome.corpus = int(corpus.group(1))
            outcome.executions = int(status.group(1))
        stat = _STAT.match(line)
        if stat and stat.group(1) == "number_of_executed_units":
            outcome.executions = int(stat.group(2))
        elif stat and stat.group(1) == "average_exec_per_sec":
            outcome.exec_per_second = int(stat.group(2))
        artifact = _ARTIFACT.search(line)
        if artifact and "crash-" in artifact.group(1):
            outcome.artifacts.append(artifact.group(1))


def run_target(name: str, seconds: int, work: Path, max_len: int) -> Outcome:
    """Runs one target for ``seconds`` and returns its outcome."""
    seeds, framer_seeds = make_seeds.build(work / "corpus")
    corpus = work / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(HERE / "fuzz_targets.py"),
        name,
        f"-max_total_time={seconds}",
        f"-max_len={max_len}",
        "-timeout=30",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/crash-{name}-",
        str(corpus),
        str(framer_seeds if name == "framer" else seeds),
    ]
    outcome = Outcome(name)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
    except subprocess.TimeoutExpired:
        outcome.status = "FAILED"
        outcome.detail = "did not stop in time"
        return outcome
    output = result.stdout + result.stderr
    parse(outcome, output)
    if result.returncode == UNAVAILABLE:
        outcome.status = "skipped"
        outcome.detail = output.strip().splitlines()[-1] if output.strip() else ""
    elif result.returncode != 0 or outcome.artifacts:
        outcome.status = "CRASH" if outcome.artifacts else "FAILED"
        outcome.detail = _crash_detail(output)
    return outcome


def _crash_detail(output: str) -> str:
    """The Python exception and libFuzzer's summary of a crash, else the end of the output."""
    lines = [x for x in output.splitlines() if x.strip() and not x.startswith("INFO: Instrumenting")]
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line:
            return "\n".join(lines[i : i + 40])
    return "\n".join(lines[-25:])


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


def report(outcome: Outcome) -> str:
    """One line about an outcome (and the crash details, if any)."""
    if outcome.status == "skipped":
        return f"{outcome.target:16} skipped: {outcome.detail}"
    line = (
        f"{outcome.target:16} {outcome.status:7} executions={_figure(outcome.executions)} "
        f"exec/s={_figure(outcome.exec_per_second)} "
        f"cov={_figure(outcome.cov_start)}->{_figure(outcome.cov_end)} "
        f"ft={_figure(outcome.ft_start)}->{_figure(outcome.ft_end)} corpus={_figure(outcome.corpus)}"
    )
    if outcome.artifacts:
        line += "\n  crash input: " + ", ".join(outcome.artifacts)
    if outcome.status not in ("ok", "skipped") and outcome.detail:
        line += "\n" + "\n".join("  | " + x for x in outcome.detail.splitlines())
    return line


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, choices=[*TARGETS, "all"])
    parser.add_argument("--seconds", type=int, required=True, help="how long to run each target")
    parser.add_argument("--work-dir", type=Path, default=HERE, help="corpora and crash files (default fuzz/)")
    parser.add_argument("--max-len", type=int, default=8192, help="largest input libFuzzer makes")
    args = parser.parse_args(argv)
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in TARGETS if args.target == "all" else (args.target,):
        outcome = run_target(name, args.seconds, work, args.max_len)
        print(report(outcome), flush=True)
        failed |= outcome.status not in ("ok", "skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
