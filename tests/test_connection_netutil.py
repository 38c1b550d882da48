"""The asyncio-noise checker of tests/netutil.py really catches what it is meant to catch."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest
from netutil import LOOPS, new_loop, no_asyncio_noise, run


def test_catches_exception_in_callback() -> None:
    with pytest.raises(AssertionError, match="Exception in callback"), no_asyncio_noise():
        loop = new_loop()
        try:
            loop.call_soon(lambda: 1 / 0)
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()


def test_catches_task_destroyed_while_pending() -> None:
    with pytest.raises(AssertionError, match="Task was destroyed but it is pending"), no_asyncio_noise():
        loop = new_loop()
        task = loop.create_task(asyncio.sleep(3600))
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        del task
        gc.collect()


def _leak_a_transport(address: tuple[str, int]) -> None:
    loop = new_loop()

    async def leak() -> None:
        await asyncio.open_connection(*address)

    loop.run_until_complete(leak())
    loop.close()


def test_catches_unclosed_transport() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with pytest.raises(AssertionError, match="unclosed"), no_asyncio_noise():
            _leak_a_transport(listener.getsockname())
    finally:
        listener.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_run_catches_tasks_left_behind(loop: str) -> None:
    async def main() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))

    with pytest.raises(AssertionError, match="tasks left behind"):
        run(main, loop=loop)


def test_allow_lets_expected_messages_through() -> None:
    with no_asyncio_noise(allow=("Exception in callback",)):
        loop = new_loop()
        try:
            loop.call_soon(lambda: 1 / 0)
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()
