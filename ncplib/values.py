"""
NCP value types
===============

Python types that select an NCP data type when sending, and that mark the
NCP type of a decoded value.

Plain Python values map onto NCP types as follows: :class:`int` (and
:class:`bool`) is sent as ``i32``, :class:`float` as ``f32``, :class:`str`
as ``string``, :class:`bytes` as ``raw`` and :class:`array.array` as the
``data`` type of its typecode. Wrap a value in one of the classes below to
send it as another NCP type. Decoded values of these NCP types come back
wrapped in the same classes, so a value read from one packet can be sent on
unchanged.
"""

from __future__ import annotations

__all__ = ["u32", "i64", "u64", "f64"]


class u32(int):
    """
    A u32 value.

    Wrap any :class:`int` value to be encoded as an unsigned 32-bit integer
    in :class:`u32`. Values outside ``0 <= value < 2**32`` are rejected with
    :exc:`ValueError` when sent.
    """

    __slots__ = ()


class i64(int):
    """
    An i64 value.

    Wrap any :class:`int` value to be encoded as a signed 64-bit integer in
    :class:`i64`. Values outside ``-2**63 <= value < 2**63`` are rejected
    with :exc:`ValueError` when sent.
    """

    __slots__ = ()


class u64(int):
    """
    A u64 value.

    Wrap any :class:`int` value to be encoded as an unsigned 64-bit integer
    in :class:`u64`. Values outside ``0 <= value < 2**64`` are rejected with
    :exc:`ValueError` when sent.
    """

    __slots__ = ()


class f64(float):
    """
    A f64 value.

    Wrap any :class:`float` value to be encoded as a 64-bit (double
    precision) float in :class:`f64`. A plain :class:`float` is sent as f32.
    """

    __slots__ = ()
