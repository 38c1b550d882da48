"""
Profiles one side of an end-to-end stream with py-spy (``pip install py-spy``), ours -> ours.

Usage: ``python bench/e2e/profile.py large|small array|numpy client|server [SECONDS]``
(``PROFILE_NATIVE=1`` adds C frames). Writes
the collapsed stacks to ``bench/e2e/logs/`` and prints the functions with the most samples,
by own time and including callees.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from run import HERE, read_line, stop


def summarize(collapsed: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = [
            frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")"
            for frame in stack.split(";")
        ]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{total} samples")
    for title, counter in (("own time", own), ("including callees", inclusive)):
        print(f"\ntop by {title}:")
        for frame, count in counter.most_common(top):
            print(f"  {100 * count / total:5.1f}%  {frame}")


def main(argv: list[str]) -> int:
    kind, mode, side = argv[:3]
    seconds = argv[3] if len(argv) > 3 else "4"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    output = logs / f"profile-{kind}-{mode}-{side}.txt"
    native = ["--native"] if os.environ.get("PROFILE_NATIVE") else []
    spy = [py_spy, "record", "-r", "400", *native, "-f", "raw", "-o", str(output), "--"]
    server_args = [sys.executable, str(HERE / "ncp_server.py")]
    server = subprocess.Popen(
        (spy if side == "server" else []) + server_args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(HERE), env=dict(os.environ),
    )  # fmt: skip
    try:
        line = read_line(server, 60)
        while not line.startswith(b"{"):  # py-spy's own lines come first
            line = read_line(server, 60)
        port = json.loads(line)["port"]
        client_args = [sys.executable, str(HERE / "ncp_client.py"), str(port), kind, mode, seconds]
        done = subprocess.run(
            (spy if side == "client" else []) + client_args,
            stdout=subprocess.PIPE,
            cwd=str(HERE),
            timeout=300,
        )
        # py-spy prints its own lines on standard output too.
        result = json.loads([line for line in done.stdout.decode().splitlines() if line.startswith("{")][-1])
        print(f"{result['fields'] / result['seconds']:,.0f} fields/s under the profiler")
    finally:
        # When the server is profiled, py-spy writes its output once the server exits.
        stop(server)
    summarize(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
