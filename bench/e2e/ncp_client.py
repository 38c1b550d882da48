"""
Streaming NCP client for the end-to-end benchmark; runs with either library's interpreter.

Usage: ``python ncp_client.py PORT large|small array|numpy DURATION [SAMPLE_RSS]``. Asks the
server for a stream, receives and touches every array (length, first, middle and last element,
sequence check) for DURATION seconds after the first field, then prints one JSON line:
fields, payload and wire bytes, seconds, peak RSS and (optionally) RSS samples over time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

import ncplib

# Wire bytes of one streamed packet: header 32 + field header 12 + SEQN 12 + array param + footer 8.
LARGE_PAYLOAD = 512 * 1024
SMALL_PAYLOAD = 256
OVERHEAD = 32 + 12 + 12 + 8 + 8
HUGE_COUNT = 2**31 - 1


def current_rss() -> int:
    """Resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


async def main(port: int, kind: str, mode: str, duration: float, sample_rss: bool) -> dict:
    kwargs = {"use_numpy": True} if mode == "numpy" else {}
    connection = await ncplib.connect("127.0.0.1", port, timeout=60, **kwargs)
    if kind == "large":
        response = connection.send("DSPL", "TIME", COUN=HUGE_COUNT)
        name, payload = "DIQT", LARGE_PAYLOAD
    else:
        response = connection.send("DSPC", "SWEP", COUN=HUGE_COUNT)
        name, payload = "PDAT", SMALL_PAYLOAD
    field = await response.recv()
    expected_len = len(field[name])
    touched = int(field[name][0]) + int(field[name][-1])
    seq = field["SEQN"]
    fields = 0
    rss_samples: list[tuple[float, int]] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    next_sample = started
    deadline = started + duration
    now = started
    while now < deadline:
        field = await response.recv()
        values = field[name]
        if len(values) != expected_len or field["SEQN"] != seq + 1:
            raise SystemExit(f"bad field: len {len(values)}, SEQN {field['SEQN']} after {seq}")
        seq += 1
        touched += int(values[0]) + int(values[expected_len // 2]) + int(values[-1])
        fields += 1
        if fields % 16 == 0 or kind == "large":
            now = time.perf_counter()
            if sample_rss and now >= next_sample:
                rss_samples.append((round(now - started, 1), current_rss()))
                next_sample += 1.0
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    connection.close()
    try:
        await asyncio.wait_for(connection.wait_closed(), 5)
    except Exception:
        pass
    return {
        "fields": fields,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "payload_bytes": fields * payload,
        "wire_bytes": fields * (payload + OVERHEAD),
        "touched": touched,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_samples": rss_samples,
        "library": getattr(ncplib, "__version__", "?"),
    }


def run(coro: Any) -> Any:
    """``asyncio.run``, on uvloop's event loop when ``E2E_UVLOOP=1`` (ours only; needs uvloop)."""
    if os.environ.get("E2E_UVLOOP") == "1":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(coro)


if __name__ == "__main__":
    port, kind, mode, duration = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    sample = len(sys.argv) > 5 and sys.argv[5] == "rss"
    print(json.dumps(run(main(port, kind, mode, duration, sample))), flush=True)
