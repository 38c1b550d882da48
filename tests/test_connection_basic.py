"""Client and server talking over real TCP: requests, replies, iteration, closing."""

from __future__ import annotations

import array
import asyncio
import inspect
import logging

import pytest
from netutil import LOOPS, raw_handshake, raw_server, run, serving

import ncplib


async def echo(connection: ncplib.Connection) -> None:
    async for field in connection:
        field.send(ACKN=1)
        field.send(**field)


def test_public_names() -> None:
    for name in ("connect", "start_server", "Connection", "Response", "Field"):
        assert name in ncplib.__all__
        assert getattr(ncplib, name) is not None
    assert not inspect.iscoroutinefunction(ncplib.Connection.send)
    assert not inspect.iscoroutinefunction(ncplib.Connection.send_packet)
    assert not inspect.iscoroutinefunction(ncplib.Field.send)
    for name in ("recv", "recv_field", "wait_closed", "drain"):
        assert inspect.iscoroutinefunction(getattr(ncplib.Connection, name))
    assert issubclass(ncplib.Field, dict)


@pytest.mark.parametrize("loop", LOOPS)
def test_send_and_receive_reply(loop: str) -> None:
    async def main() -> None:
        async with serving(echo) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "SWEP", FSTA=400, NAME="x", DATA=array.array("h", [1, -2]))
            field = await response.recv()
            assert dict(field) == {"FSTA": 400, "NAME": "x", "DATA": array.array("h", [1, -2])}
            assert field.packet_type == "DSPC"
            assert field.name == "SWEP"
            assert field.packet_id == 1
            assert field.connection is connection
            assert field.packet_timestamp.tzinfo is not None
            assert repr(field).startswith("<Field 'DSPC' 'SWEP' {")

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_send_packet_with_several_fields(loop: str) -> None:
    async def main() -> None:
        async with serving(echo) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send_packet("DSPC", SWEP={"A": 1}, TIME={"B": 2})
            got = {}
            async for field in response:
                got[field.name] = dict(field)
                if len(got) == 2:
                    break
            assert got == {"SWEP": {"A": 1}, "TIME": {"B": 2}}
            field = await connection.send_packet("DSPC", SWEP={"A": 3}, TIME={"B": 4}).recv_field("TIME")
            assert dict(field) == {"B": 4}

    run(main, loop=loop)


def test_response_ignores_fields_of_other_requests() -> None:
    async def main() -> None:
        async with serving(echo) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            first = connection.send("DSPC", "SWEP", N=1)
            second = connection.send("DSPC", "SWEP", N=2)
            assert (await second.recv())["N"] == 2
            # The reply to the first request was read (and dropped) while waiting for the second.
            third = connection.send("DSPC", "SWEP", N=3)
            assert (await third.recv())["N"] == 3
            assert first is not second

    run(main)


def test_a_response_returns_only_fields_repeating_its_type_name_and_id() -> None:
    # The server answers each request with near misses first: another packet type, another
    # field name, another field id; only the exact reply reaches the response.
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            connection.send_packet("DSPL", **{field.name: {"MISS": "type"}})
            connection._send_packet("DSPC", [("OTHR", field.id, {"MISS": "name"}.items())], set())
            connection._send_packet("DSPC", [(field.name, field.id + 1000, {"MISS": "id"}.items())], set())
            field.send(HIT=1)

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            for _ in range(3):
                response = connection.send("DSPC", "SWEP")
                assert dict(await response.recv()) == {"HIT": 1}
            # Built by hand, as 6.1.0's documentation allows, from any container of pairs.
            sent = connection.send("DSPC", "SWEP")
            pairs = list(sent._expected_fields)
            by_hand = ncplib.Response(connection, "DSPC", pairs)  # type: ignore[arg-type]
            assert dict(await by_hand.recv()) == {"HIT": 1}
            # A set given by hand is looked up as it is when each field arrives.
            first = connection.send("DSPC", "SWEP")
            second = connection.send("DSPC", "SWEP")
            growing = set(first._expected_fields)
            watching = ncplib.Response(connection, "DSPC", growing)
            growing |= second._expected_fields
            replies = [await watching.recv(), await watching.recv()]
            assert [field.id for field in replies] == [
                next(iter(first._expected_fields))[1],
                next(iter(second._expected_fields))[1],
            ]

    run(main)


def test_field_ids_increase_and_replies_repeat_them() -> None:
    seen: list[tuple[str, int]] = []

    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            seen.append((field.name, field.id))
            field.send(OK=1)

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            a = await connection.send("DSPC", "AAAA").recv()
            b = await connection.send("DSPC", "BBBB").recv()
            assert seen == [("AAAA", a.id), ("BBBB", b.id)]
            assert b.id != a.id

    run(main)


def test_server_sees_client_hostname_and_client_remote_hostname() -> None:
    names: list[str] = []

    async def handler(connection: ncplib.Connection) -> None:
        names.append(connection.remote_hostname)

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port, hostname="my-client")
            assert connection.remote_hostname == f"127.0.0.1:{port}"
            assert isinstance(connection.logger, logging.Logger)
            assert isinstance(connection.transport, asyncio.WriteTransport)
            with pytest.raises(ncplib.ConnectionClosed):
                await connection.recv()  # The handler returned: the server closed the connection.
            connection.close()
            await connection.wait_closed()
            named = await ncplib.connect("127.0.0.1", port, remote_hostname="node-7")
            assert named.remote_hostname == "node-7"
            named.close()
            await named.wait_closed()
        assert names[0] == "my-client"

    run(main)


@pytest.mark.parametrize("loop", LOOPS)
def test_connection_iteration_ends_when_peer_closes(loop: str) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        for n in range(3):
            connection.send("DSPC", "DATA", N=n)

    async def main() -> None:
        async with serving(handler) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            got = [field["N"] async for field in connection]
            assert got == [0, 1, 2]
            assert connection.is_closing()
            connection.close()
            await connection.wait_closed()

    run(main, loop=loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_recv_after_close_raises_connection_closed(loop: str) -> None:
    async def main() -> None:
        async with serving(echo) as (_, port):
            connection = await ncplib.connect("127.0.0.1", port)
            assert not connection.is_closing()
            connection.close()
            assert connection.is_closing()
            with pytest.raises(ncplib.ConnectionClosed):
                await connection.recv()
            await connection.wait_closed()
            with pytest.raises(ncplib.ConnectionClosed):
                await connection.recv()
            with pytest.raises(ncplib.ConnectionClosed):
                await connection.drain()
            # Sending on a closed connection is silently dropped, as before.
            connection.send("DSPC", "SWEP")

    run(main, loop=loop)


def test_recv_field_skips_other_fields() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        connection.send("DSPC", "AAAA", N=1)
        connection.send("STAT", "BBBB", N=2)
        connection.send("DSPC", "BBBB", N=3)
        await connection.recv()

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            field = await connection.recv_field("DSPC", "BBBB")
            assert field["N"] == 3

    run(main)


def test_send_rejects_bad_input_before_writing() -> None:
    async def main() -> None:
        async with serving(echo) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            with pytest.raises(ValueError):
                connection.send("dspc", "SWEP")
            with pytest.raises(TypeError):
                connection.send("DSPC", "SWEP", X=object())
            # The connection is still usable.
            assert (await connection.send("DSPC", "SWEP", X=1).recv())["X"] == 1

    run(main)


def test_cancelled_recv_leaves_connection_usable() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            await asyncio.sleep(0.2)
            field.send(OK=1)

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "SWEP")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(response.recv(), 0.01)
            assert (await response.recv())["OK"] == 1

    run(main)


def test_field_ids_wrap_at_2_to_the_32(monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    from ncplib import protocol

    monkeypatch.setattr(protocol, "_field_ids", itertools.count(2**32 - 1))
    seen: list[int] = []

    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            seen.append(field.id)
            field.send(OK=1)

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            await connection.send("DSPC", "AAAA").recv()
            await connection.send("DSPC", "BBBB").recv()

    run(main)
    # The handshake used some ids first; the counter went past 2**32 - 1 and wrapped to 0.
    assert all(0 <= i < 2**32 for i in seen)
    assert seen[1] == seen[0] + 1 or (seen[0] == 2**32 - 1 and seen[1] == 0)
    assert seen[0] < 16


def test_info_word_is_the_end_of_the_mac_address() -> None:
    import uuid

    infos: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ccre = await raw_handshake(reader, writer)
        infos.append(ccre[3])
        await reader.read()

    async def main() -> None:
        async with raw_server(peer) as port:
            connection = await ncplib.connect("127.0.0.1", port)
            connection.close()
            await connection.wait_closed()

    run(main)
    assert infos == [uuid.getnode().to_bytes(6, "big")[2:]]


def test_many_clients_at_once() -> None:
    async def main() -> None:
        async with serving(echo) as (_, port):

            async def one(n: int) -> int:
                async with await ncplib.connect("127.0.0.1", port) as connection:
                    return int((await connection.send("DSPC", "SWEP", N=n).recv())["N"])

            assert await asyncio.gather(*(one(n) for n in range(40))) == list(range(40))

    run(main)
