"""Data that is not NCP at all (an HTTP server, a banner): the DecodeError says what arrived."""

from __future__ import annotations

import asyncio
from types import ModuleType

import pytest
from codec_modules import CODECS, compiled, pure
from netutil import raw_server, run

import ncplib
from ncplib import DecodeError, _wire
from ncplib.framing import PacketReader

HTTP = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n"


def test_a_text_head_is_shown_as_text() -> None:
    message = _wire.bad_magic_message(HTTP, "the peer sent")
    assert message == (
        "Invalid packet header magic 48545450: the peer sent "
        "'HTTP/1.1 200 OK\\r\\nServer: nginx\\r\\n...', not NCP"
    )
    assert "\n" not in message  # One line, whatever arrived.


def test_a_binary_head_is_shown_in_hexadecimal() -> None:
    message = _wire.bad_magic_message(bytes(range(8)))
    assert message == "Invalid packet header magic 00010203: the packet starts with 0001020304050607, not NCP"


def test_only_the_head_is_shown() -> None:
    message = _wire.bad_magic_message(b"x" * 10_000)
    assert message.endswith("'" + "x" * _wire.NOT_NCP_HEAD_SIZE + "...', not NCP")


@CODECS
def test_codecs_say_what_the_data_is(codec: ModuleType) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode_packet(HTTP)
    assert str(caught.value) == _wire.bad_magic_message(HTTP)
    assert "'HTTP/1.1 200 OK\\r\\n" in str(caught.value)


def test_both_codecs_give_the_same_message() -> None:
    if compiled is None:
        pytest.skip("the compiled codec is not built")
    for data in (HTTP, bytes(range(40)), b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(20)):
        messages = []
        for codec in (pure, compiled):
            with pytest.raises(DecodeError) as caught:
                codec.decode_packet(data)
            messages.append(str(caught.value))
        assert messages[0] == messages[1]


def test_framer_says_what_the_peer_sent() -> None:
    reader = PacketReader()
    with pytest.raises(DecodeError) as caught:
        reader.feed(HTTP)
    message = str(caught.value)
    assert message.startswith("Invalid packet header magic 48545450: the peer sent 'HTTP/1.1 200 OK")
    assert message.endswith(", not NCP")


def test_connecting_to_an_http_server_says_so() -> None:
    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HTTP)
        await reader.read()

    async def main() -> None:
        async with raw_server(http_server) as port:
            with pytest.raises(DecodeError) as caught:
                await ncplib.connect("127.0.0.1", port, timeout=10)
            assert "the peer sent 'HTTP/1.1 200 OK" in str(caught.value)

    run(main)
