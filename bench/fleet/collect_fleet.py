"""
Collector: one :class:`ncplib.Fleet` over every connection and one ``async for`` loop, the
public API only. See :mod:`collector` for the arguments.

``--workers N`` (N > 1) shards the connections over N worker processes with
:func:`ncplib.fleet.run_sharded`, each running this collector on its share with its own event
loop, and prints one JSON line summing them: fields, fields per second and CPU seconds (all
workers together; ``cpu_us_per_field`` is then CPU of all workers per field), fewest and most
fields of one connection, the largest worker's peak RSS, and ``workers``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from typing import Any

from collector import _measure, main
from shapes import SHAPES

import ncplib
from ncplib.fleet import run_sharded


async def start(args: argparse.Namespace, counts: list[int]) -> asyncio.Task[None]:
    shape = SHAPES[args.shape]
    fleet = ncplib.Fleet([("127.0.0.1", args.port)] * args.connections, timeout=60, max_connecting=50)
    index = {node: number for number, node in enumerate(fleet.nodes)}
    param = shape.param

    async def consume() -> None:
        async with fleet:
            async for node, field in fleet:
                field[param]  # a user looks at the data
                counts[index[node]] += 1

    task = asyncio.create_task(consume())
    # Streams start together once every connection is made (as in collect_recv): subscribing
    # sends the command to every connected node at once.
    while not all(node.connected for node in fleet.nodes):  # noqa: ASYNC110 (polls node state)
        await asyncio.sleep(0.05)
    fleet.subscribe(shape.packet_type, shape.field_name, COUN=0)
    return task


async def _shard(args: argparse.Namespace, addresses: list[tuple[str, int]]) -> dict[str, Any]:
    mine = argparse.Namespace(**{**vars(args), "connections": len(addresses)})
    return await _measure(start, mine)


def _sharded(args: argparse.Namespace, workers: int) -> None:
    addresses = [("127.0.0.1", args.port)] * args.connections
    results = run_sharded(functools.partial(_shard, args), addresses, workers)
    fields = sum(result["fields"] for result in results)
    cpu = sum(result["cpu_seconds"] for result in results)
    seconds = max(result["seconds"] for result in results)
    print(
        json.dumps(
            {
                "fields": fields,
                "seconds": seconds,
                "cpu_seconds": cpu,
                "fields_per_s": sum(result["fields_per_s"] for result in results),
                "cpu_us_per_field": 1e6 * cpu / fields if fields else None,
                "fewest": min(result["fewest"] for result in results),
                "most": max(result["most"] for result in results),
                "peak_rss_kib": max(result["peak_rss_kib"] for result in results),
                "workers": workers,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    workers = 1
    if "--workers" in sys.argv:
        at = sys.argv.index("--workers")
        workers = int(sys.argv[at + 1])
        del sys.argv[at : at + 2]
    if workers > 1:
        from collector import parse_args

        _sharded(parse_args(), workers)
    else:
        main(start)
