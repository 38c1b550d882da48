"""Parsing command-line values: addresses and ``NAME=VALUE`` params with their NCP types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ncplib import _wire as w
from ncplib._address import split_address
from ncplib._wire import DEFAULT_PORT
from ncplib.cli._errors import UsageError
from ncplib.values import f64, i64, u32, u64

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """
    Splits ``HOST[:PORT]`` (``[IPv6]:PORT`` for IPv6 addresses with a port; a bare IPv6 address
    is a host without a port), as :class:`ncplib.Fleet` reads an address.

    :param str text: The address.
    :param int default_port: The port when none is given.
    :raises UsageError: if the address is not one of those forms, its host is empty or not a host
        name or IP address, or its port is not a number from 1 to 65535.
    :returns: ``(host, port)``.
    """
    try:
        return split_address(text.strip(), default_port)
    except ValueError as ex:
        raise UsageError(str(ex)) from None


def _parse_int(text: str, ncp_type: str) -> int:
    try:
        value = int(text, 0) if text.lower().lstrip("+-").startswith("0x") else int(text, 10)
    except ValueError:
        raise UsageError(f"invalid {ncp_type} value {text!r}: not an integer") from None
    low, high = w.INTEGER_RANGES[ncp_type]
    if not low <= value < high:
        hint = " (use an i64: or u64: prefix)" if ncp_type == "i32" else ""
        raise UsageError(f"{ncp_type} value {value} out of range {low}..{high - 1}{hint}")
    return value


def _parse_float(text: str, ncp_type: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"invalid {ncp_type} value {text!r}: not a number") from None


def _parse_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"invalid hex value {text!r}: use pairs of hex digits, such as 00ff10") from None


_PREFIXES: dict[str, Callable[[str], Any]] = {
    "i32": lambda text: _parse_int(text, "i32"),
    "u32": lambda text: u32(_parse_int(text, "u32")),
    "i64": lambda text: i64(_parse_int(text, "i64")),
    "u64": lambda text: u64(_parse_int(text, "u64")),
    "f32": lambda text: _parse_float(text, "f32"),
    "f64": lambda text: f64(_parse_float(text, "f64")),
    "str": str,
    "hex": _parse_hex,
}


def parse_value(text: str) -> Any:
    """
    Converts a command-line param value to the Python value that selects its NCP type.

    ``TYPE:VALUE`` with ``TYPE`` one of ``i32 u32 i64 u64 f32 f64 str hex`` gives that type.
    Otherwise an integer is an i32 (:class:`int`), a decimal number an f32 (:class:`float`),
    and anything else a string.

    :param str text: The value as typed.
    :raises UsageError: if a typed value does not parse, or an integer is out of range for its
        type.
    :returns: The value to send.
    """
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES:
        return _PREFIXES[prefix](rest)
    if re.fullmatch(r"[+-]?\d+", text):
        return _parse_int(text, "i32")
    if _DECIMAL.match(text):
        return float(text)
    return text


def parse_param(text: str) -> tuple[str, Any]:
    """
    Parses one ``NAME=VALUE`` argument.

    :param str text: The argument.
    :raises UsageError: if there is no ``=``, the name is not 1 to 4 uppercase letters, digits or
        spaces, or the value is invalid (see :func:`parse_value`).
    :returns: ``(name, value)``.
    """
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"invalid param {text!r}: use NAME=VALUE")
    if not w.IDENTIFIER_RE.match(name):
        raise UsageError(
            f"invalid param name {name!r}: use 1 to 4 uppercase letters or digits{_did_you_mean(name)}"
        )
    return name, parse_value(value)


def _did_you_mean(name: str) -> str:
    """The hint for a name that would be a valid identifier in upper case."""
    return f" (did you mean {name.upper()}?)" if w.IDENTIFIER_RE.match(name.upper()) else ""
