"""Parsing command-line values (ncplib.cli._values): NCP-typed params and node addresses."""

from __future__ import annotations

import pytest

from ncplib import _wire as w
from ncplib.cli._errors import UsageError
from ncplib.cli._values import parse_param, parse_value
from ncplib.values import f64, i64, u32, u64


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("400", 400, int),
        ("-3", -3, int),
        ("1.5", 1.5, float),
        ("2e6", 2e6, float),
        ("abc", "abc", str),
        ("", "", str),
        ("nan", "nan", str),
        ("http://host:80", "http://host:80", str),
        ("u32:5", 5, u32),
        ("i64:-3", -3, i64),
        ("u64:18446744073709551615", 2**64 - 1, u64),
        ("f64:1.5", 1.5, f64),
        ("f32:2", 2.0, float),
        ("i32:0x10", 16, int),
        ("str:42", "42", str),
        ("hex:00ff10", b"\x00\xff\x10", bytes),
        ("hex:", b"", bytes),
    ],
)
def test_parse_value(text: str, expected: object, kind: type) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("u32:-1", "out of range"),
        ("2147483648", "use an i64: or u64: prefix"),
        ("i64:abc", "not an integer"),
        ("f64:x", "not a number"),
        ("hex:0", "hex"),
    ],
)
def test_parse_value_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_value(text)


def test_parse_param() -> None:
    assert parse_param("FSTA=400") == ("FSTA", 400)
    assert parse_param("NAME=a=b") == ("NAME", "a=b")
    assert parse_param("AGC =1") == ("AGC ", 1)
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_param("FSTA")
    with pytest.raises(UsageError, match="did you mean FSTA"):
        parse_param("fsta=1")
    with pytest.raises(UsageError, match="1 to 4"):
        parse_param("TOOLONG=1")


# The command.


@pytest.mark.parametrize(("name", "low", "high"), [(n, *r) for n, r in w.INTEGER_RANGES.items()])
def test_integer_ranges_come_from_the_wire_definitions(name: str, low: int, high: int) -> None:
    assert parse_value(f"{name}:{low}") == low
    assert parse_value(f"{name}:{high - 1}") == high - 1
    with pytest.raises(UsageError):
        parse_value(f"{name}:{high}")
