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
