"""
Both codec modules, for tests that run against each of them directly, and shared strategies.

(Named ``codec_modules`` rather than ``codecs``: a module named ``codecs`` would be shadowed by
the standard library's, which every interpreter has already imported.)

The compiled codec's parameters are skipped when it is not built, unless
``NCPLIB_EXPECT_COMPILED=1`` says it must be: then its absence fails the tests.
"""

from __future__ import annotations

import array
import os
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest
from hypothesis import strategies as st

from ncplib import DecodeError, DecodeWarning, _pycodec, _wire, f64, i64, u32, u64

EXPECT_COMPILED = os.environ.get("NCPLIB_EXPECT_COMPILED") == "1"

try:
    from ncplib import _codec as compiled
except ImportError:
    if EXPECT_COMPILED:
        raise
    compiled = None  # type: ignore[assignment]

pure: ModuleType = _pycodec
_NOT_BUILT = pytest.mark.skipif(compiled is None, reason="the compiled codec is not built")

#: Parametrize a test over both codec modules: ``@CODECS`` then an argument ``codec``.
CODECS = pytest.mark.parametrize(
    "codec",
    [pytest.param(pure, id="pure"), pytest.param(compiled, id="compiled", marks=_NOT_BUILT)],
)
#: Skip a whole module that compares the two codecs when the compiled one is not built.
NEED_COMPILED = _NOT_BUILT

UTC = timezone.utc
TS = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any, list[tuple[type[Warning], str]]]:
    """
    Runs ``fn`` and returns ``("ok", result, warnings)`` or ``("raise", (type, message), warnings)``.

    Warnings are recorded, never raised, so that both codecs can be compared on them.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = ("ok", fn())
        except Exception as ex:  # the type is part of the outcome
            result = ("raise", (type(ex), str(ex)))
    return result[0], result[1], [(type(w.message), str(w.message)) for w in caught]


def decode_hostile(codec: ModuleType, data: Any, use_numpy: bool = False) -> Any:
    """
    Decodes ``data`` that may be malformed: the only acceptable outcomes are a packet (with
    DecodeWarnings at most) or a DecodeError. Returns the packet or the DecodeError.
    """
    kind, value, caught = outcome(lambda: codec.decode_packet(data, use_numpy))
    assert all(category is DecodeWarning for category, _ in caught), caught
    if kind == "raise":
        ex_type, message = value
        assert ex_type is DecodeError, f"{ex_type.__name__}: {message}"
        return DecodeError(message)
    return value


# Strategies.

IDENTIFIER_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
identifiers = st.text(IDENTIFIER_CHARS, min_size=1, max_size=4)
u32_ints = st.integers(0, 2**32 - 1)
# Every NCP timestamp: whole seconds fit in u32, microsecond precision.
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(1970, 1, 1) + timedelta(seconds=2**32 - 1),
    timezones=st.just(UTC),
)
strings = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


def _edges(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in ``lo..hi``, biased towards both ends and zero."""
    return st.one_of(st.sampled_from([lo, lo + 1, -1 if lo < 0 else 1, 0, hi - 1, hi]), st.integers(lo, hi))


def _int_array(typecode: str) -> st.SearchStrategy[array.array[Any]]:
    size = array.array(typecode).itemsize * 8
    signed = typecode.islower()
    lo, hi = (-(2 ** (size - 1)), 2 ** (size - 1) - 1) if signed else (0, 2**size - 1)
    return st.lists(_edges(lo, hi), max_size=12).map(lambda items: array.array(typecode, items))


#: Every array typecode that has an NCP data type.
ARRAY_TYPECODES = sorted(_wire.TYPECODE_TO_TYPE)

arrays = st.one_of(
    *[_int_array(code) for code in ARRAY_TYPECODES if code not in "fd"],
    st.lists(st.floats(width=32), max_size=8).map(lambda items: array.array("f", items)),
    st.lists(st.floats(), max_size=8).map(lambda items: array.array("d", items)),
)

#: Every kind of param value, each scalar type across its whole range and at its edges.
values = st.one_of(
    _edges(-(2**31), 2**31 - 1),
    st.booleans(),
    _edges(0, 2**32 - 1).map(u32),
    _edges(-(2**63), 2**63 - 1).map(i64),
    _edges(0, 2**64 - 1).map(u64),
    st.floats(width=32),
    st.floats().map(f64),
    strings,
    st.binary(max_size=24),
    arrays,
)

params = st.lists(st.tuples(identifiers, values), max_size=8)
fields = st.lists(st.tuples(identifiers, u32_ints, params), max_size=5)
packets = st.tuples(identifiers, u32_ints, timestamps, st.binary(max_size=4), fields)


def expected_value(value: Any) -> Any:
    """What a value sent as ``value`` decodes to (types and padding as the format has them)."""
    if type(value) is bool:
        return int(value)
    if isinstance(value, bytes):
        return value + bytes(-len(value) % 4)
    if isinstance(value, array.array):
        type_id = _wire.TYPECODE_TO_TYPE[value.typecode]
        typecode = _wire.DATA_TYPES[type_id][0]
        data = value.tobytes()
        return array.array(typecode, data + bytes(-len(data) % 4))
    return value


def expected_packet(packet: Any) -> Any:
    """What ``packet`` decodes to after encoding."""
    packet_type, packet_id, timestamp, info, fields_ = packet
    return (
        packet_type.rstrip(" "),
        packet_id,
        timestamp,
        info + bytes(4 - len(info)),
        [
            (name.rstrip(" "), field_id, [(p.rstrip(" "), expected_value(v)) for p, v in ps])
            for name, field_id, ps in fields_
        ],
    )
