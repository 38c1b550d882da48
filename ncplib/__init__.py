"""
ncplib
======

NCP (Node Communication Protocol) client and server library for Python 3, the protocol of CRFS
RFeye spectrum-monitoring nodes.
"""

from __future__ import annotations

from ncplib.client import connect
from ncplib.connection import Connection, Field, Response
from ncplib.errors import (
    AuthenticationError,
    CommandError,
    CommandWarning,
    ConnectionClosed,
    DecodeError,
    DecodeWarning,
    NCPError,
    NCPWarning,
    NetworkError,
    NetworkTimeoutError,
)
from ncplib.fleet import Fleet, Node
from ncplib.server import start_server
from ncplib.values import f64, i64, u32, u64

__version__ = "7.0.0.dev0"

__all__ = [
    "connect",
    "start_server",
    "Fleet",
    "Node",
    "Connection",
    "Response",
    "Field",
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
    "u32",
    "i64",
    "u64",
    "f64",
]
