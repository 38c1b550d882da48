"""
Sharding a fleet over worker processes, each with its own event loop.

One event loop runs on one core. Past a few thousand busy connections, split the addresses
with :func:`shard` and run one :class:`~ncplib.Fleet` per process; :func:`run_sharded` does both
with :class:`concurrent.futures.ProcessPoolExecutor`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from ncplib.fleet._node import Address, address_list

__all__ = ["shard", "run_sharded"]

T = TypeVar("T")
A = TypeVar("A", bound=Address)


def shard(addresses: Sequence[A], count: int) -> list[list[A]]:
    """
    Splits addresses into ``count`` groups whose sizes differ by at most one.

    Address ``i`` goes to group ``i % count``, so the split depends only on the order given.

    :param addresses: The addresses of the whole fleet.
    :param int count: The number of groups (worker processes).
    :raises ValueError: if ``count`` is less than 1.
    :returns: ``count`` lists of addresses (some empty if there are fewer addresses).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count!r}")
    return [list(addresses[index::count]) for index in range(count)]


def _run_worker(worker: Callable[[list[A]], Awaitable[T]], addresses: list[A]) -> T:
    async def main() -> T:
        return await worker(addresses)

    return asyncio.run(main())


def run_sharded(
    worker: Callable[[list[A]], Awaitable[T]],
    addresses: Iterable[A],
    processes: int,
    *,
    start_method: str = "spawn",
) -> list[T]:
    """
    Runs ``worker(addresses_of_one_shard)`` in each of ``processes`` new processes, each with
    its own event loop (:func:`asyncio.run`), and returns their results in shard order.

    The worker typically builds a :class:`~ncplib.Fleet` of the addresses it is given, streams
    for a while and returns a summary. It must be picklable: an ``async def`` at the top level
    of an importable module (with the default ``"spawn"`` start method, the main script must
    guard its own start with ``if __name__ == "__main__":``).

    With fewer addresses than ``processes``, only as many workers run as there are addresses
    (one each): a worker never gets an empty shard.

    :param worker: An async function taking a list of addresses.
    :param addresses: The addresses of the whole fleet (any iterable of them), split with
        :func:`shard`.
    :param int processes: The most worker processes.
    :param str start_method: The :mod:`multiprocessing` start method.
    :raises ValueError: if ``processes`` is less than 1, or there are no addresses.
    :raises TypeError: if ``addresses`` is a string (or bytes) rather than an iterable of
        addresses.
    :raises Exception: whatever a worker raised (the first one, in shard order).
    :returns: Each worker's result, in shard order: ``min(processes, len(addresses))`` of them.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, not {processes!r}")
    addresses = address_list(addresses)
    if not addresses:
        raise ValueError("run_sharded needs at least one address")
    shards = shard(addresses, min(processes, len(addresses)))
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=len(shards), mp_context=context) as pool:
        futures = [pool.submit(_run_worker, worker, part) for part in shards]
        return [future.result() for future in futures]
