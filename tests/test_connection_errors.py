"""ERRO / WARN / ACKN handling on the client and the server's error replies."""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings

import pytest
from netutil import run, serving

import ncplib
from ncplib._peer_warnings import MOST_REMEMBERED, warn_from_peer


async def replies(connection: ncplib.Connection) -> None:
    async for field in connection:
        field.send(ACKN=1)
        field.send(WARN="careful", WARC=7)
        field.send(ERRO="broken", ERRC=42)
        field.send(DONE=1)


def test_ackn_skipped_warn_issued_erro_raised_by_default() -> None:
    async def main() -> None:
        async with serving(replies) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "SWEP")
            with pytest.warns(ncplib.CommandWarning) as caught:
                # The ACKN field is skipped; the WARN field is returned after the warning.
                line = inspect.stack(0)[0].lineno + 1
                assert dict(await response.recv()) == {"WARN": "careful", "WARC": 7}
            # The warning points at the line that awaited recv, not into the library.
            assert (caught[0].filename, caught[0].lineno) == (__file__, line)
            with pytest.raises(ncplib.CommandError) as raised:
                await response.recv()
            warning = caught[0].message
            assert isinstance(warning, ncplib.CommandWarning)
            assert (warning.detail, warning.code, warning.field.name) == ("careful", 7, "SWEP")
            assert (raised.value.detail, raised.value.code) == ("broken", 42)
            assert raised.value.field.packet_type == "DSPC"
            assert dict(await response.recv()) == {"DONE": 1}

    run(main)


def test_filters_can_be_switched_off() -> None:
    async def main() -> None:
        async with serving(replies) as (_, port):
            connection = await ncplib.connect(
                "127.0.0.1", port, auto_erro=False, auto_warn=False, auto_ackn=False
            )
            async with connection:
                response = connection.send("DSPC", "SWEP")
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    got = [dict(await response.recv()) for _ in range(4)]
            assert got == [
                {"ACKN": 1},
                {"WARN": "careful", "WARC": 7},
                {"ERRO": "broken", "ERRC": 42},
                {"DONE": 1},
            ]

    run(main)


def test_error_without_code() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            field.send(ERRO="no code")

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            with pytest.raises(ncplib.CommandError) as raised:
                await connection.send("DSPC", "SWEP").recv()
            assert raised.value.detail == "no code"
            assert raised.value.code is None

    run(main)


def test_server_does_not_filter_fields() -> None:
    received: list[dict[str, object]] = []

    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            received.append(dict(field))
            field.send(OK=1)

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            await connection.send("DSPC", "SWEP", ERRO="x", ACKN=1).recv()

    run(main)
    assert received == [{"ERRO": "x", "ACKN": 1}]


@pytest.mark.parametrize(
    ("exception", "detail", "code", "level"),
    [
        (ncplib.DecodeError("bad input"), "Bad request", 400, logging.WARNING),
        (RuntimeError("bug"), "Server error", 500, logging.ERROR),
    ],
)
def test_server_replies_to_handler_errors_and_closes(
    caplog: pytest.LogCaptureFixture, exception: Exception, detail: str, code: int, level: int
) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        await connection.recv()
        raise exception

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            with pytest.raises(ncplib.CommandError) as raised:
                await connection.send("DSPC", "SWEP").recv()
            assert raised.value.field.packet_type == "LINK"
            assert raised.value.field.name == "ERRO"
            assert (raised.value.detail, raised.value.code) == (detail, code)
            with pytest.raises(ncplib.ConnectionClosed):
                await connection.recv()

    with caplog.at_level(logging.INFO, logger="ncplib"):
        run(main)
    server_records = [r for r in caplog.records if r.name == "ncplib.server" and r.levelno == level]
    assert len(server_records) == 1
    assert (server_records[0].exc_info is not None) == (code == 500)


def test_handler_returning_closes_the_connection() -> None:
    async def handler(connection: ncplib.Connection) -> None:
        connection.send("DSPC", "BYE")

    async def main() -> None:
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            assert (await connection.recv()).name == "BYE"
            with pytest.raises(ncplib.ConnectionClosed):
                await asyncio.wait_for(connection.recv(), 10)

    run(main)


# What the reference 6.1.0 client does with each kind of field (observed), auto_* switched on.
FILTER_CASES = [
    ("ERRO", {"X": 1}, [], None, None),
    ("ERRO", {"ERRO": "e"}, [], ("CommandError", "e", None), None),
    ("WARN", {"X": 1}, [], None, None),
    ("WARN", {"WARN": "w"}, [], None, ("w", None)),
    ("ACKN", {"X": 1}, [("ACKN", {"X": 1})], None, None),
    ("F1", {"ERRC": 3}, [], ("CommandError", None, 3), None),
    ("F2", {"WARC": 4}, [("F2", {"WARC": 4})], None, (None, 4)),
    ("F3", {"ACKN": 1, "WARN": "w"}, [], None, ("w", None)),
    ("F4", {"ACKN": 1, "ERRO": "e"}, [], ("CommandError", "e", None), None),
    ("F5", {"WARN": "w", "ERRO": "e"}, [], ("CommandError", "e", None), None),
    ("F6", {"ACKN": 1, "WARC": 2}, [], None, (None, 2)),
]


@pytest.mark.parametrize(("name", "params", "delivered", "error", "warning"), FILTER_CASES)
def test_client_filters_like_the_reference(
    name: str,
    params: dict[str, object],
    delivered: list[tuple[str, dict[str, object]]],
    error: tuple[str, object, object] | None,
    warning: tuple[object, object] | None,
) -> None:
    async def handler(connection: ncplib.Connection) -> None:
        async for field in connection:
            connection.send_packet(field.packet_type, **{name: params})
            connection.send(field.packet_type, "DONE")

    async def main() -> tuple[list[tuple[str, dict[str, object]]], list[tuple[object, ...]], list[object]]:
        got: list[tuple[str, dict[str, object]]] = []
        errors: list[tuple[object, ...]] = []
        async with serving(handler) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            connection.send("DSPC", "CMD")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                while True:
                    try:
                        field = await connection.recv()
                    except ncplib.CommandError as ex:
                        errors.append((type(ex).__name__, ex.detail, ex.code))
                        continue
                    if field.name == "DONE":
                        break
                    got.append((field.name, dict(field)))
            warned = [
                (w.message.detail, w.message.code)
                for w in caught
                if isinstance(w.message, ncplib.CommandWarning)
            ]
            return got, errors, warned

    got, errors, warned = run(main)
    assert got == delivered
    assert errors == ([error] if error else [])
    assert warned == ([warning] if warning else [])


def test_warnings_with_ever_changing_text_do_not_grow_memory() -> None:
    """Each WARN with new text is shown, yet the registry of warnings shown (which the warnings
    module keeps per module, keyed by text) stays bounded: a node cannot grow it for ever."""
    count = 3 * MOST_REMEMBERED

    async def changing(connection: ncplib.Connection) -> None:
        async for field in connection:
            for number in range(count):
                field.send(WARN=f"warning number {number}")
            field.send(DONE=1)

    async def main() -> tuple[int, int]:
        largest = 0
        async with serving(changing) as (_, port), await ncplib.connect("127.0.0.1", port) as connection:
            response = connection.send("DSPC", "SWEP")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                while "DONE" not in await response.recv():
                    largest = max(largest, len(globals().get("__warningregistry__", {})))
        shown = sum(isinstance(w.message, ncplib.CommandWarning) for w in caught)
        return shown, largest

    shown, largest = run(main)
    assert shown == count
    # The registry's own version entry, the remembered warnings and the one just shown.
    assert MOST_REMEMBERED < largest <= MOST_REMEMBERED + 2


def test_a_peer_warning_issued_above_the_stack_points_at_sys() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_from_peer(ncplib.CommandWarning(None, "deep", None), stacklevel=10_000)  # type: ignore[arg-type]
    assert [w.filename for w in caught] == ["sys"]
