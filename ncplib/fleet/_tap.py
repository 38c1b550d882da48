"""
The callback through which one node's protocol hands its fields to its :class:`~ncplib.Fleet`.

A node's protocol calls it (as ``NCPProtocol.on_data``) whenever a complete packet may have
arrived, and when its connection ends: possibly many times per pass of the event loop, and once
per field in the fleet shape (one packet per read), so it is on the hot path. While the fleet's
consumer waits for fields (so nobody else is taking any), the tap takes the node's fields at
once, while the packet's bytes and the protocol are still in the CPU's caches: at most
:data:`TURN` of them, into the fleet's batch, in arrival order behind those already taken.
Otherwise (the consumer is busy, the batch is full, or the node has more than a turn to read)
it puts the node, once, in the fleet's ring of ready nodes, where the consumer gives it turns.
Either way it wakes the consumer if it sleeps.

:class:`Tap` is the specification, and the implementation in pure Python. The compiled codec
has the same class (``ncplib/_tap.pxi``), which takes the common packet itself (one field,
nothing for the connection's filters, debug logging off), building its field without a call
into Python, and leaves every other case to the fleet's ``_take``, which goes through
``Connection._recv_nowait``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

from ncplib.codec import impl as _codec
from ncplib.connection import Connection, Field
from ncplib.errors import CommandError, CommandWarning
from ncplib.protocol import FILTERED_PARAMS, NOTICE_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from ncplib.fleet._node import Node

__all__ = ["Tap", "TURN", "BATCH"]

#: The most fields taken from one node before the next ready node has its turn.
TURN = 16
#: The most fields taken ahead (decoded, waiting in the fleet to be handed out).
BATCH = 256


class Merger(Protocol):
    """What a tap uses of its fleet."""

    _waiter: asyncio.Future[None] | None

    def _take(
        self, node: Node, connection: Connection, batch: deque[tuple[Node, Field]], limit: int
    ) -> bool: ...  # pragma: no cover

    def _end(self, node: Node, ex: BaseException) -> None: ...  # pragma: no cover

    def _command_error(self, node: Node, ex: CommandError | CommandWarning) -> None: ...  # pragma: no cover


class Tap:
    """
    The ``on_data`` callback of one node's protocols (the same across reconnects); see the
    module docstring.

    :param fleet: The node's fleet; its ``_take`` takes up to a number of the node's fields into
        the batch and says whether the node has nothing more to read for now.
    :param node: The node.
    :param batch: The fleet's fields taken and not handed out yet, as ``(node, field)``.
    :param ready: The fleet's ring of nodes waiting for a turn.
    """

    __slots__ = ("batch", "fleet", "node", "ready")

    def __init__(
        self, fleet: Merger, node: Node, batch: deque[tuple[Node, Field]], ready: deque[Node]
    ) -> None:
        self.fleet = fleet
        self.node = node
        self.batch = batch
        self.ready = ready

    def __call__(self) -> None:
        node = self.node
        if node._queued:
            return
        fleet = self.fleet
        waiter = fleet._waiter
        batch = self.batch
        if waiter is not None and len(batch) < BATCH:
            connection = node._connection
            if connection is not None and fleet._take(node, connection, batch, TURN):
                # Caught up, just now: the fleet's check for silent nodes counts from here.
                node._idle_since = connection._protocol.last_received
                if not waiter.done():
                    waiter.set_result(None)
                return
        node._queued = True
        self.ready.append(node)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# The compiled tap takes the constants and the field type from here (their one definition).
_configure = getattr(_codec, "_configure_tap", None)
if _configure is not None:
    _configure(Field, FILTERED_PARAMS, NOTICE_FIELDS, TURN, BATCH)
    if not TYPE_CHECKING:
        Tap = _codec._Tap
