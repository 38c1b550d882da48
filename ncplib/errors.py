"""
Errors and warnings
===================

Every exception raised by ncplib because of the network or a peer derives
from :exc:`NCPError`; every warning it issues derives from
:exc:`NCPWarning`. Invalid values passed to the library by its caller raise
the usual :exc:`ValueError` or :exc:`TypeError`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Protocol

__all__ = [
    "NCPError",
    "NetworkError",
    "AuthenticationError",
    "NetworkTimeoutError",
    "ConnectionClosed",
    "CommandError",
    "DecodeError",
    "NCPWarning",
    "CommandWarning",
    "DecodeWarning",
]


class NCPError(Exception):
    """Base class for all exceptions raised by ncplib."""


class NCPWarning(Warning):
    """Base class for all warnings issued by ncplib."""


class NetworkError(NCPError, OSError):
    """Raised when an NCP :class:`~ncplib.Connection` cannot connect, or disconnects unexpectedly."""


class AuthenticationError(NCPError):
    """Raised when an NCP :class:`~ncplib.Connection` cannot authenticate."""


if sys.version_info >= (3, 11):
    _TimeoutBase = TimeoutError
else:  # pragma: no cover - asyncio.TimeoutError is a class of its own before 3.11

    class _TimeoutBase(asyncio.TimeoutError, TimeoutError):
        pass


class NetworkTimeoutError(NCPError, _TimeoutBase):
    """
    Raised when an NCP :class:`~ncplib.Connection` times out while performing network activity.

    It is also an :exc:`asyncio.TimeoutError` and a :exc:`TimeoutError`.
    """


class ConnectionClosed(NCPError, EOFError):
    """Raised when an NCP :class:`~ncplib.Connection` is closed gracefully."""


class DecodeError(NCPError, ValueError):
    """Raised when a non-recoverable error was encountered in a NCP packet."""


class DecodeWarning(NCPWarning):
    """Issued when a recoverable error was encountered in a NCP packet."""


class FieldLike(Protocol):
    """
    What :exc:`CommandError` and :exc:`CommandWarning` need of the field that triggered them
    (any :class:`ncplib.Field` or :class:`ncplib.sync.Field`): its packet type and name.
    """

    @property
    def packet_type(self) -> str: ...

    @property
    def name(self) -> str: ...


class _CommandMixin:
    field: FieldLike
    detail: str
    code: int

    def __init__(self, field: FieldLike, detail: str, code: int) -> None:
        where = f"{getattr(field, 'packet_type', '?')} {getattr(field, 'name', '?')}"
        Exception.__init__(self, f"{where} {detail!r} (code {code})")  # type: ignore[arg-type]
        self.field = field
        self.detail = detail
        self.code = code


class CommandError(_CommandMixin, NCPError):
    """
    Raised by the NCP client when the NCP server sends a NCP field containing an ``ERRO`` parameter.

    Can be disabled by setting ``auto_erro`` to :data:`False` in :func:`ncplib.connect`.

    .. attribute:: field

        The :class:`ncplib.Field` that triggered the error.

    .. attribute:: detail

        The human-readable :class:`str` message from the server.

    .. attribute:: code

        The :class:`int` code from the server.
    """


class CommandWarning(_CommandMixin, NCPWarning):
    """
    Issued by the NCP client when the NCP server sends a NCP field containing a ``WARN`` parameter.

    Can be disabled by setting ``auto_warn`` to :data:`False` in :func:`ncplib.connect`.

    .. attribute:: field

        The :class:`ncplib.Field` that triggered the warning.

    .. attribute:: detail

        The human-readable :class:`str` message from the server.

    .. attribute:: code

        The :class:`int` code from the server.
    """
