"""
End-to-end streaming benchmark: our ncplib beside the reference 6.1.0, in one run.

A server process streams fields to a client process over loopback TCP; the client receives and
touches every array. Two streams: large ``DSPL TIME`` fields (512 KiB of i16 ``DIQT`` each) and
small ``DSPC SWEP`` fields (one 256-byte u8 ``PDAT`` each). Measured pairs (server -> client):
reference -> reference, ours -> ours (array mode and numpy mode), and the cross pairs; plus the
raw TCP ceiling (plain sockets moving the same bytes). Every configuration runs ``--repeat``
times, interleaved, and the medians are reported.

Usage: ``python bench/e2e/run.py [--duration S] [--repeat N] [--rss-duration S] [--json PATH]``
with the interpreter that has our ncplib installed (the project's virtual environment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LARGE_WIRE = 512 * 1024 + 72
SMALL_WIRE = 256 + 72
SMALL_BATCH = 64


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    stream: str  # "large" or "small"
    label: str
    server: str  # "ours", "ref" or "raw"
    client: str  # "ours", "ref" or "raw"
    mode: str = "array"  # our client's decoding mode: "array" or "numpy"
    uvloop: bool = False  # ours on both sides with uvloop's event loop


CONFIGS = [
    Config("large", "reference -> reference", "ref", "ref"),
    Config("large", "ours -> ours, array mode", "ours", "ours", "array"),
    Config("large", "ours -> ours, numpy mode", "ours", "ours", "numpy"),
    Config("large", "ours -> ours, numpy mode, uvloop", "ours", "ours", "numpy", uvloop=True),
    Config("large", "reference -> ours, numpy mode", "ref", "ours", "numpy"),
    Config("large", "ours -> reference", "ours", "ref"),
    Config("large", "raw TCP ceiling", "raw", "raw"),
    Config("small", "reference -> reference", "ref", "ref"),
    Config("small", "ours -> ours, array mode", "ours", "ours", "array"),
    Config("small", "ours -> ours, numpy mode", "ours", "ours", "numpy"),
    Config("small", "ours -> ours, array mode, uvloop", "ours", "ours", "array", uvloop=True),
    Config("small", "reference -> ours, array mode", "ref", "ours", "array"),
    Config("small", "ours -> reference", "ours", "ref"),
    Config("small", "raw TCP ceiling", "raw", "raw"),
]


def reference_python() -> str:
    sys.path.insert(0, str(REPO))
    from tools.refenv import reference_python as find

    return str(find())


def clean_env(kind: str, uvloop: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["E2E_UVLOOP"] = "1" if uvloop else ""
    env.pop("PYTHONPATH", None)
    # numpy's BLAS threads spin on a busy machine and steal CPU from the measured processes.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if kind == "ref":
        env = {key: value for key, value in env.items() if not key.startswith("NCPLIB_")}
    return env


class Runner:
    def __init__(self, log_dir: Path) -> None:
        self.ours = sys.executable
        self.ref = reference_python()
        self.log_dir = log_dir

    def python(self, kind: str) -> str:
        return self.ref if kind == "ref" else self.ours

    def start_server(self, config: Config) -> subprocess.Popen[bytes]:
        if config.server == "raw":
            wire, batch = (LARGE_WIRE, 1) if config.stream == "large" else (SMALL_WIRE, SMALL_BATCH)
            args = [self.ours, str(HERE / "raw_tcp.py"), "send", str(wire), str(batch)]
        else:
            args = [self.python(config.server), str(HERE / "ncp_server.py")]
        with open(self.log_dir / "server.log", "ab") as log:
            return subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=str(HERE),
                env=clean_env(config.server, config.uvloop),
            )  # fmt: skip

    def measure(self, config: Config, duration: float, sample_rss: bool = False) -> dict[str, Any]:
        server = self.start_server(config)
        try:
            port = json.loads(read_line(server, 60))["port"]
            if config.client == "raw":
                wire = LARGE_WIRE if config.stream == "large" else SMALL_WIRE
                args = [self.ours, str(HERE / "raw_tcp.py"), "recv", str(port), str(wire), str(duration)]
            else:
                args = [
                    self.python(config.client), str(HERE / "ncp_client.py"),
                    str(port), config.stream, config.mode, str(duration),
                ]  # fmt: skip
                if sample_rss:
                    args.append("rss")
            server_cpu = process_cpu_seconds(server.pid)
            started = time.perf_counter()
            with open(self.log_dir / "client.log", "ab") as log:
                done = subprocess.run(
                    args, stdout=subprocess.PIPE, stderr=log, cwd=str(HERE),
                    env=clean_env(config.client, config.uvloop), timeout=duration + 120, check=True,
                )  # fmt: skip
            result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
            # The server's CPU share over the client's whole run (set-up included), a rough figure.
            server_cpu = process_cpu_seconds(server.pid) - server_cpu
            result["server_cpu_share"] = server_cpu / (time.perf_counter() - started)
            result["server_cpu_seconds"] = server_cpu
            return result
        finally:
            stop(server)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    box: list[bytes] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        raise RuntimeError("server did not start; see the logs")
    return box[0]


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def rate(run: dict[str, Any], key: str) -> float:
    """A run's bytes/s or fields/s."""
    return float(run["wire_bytes" if key == "bytes_per_s" else "fields"]) / float(run["seconds"])


def human_bytes(rate: float) -> str:
    return f"{rate / 1e6:,.0f} MB/s" if rate >= 1e6 else f"{rate / 1e3:,.1f} kB/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per configuration (default 3)")
    parser.add_argument(
        "--rss-duration", type=float, default=0.0,
        help="also stream large fields to our numpy-mode client this long, sampling its RSS (default off)",
    )  # fmt: skip
    parser.add_argument("--only", choices=["large", "small"], help="run one stream only")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--nice", type=int, default=0,
        help="scheduling priority change for the measured processes (negative needs root; default 0)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.nice:
        # Inherited by every process started from here on, for both libraries alike.
        os.nice(args.nice)

    log_dir = HERE / "logs"
    log_dir.mkdir(exist_ok=True)
    runner = Runner(log_dir)
    configs = [config for config in CONFIGS if args.only in (None, config.stream)]
    probe = "import ncplib, ncplib.codec as c; print(c.implementation(), hasattr(ncplib, 'connect'))"
    codec, has_client = subprocess.run(
        [runner.ours, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    if has_client != "True":
        print("# our ncplib has no client/server here: measuring the reference and raw TCP only")
        configs = [config for config in configs if "ours" not in (config.server, config.client)]
    print(f"# ncplib end-to-end streaming, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# nice {os.nice(0)}, load average {os.getloadavg()[0]:.1f} at the start")
    print(
        f"# python {platform.python_version()}, our codec: {codec}, {os.cpu_count()} CPUs, "
        f"{args.duration:g} s x {args.repeat} runs per row, medians",
        flush=True,
    )

    results: dict[Config, list[dict[str, Any]]] = {config: [] for config in configs}
    for round_number in range(args.repeat):
        for config in configs:
            result = runner.measure(config, args.duration)
            results[config].append(result)
            speed = result["wire_bytes"] / result["seconds"]
            print(
                f"  round {round_number + 1}: {config.stream:5} {config.label:32} {human_bytes(speed):>12} "
                f"{result['fields'] / result['seconds']:>12,.0f} fields/s",
                flush=True,
            )

    summary: dict[tuple[str, str], dict[str, float]] = {}
    for config, runs in results.items():
        summary[(config.stream, config.label)] = {
            "bytes_per_s": statistics.median(run["wire_bytes"] / run["seconds"] for run in runs),
            "fields_per_s": statistics.median(run["fields"] / run["seconds"] for run in runs),
            "peak_rss": max(run["peak_rss"] for run in runs),
            "client_cpu": statistics.median(run["cpu_seconds"] / run["seconds"] for run in runs),
            "server_cpu": statistics.median(run["server_cpu_share"] for run in runs),
            "client_us": statistics.median(1e6 * run["cpu_seconds"] / run["fields"] for run in runs),
            "server_us": statistics.median(1e6 * run["server_cpu_seconds"] / run["fields"] for run in runs),
        }

    print()
    print(
        "| stream | server -> client | wire bytes/s | fields/s | client CPU share | client CPU us/field "
        "| server CPU share | server CPU us/field | client peak RSS |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (stream, label), row in summary.items():
        print(
            f"| {stream} | {label} | {human_bytes(row['bytes_per_s'])} | {row['fields_per_s']:,.0f} "
            f"| {row['client_cpu']:.0%} | {row['client_us']:,.1f} | {row['server_cpu']:.0%} "
            f"| {row['server_us']:,.1f} | {row['peak_rss'] / 2**20:,.0f} MiB |"
        )
    print()
    # Under CPU contention from other processes the rates drop; CPU time per field is steadier.
    ratios = [
        ("large", "ours -> ours, numpy mode", "reference -> reference", "bytes_per_s", 4.0),
        ("large", "ours -> ours, numpy mode", "raw TCP ceiling", "bytes_per_s", 0.7),
        ("large", "ours -> ours, array mode", "reference -> reference", "bytes_per_s", 4.0),
        ("small", "ours -> ours, array mode", "reference -> reference", "fields_per_s", 4.0),
        ("small", "ours -> ours, numpy mode", "reference -> reference", "fields_per_s", 4.0),
    ]
    by_label = {(config.stream, config.label): runs for config, runs in results.items()}
    print("| ratio | of medians | median of per-round ratios | target |")
    print("|---|---:|---:|---:|")
    for stream, ours, other, key, target in ratios:
        if (stream, ours) in summary and (stream, other) in summary:
            ratio = summary[(stream, ours)][key] / summary[(stream, other)][key]
            # Rounds run back to back, so a per-round ratio cancels slow drifts in machine load.
            paired = statistics.median(
                rate(mine, key) / rate(theirs, key)
                for mine, theirs in zip(by_label[(stream, ours)], by_label[(stream, other)], strict=True)
            )
            verdict = "met" if paired >= target else "MISSED"
            print(
                f"| {stream}: {ours} / {other} ({key}) | {ratio:.2f}x | {paired:.2f}x "
                f"| >= {target:g}x ({verdict}) |"
            )
    print()
    print("| CPU per field, reference / ours (higher is better for ours) | client | server |")
    print("|---|---:|---:|")
    for stream in ("large", "small"):
        reference = summary.get((stream, "reference -> reference"))
        for label in ("ours -> ours, array mode", "ours -> ours, numpy mode"):
            ours_row = summary.get((stream, label))
            if reference and ours_row:
                print(
                    f"| {stream}: {label} | {reference['client_us'] / ours_row['client_us']:.2f}x "
                    f"| {reference['server_us'] / ours_row['server_us']:.2f}x |"
                )

    rss: dict[str, Any] | None = None
    if args.rss_duration > 0:
        config = Config("large", "ours -> ours, numpy mode", "ours", "ours", "numpy")
        rss = runner.measure(config, args.rss_duration, sample_rss=True)
        samples = rss["rss_samples"]
        print()
        print(
            f"Our numpy-mode client over a {args.rss_duration:g} s large stream: "
            f"{human_bytes(rss['wire_bytes'] / rss['seconds'])}, peak RSS {rss['peak_rss'] / 2**20:,.1f} MiB"
        )
        if samples:
            picks = [samples[0], *samples[len(samples) // 4 :: max(1, len(samples) // 4)], samples[-1]]
            print("RSS (s: MiB): " + ", ".join(f"{t:g}: {b / 2**20:,.1f}" for t, b in picks))

    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(),
            "codec": codec,
            "duration": args.duration,
            "repeat": args.repeat,
            "results": [{"stream": c.stream, "label": c.label, "runs": runs} for c, runs in results.items()],
            "rss": rss,
        }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
