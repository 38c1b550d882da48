"""
Fleets of nodes
===============

:class:`Fleet` streams from many NCP nodes at once in one event loop: it connects in the
background, re-sends subscriptions after every reconnect, merges the fields of all nodes into
one ``async for`` loop and keeps each node's state in a :class:`Node`. :func:`shard` and
:func:`run_sharded` spread a large fleet over several worker processes.
"""

from __future__ import annotations

from ncplib.fleet._backoff import Backoff
from ncplib.fleet._fleet import Fleet
from ncplib.fleet._node import Address, Node
from ncplib.fleet._shard import run_sharded, shard

__all__ = ["Fleet", "Node", "Address", "Backoff", "shard", "run_sharded"]
