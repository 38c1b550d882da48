"""The codec in use is the one asked for, and the compiled one is really compiled."""

from __future__ import annotations

import importlib.machinery
import os

import pytest

import ncplib.packets
from ncplib import codec


def test_implementation_matches_environment() -> None:
    if os.environ.get("NCPLIB_PUREPYTHON", "") not in ("", "0"):
        assert codec.implementation() == "pure"
        assert ncplib.packets._impl.__name__ == "ncplib._pycodec"
    elif os.environ.get("NCPLIB_EXPECT_COMPILED") == "1":
        assert codec.implementation() == "compiled"


@pytest.mark.skipif(os.environ.get("NCPLIB_EXPECT_COMPILED") != "1", reason="compiled codec not required")
def test_compiled_codec_is_an_extension_module() -> None:
    impl = ncplib.packets._impl
    assert impl.__name__ == "ncplib._codec"
    assert impl.__file__ is not None
    assert impl.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_receive_core_and_packet_reader_come_with_the_codec() -> None:
    # The connection's per-packet methods and its packet reader are the active codec's: compiled
    # with it, or the pure-Python specifications (ncplib._receive, ncplib.framing).
    from ncplib import _receive, framing
    from ncplib._protocol import NCPProtocol

    core = NCPProtocol.__mro__[1]
    if codec.implementation() == "compiled":
        assert core.__module__ == "ncplib._codec"
        assert framing.PacketReader.__module__ == "ncplib._codec"
    else:
        assert core is _receive.ReceiveCore
        assert framing.PacketReader is framing._PurePacketReader
    assert NCPProtocol.buffer_updated is core.buffer_updated
    assert NCPProtocol.wait_data is core.wait_data
