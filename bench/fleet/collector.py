"""
The frame every collector script shares: arguments, event loop, measuring window, JSON result.

A collector script (``collect_<name>.py``) defines ``async def start(args, counts)`` that opens
``args.connections`` connections to the load generator on 127.0.0.1:``args.port``, asks each for
``args.shape`` (see :mod:`shapes`) and then, for every field received on connection ``i``, adds
1 to ``counts[i]``. It returns whatever must stay referenced (tasks, connections). Its
``__main__`` calls :func:`main` with that function. :func:`main` waits until every connection
has received a field (the warm-up), then measures ``args.duration`` seconds: fields, the
process's CPU time, the fewest and most fields of one connection, and peak RSS, printed as one
JSON line. Then the process exits at once (closing a thousand connections is not measured).

With ``--count-reads`` (Linux, ``perf`` installed and allowed), the window also counts the
process's ``read`` and ``recvfrom`` system calls (``perf stat`` on its tracepoints, enabled only
during the window): the event loops read a ready socket once per wake-up (the default loop with
``recvfrom``, uvloop with ``read``), so fields per read says whether the collector ran in the
fleet shape (one packet per read, about 1.0) or fell behind and took several packets per read.

Runs under either library's interpreter: nothing here imports ncplib. With ``FLEET_PROFILE=PATH``
in the environment, the window runs under :mod:`cProfile` and its statistics go to ``PATH``
(figures are then not comparable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shapes import SHAPES

Start = Callable[[argparse.Namespace, list[int]], Awaitable[Any]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="sweep")
    parser.add_argument("--duration", type=float, default=4.0, help="measuring window, seconds")
    parser.add_argument("--warmup-limit", type=float, default=60.0, help="most seconds to wait for warm-up")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--count-reads", action="store_true", help="count read system calls (perf)")
    return parser.parse_args()


class ReadCounter:
    """
    ``perf stat`` attached to this process, counting its ``read`` and ``recvfrom`` system calls
    between :meth:`enable` and :meth:`disable` (its control descriptors; counting costs a little
    in the kernel per call, alike for every collector).
    """

    EVENTS = "syscalls:sys_enter_read,syscalls:sys_enter_recvfrom"

    def __init__(self) -> None:
        self._control_read, self._control = os.pipe()
        self._ack, self._ack_write = os.pipe()
        self._perf = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e", self.EVENTS, "-D", "-1", "-p", str(os.getpid()),
             "--control", f"fd:{self._control_read},{self._ack_write}"],
            pass_fds=(self._control_read, self._ack_write), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        os.close(self._control_read)
        os.close(self._ack_write)

    def _command(self, word: str) -> None:
        os.write(self._control, word.encode() + b"\n")
        if not os.read(self._ack, 16).startswith(b"ack"):
            raise SystemExit(f"perf did not acknowledge {word!r}")

    def enable(self) -> None:
        self._command("enable")

    def disable(self) -> int:
        """Stops counting; returns the calls counted."""
        self._command("disable")
        self._perf.send_signal(signal.SIGINT)
        _, report = self._perf.communicate(timeout=30)
        counts = [line.split(",")[0] for line in report.splitlines() if "sys_enter_" in line]
        if len(counts) != 2 or not all(count.isdigit() for count in counts):
            raise SystemExit(f"perf stat could not count system calls: {report.strip()[-500:]}")
        return sum(int(count) for count in counts)


def _rss_kib() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _measure(start: Start, args: argparse.Namespace) -> dict[str, Any]:
    counts = [0] * args.connections
    kept = await start(args, counts)
    begin = time.monotonic()
    while min(counts) == 0:
        if time.monotonic() - begin > args.warmup_limit:
            raise SystemExit(f"warm-up: {counts.count(0)} connections received nothing")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # every connection streaming
    reads = ReadCounter() if args.count_reads else None
    if reads is not None:
        await asyncio.sleep(0.5)  # perf attached
        reads.enable()
    profile_path = os.environ.get("FLEET_PROFILE")
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    before = list(counts)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(args.duration)
    cpu1, wall1 = time.process_time(), time.monotonic()
    after = list(counts)
    read_calls = reads.disable() if reads is not None else None
    if profiler is not None and profile_path:
        profiler.disable()
        profiler.dump_stats(profile_path)
    per_connection = [b - a for a, b in zip(before, after, strict=True)]
    fields = sum(per_connection)
    del kept
    return {
        "fields": fields,
        "seconds": wall1 - wall0,
        "cpu_seconds": cpu1 - cpu0,
        "fields_per_s": fields / (wall1 - wall0),
        "cpu_us_per_field": 1e6 * (cpu1 - cpu0) / fields if fields else None,
        # The share of one core: near 1.0 the collector is saturated and reads fall behind.
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
        "reads": read_calls,
        "fields_per_read": fields / read_calls if read_calls else None,
        "fewest": min(per_connection),
        "most": max(per_connection),
        "rss_kib": _rss_kib(),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(start: Start) -> None:
    args = parse_args()
    if args.uvloop:
        extra = os.environ.get("FLEET_UVLOOP_PATH")
        if extra:
            # Under the reference's interpreter: uvloop from our environment, found after
            # everything of its own (so its ncplib is still the reference).
            sys.path.append(extra)
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_report(start, args))


async def _report(start: Start, args: argparse.Namespace) -> None:
    result = await _measure(start, args)
    print(json.dumps(result), flush=True)
    # Leave at once, from inside the loop: tearing down a thousand connections is not measured.
    os._exit(0)
