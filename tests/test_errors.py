"""The exception and warning types have the documented base classes on every Python version."""

from __future__ import annotations

import asyncio

import pytest

import ncplib

BASES = [
    (ncplib.NCPError, Exception),
    (ncplib.NetworkError, ncplib.NCPError),
    (ncplib.NetworkError, OSError),
    (ncplib.AuthenticationError, ncplib.NCPError),
    (ncplib.NetworkTimeoutError, ncplib.NCPError),
    (ncplib.NetworkTimeoutError, asyncio.TimeoutError),
    (ncplib.NetworkTimeoutError, TimeoutError),
    (ncplib.ConnectionClosed, ncplib.NCPError),
    (ncplib.ConnectionClosed, EOFError),
    (ncplib.CommandError, ncplib.NCPError),
    (ncplib.DecodeError, ncplib.NCPError),
    (ncplib.DecodeError, ValueError),
    (ncplib.NCPWarning, Warning),
    (ncplib.CommandWarning, ncplib.NCPWarning),
    (ncplib.DecodeWarning, ncplib.NCPWarning),
]


@pytest.mark.parametrize(("klass", "base"), BASES, ids=[f"{k.__name__}-{b.__name__}" for k, b in BASES])
def test_documented_base_class(klass: type, base: type) -> None:
    assert issubclass(klass, base)


def test_timeout_is_caught_by_asyncio_timeout_handlers() -> None:
    with pytest.raises(asyncio.TimeoutError):
        raise ncplib.NetworkTimeoutError("timed out")


class _Field(dict[str, object]):
    packet_type = "DSPC"
    name = "SWEP"


@pytest.mark.parametrize("klass", [ncplib.CommandError, ncplib.CommandWarning])
def test_command_error_carries_field_detail_and_code(klass: type[ncplib.CommandError]) -> None:
    field = _Field(ERRO="Bad request", ERRC=400)
    error = klass(field, "Bad request", 400)  # type: ignore[arg-type]
    assert (error.field, error.detail, error.code) == (field, "Bad request", 400)
    assert str(error) == "DSPC SWEP 'Bad request' (code 400)"
