"""
Fleet benchmark: many connections, one packet at a time each, into one collector process.

For each configuration (packet shape x connections x event loop) a fresh load generator
(``loadgen.py``) plays the nodes, and each collector connects to it in turn, measures a window
and exits. Collectors are scripts named ``collect_<name>.py`` beside this one (see
``collector.py`` for what one must do), picked with ``--collectors``: a name alone runs with our
interpreter, ``name:ref`` with the reference 6.1.0's, ``name:LABEL`` with our interpreter but the
ncplib source tree given as ``--tree LABEL=PATH`` (another version of ours: before and after a
change in one run; build its compiled codec there, or it runs the pure-Python one).
``floor`` is the bare-socket floor; every
other collector is also reported as CPU per field *above* the floor, the floor measured in the
same round. Rounds are repeated (``--repeat``) with the collectors' order rotated, and medians
reported.

Usage (from the repository root, with the project's interpreter)::

    .venv/bin/python bench/fleet/run.py            # the full matrix, about 10 minutes
    .venv/bin/python bench/fleet/run.py --quick    # 100 connections, sweeps, default loop
    .venv/bin/python bench/fleet/run.py --collectors floor,recv,recv:ref,fleet --connections 500
    .venv/bin/python bench/fleet/run.py --collectors floor,recv:before,recv --tree before=/tmp/before

Prints a table per configuration and writes every measurement to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from shapes import SHAPES  # noqa: E402


@dataclass(frozen=True)
class Collector:
    """A collector script and the library it runs with."""

    name: str
    library: str  # "ours", "ref" or the label of a --tree

    @classmethod
    def parse(cls, spec: str, trees: dict[str, str]) -> Collector:
        name, _, library = spec.partition(":")
        library = library or "ours"
        if library not in ("ours", "ref", *trees):
            raise SystemExit(f"unknown library {library!r} in {spec!r} (ours, ref or a --tree label)")
        if not (HERE / f"collect_{name}.py").exists():
            raise SystemExit(f"no collector script collect_{name}.py for {spec!r}")
        return cls(name, library)

    @property
    def label(self) -> str:
        return self.name if self.library == "ours" else f"{self.name}:{self.library}"


def reference_python() -> str:
    sys.path.insert(0, str(REPO))
    from tools.refenv import reference_python as find

    return str(find())


def uvloop_path() -> str:
    import uvloop

    return str(Path(uvloop.__file__).resolve().parents[1])


class Runner:
    def __init__(self, args: argparse.Namespace, collectors: list[Collector]) -> None:
        self.args = args
        self.ours = sys.executable
        self.ref = reference_python() if any(c.library == "ref" for c in collectors) else ""
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)
        self.env.setdefault("OPENBLAS_NUM_THREADS", "1")
        if "uvloop" in args.loops:
            self.env["FLEET_UVLOOP_PATH"] = uvloop_path()

    def round(self, shape: str, connections: int, loop: str, order: list[Collector]) -> dict[str, Any]:
        """Runs every collector once against one load generator."""
        command = [self.ours, str(HERE / "loadgen.py"), "--shape", shape]
        if self.args.rate is not None:
            command += ["--rate", str(self.args.rate)]
        generator = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(HERE), env=self.env
        )
        results: dict[str, Any] = {}
        try:
            assert generator.stdout is not None and generator.stdin is not None
            port = json.loads(generator.stdout.readline())["port"]
            for collector in order:
                results[collector.label] = self.collect(collector, port, shape, connections, loop)
            generator.stdin.close()
            results["loadgen"] = json.loads(generator.stdout.readline())
            generator.wait(30)
        finally:
            if generator.poll() is None:
                generator.kill()
                generator.wait()
        return results

    def collect(self, collector: Collector, port: int, shape: str, connections: int, loop: str) -> Any:
        python = self.ref if collector.library == "ref" else self.ours
        env = self.env
        if collector.library == "ref":
            env = {key: value for key, value in env.items() if not key.startswith("NCPLIB_")}
        elif collector.library != "ours":
            # Found before the editable install of ours (a finder appended to sys.meta_path).
            env = {**env, "PYTHONPATH": self.args.trees[collector.library]}
        command = [
            python, str(HERE / f"collect_{collector.name}.py"), "--port", str(port),
            "--connections", str(connections), "--shape", shape, "--duration", str(self.args.duration),
        ]  # fmt: skip
        if loop == "uvloop":
            command.append("--uvloop")
        if self.args.count_reads:
            command.append("--count-reads")
        done = subprocess.run(command, capture_output=True, cwd=str(HERE), env=env, timeout=300)
        lines = done.stdout.decode().strip().splitlines()
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stderr.decode()[-2000:])
            return {"error": f"exit {done.returncode}"}
        return json.loads(lines[-1])


# The share of one core from which a collector counts as saturated (see summarise).
SATURATED = 0.9


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ok(measured: dict[str, Any], label: str) -> bool:
    return label in measured and "error" not in measured[label]


def summarise(rounds: list[dict[str, Any]], labels: list[str], offered: float) -> list[dict[str, Any]]:
    """
    Medians per collector over the rounds. ``offered`` is the load in fields/s (0: flat out);
    a collector whose rate was more than 3 % off it in any round did not keep up (or caught up
    a backlog), and its CPU per field is not that of one field per wake-up. Nor is that of a
    collector that used :data:`SATURATED` of a core or more in a round: it kept up only by
    taking several packets per read (``--count-reads`` shows it).
    """
    rows = []
    for label in labels:
        ok = [r[label] for r in rounds if _ok(r, label)]
        above = [
            r[label]["cpu_us_per_field"] - r["floor"]["cpu_us_per_field"]
            for r in rounds
            if label != "floor" and _ok(r, label) and _ok(r, "floor")
        ]
        rows.append(
            {
                "collector": label,
                "runs": len(ok),
                "fields_per_s": _median([x["fields_per_s"] for x in ok]),
                "cpu_us_per_field": _median([x["cpu_us_per_field"] for x in ok]),
                "above_floor_us": _median(above),
                "fewest": min((x["fewest"] for x in ok), default=None),
                "most": max((x["most"] for x in ok), default=None),
                "peak_rss_mb": max((x["peak_rss_kib"] / 1024 for x in ok), default=None),
                "cpu_share": max((x["cpu_share"] for x in ok), default=None),
                "fields_per_read": _median([x["fields_per_read"] for x in ok if x["fields_per_read"]]),
                "kept_up": bool(ok)
                and (not offered or all(abs(x["fields_per_s"] / offered - 1) <= 0.03 for x in ok)),
            }
        )
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    above = {row["collector"]: row["above_floor_us"] for row in rows}
    lines = [
        "| collector | fields/s | kept up | CPU share | fields/read | CPU us/field | above floor us"
        " | ours / 6.1.0 above floor | fewest..most per conn | peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        label = row["collector"]
        ratio = None
        if not label.endswith(":ref") and label != "floor":
            ref = above.get("recv:ref")
            if ref and row["above_floor_us"] is not None:
                ratio = row["above_floor_us"] / ref
        kept_up = "yes" if row["kept_up"] else "NO"
        if row["cpu_share"] is not None and row["cpu_share"] >= SATURATED:
            kept_up += ", saturated"
        lines.append(
            f"| {label} | {_fmt(row['fields_per_s'], '.0f')} | {kept_up} | {_fmt(row['cpu_share'], '.0%')} | "
            f"{_fmt(row['fields_per_read'], '.2f')} | {_fmt(row['cpu_us_per_field'], '.1f')} | "
            f"{_fmt(row['above_floor_us'], '.1f')} | {_fmt(ratio, '.2f')} | "
            f"{_fmt(row['fewest'], 'd')}..{_fmt(row['most'], 'd')} | {_fmt(row['peak_rss_mb'], '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="100 connections, sweeps, default loop, one round"
    )
    parser.add_argument("--connections", default="100,500,1000")
    parser.add_argument("--shapes", default="sweep,iq")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--collectors", default="floor,recv,recv:ref,fleet")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--duration", type=float, default=3.0, help="measuring window per collector, s")
    parser.add_argument("--rate", type=float, default=None, help="packets/s per connection (0: flat out)")
    parser.add_argument(
        "--count-reads", action="store_true", help="count each collector's read system calls (perf)"
    )
    parser.add_argument("--json", default=str(REPO / ".benchmarks" / "fleet.json"))
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="an ncplib source tree (its root) for the name:LABEL collectors; repeatable",
    )
    args = parser.parse_args()
    args.trees = {}
    for tree in args.tree:
        label, _, path = tree.partition("=")
        if not label or label in ("ours", "ref") or not (Path(path) / "ncplib" / "__init__.py").exists():
            raise SystemExit(f"--tree {tree!r}: give LABEL=PATH, PATH the root of an ncplib source tree")
        args.trees[label] = str(Path(path).resolve())
    if args.quick:
        args.connections, args.shapes, args.loops, args.repeat = "100", "sweep", "asyncio", 1
        args.duration = min(args.duration, 2.0)
    collectors = [Collector.parse(spec, args.trees) for spec in args.collectors.split(",")]
    if "floor" not in [c.label for c in collectors]:
        collectors.insert(0, Collector("floor", "ours"))
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape!r}")
    runner = Runner(args, collectors)
    started = time.monotonic()
    configs = [
        (shape, int(n), loop)
        for shape in args.shapes.split(",")
        for n in args.connections.split(",")
        for loop in args.loops.split(",")
    ]
    labels = [c.label for c in collectors]
    rounds: dict[tuple[str, int, str], list[dict[str, Any]]] = {config: [] for config in configs}
    for repeat in range(args.repeat):
        for config in configs:
            shift = repeat % len(collectors)
            order = collectors[shift:] + collectors[:shift]
            rounds[config].append(runner.round(*config, order))
            print(
                f"  [{time.monotonic() - started:5.0f} s] round {repeat + 1} {config} done", file=sys.stderr
            )
    report: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "args": vars(args),
        "configs": [],
    }
    for (shape, n, loop), measured in rounds.items():
        rate = args.rate if args.rate is not None else SHAPES[shape].rate
        rows = summarise(measured, labels, rate * n)
        share = max(r["loadgen"]["cpu_share"] for r in measured)
        pace = "flat out" if rate == 0 else f"{rate:g} packets/s each"
        print(f"\n{shape}, {n} connections, {loop}, {pace}; load generator CPU share <= {share:.0%}")
        print(table(rows))
        report["configs"].append(
            {"shape": shape, "connections": n, "loop": loop, "rate": rate, "rows": rows,
             "loadgen_cpu_share": share, "rounds": measured}
        )  # fmt: skip
    print(f"\n{time.monotonic() - started:.0f} s in all; load average {report['load_average']}")
    if args.json != "-":
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
