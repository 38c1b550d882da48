"""
Replaying a capture file
========================

:class:`ReplayNode` serves the fields recorded in a capture file (:mod:`ncplib.capture`) as if
it were the node they came from, so that a client can be developed against a capture of a real
node without the node. ``ncplib node --replay FILE`` runs one.

What a command gets
-------------------

A command is answered from the recorded fields with the same packet type and field name or,
when there are none, the recorded fields of the same field name under another packet type (the
first such packet type in the capture): a ``DSPC SWEP`` request is answered from a recorded
``DSPL SWEP`` stream. The replies are the recorded params as they are, under the request's
packet type, field name and field id, timestamped when sent, as a node's replies are. As a node
does, it first replies ``ACKN``, then:

- ``DSPL`` (a stream): every recorded field in order, at the recorded pace (the gaps between
  their packet timestamps, divided by ``speed``), until the end of the capture or, with
  ``loop``, again and again until the client disconnects or replaces the stream. Without
  ``loop``, the end of the capture is reported: one more ``ACKN`` with ``WARN`` (``"end of the
  capture: ..."``) and ``WARC`` :data:`WARC_CAPTURE_ENDED`, which a client (6.1.0 included,
  with its default ``auto_warn`` and ``auto_ackn``) shows as a :exc:`~ncplib.CommandWarning`
  without delivering a field; nothing follows it.
- any other packet type: the next recorded field, one per request (after the last, the first).

The command's params are not looked at: the recording is what it is. Nothing is ignored in
silence, though (as for :mod:`ncplib.node`): when the command has params, or is answered from
another packet type, the first ``ACKN`` carries ``WARN`` saying so and ``WARC``
:data:`~ncplib.node.WARC_IGNORED`.

A command with no recorded field gets ``ERRO="Unknown command"``, ``ERRC=400``. Recorded
acknowledgements (``ACKN``) and ``LINK`` packets are not replayed.

The file is read as it is replayed, never held in memory; damaged packets are skipped with a
warning.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from ncplib.capture import CapturedField, CaptureReader
from ncplib.errors import NCPError
from ncplib.node import WARC_IGNORED, SimulatedNode

if TYPE_CHECKING:  # pragma: no cover
    from ncplib.connection import Connection, Field

__all__ = ["ReplayNode", "WARC_CAPTURE_ENDED"]

logger = logging.getLogger(__name__)

#: ``WARC`` of the warning that ends a ``DSPL`` stream at the end of the capture (without
#: ``loop``); above the simulated node's codes (:data:`~ncplib.node.WARC_IGNORED`,
#: :data:`~ncplib.node.WARC_CAPPED`).
WARC_CAPTURE_ENDED = 3

_STREAM_PACKET_TYPE = "DSPL"
_NOT_REPLAYED = frozenset({"ACKN"})


def _replayable(field: CapturedField) -> bool:
    return field.packet_type != "LINK" and not _NOT_REPLAYED.intersection(field)


def _replay_warning(field: Field, key: tuple[str, str]) -> dict[str, str | int]:
    """The ``WARN`` and ``WARC`` of a command's acknowledgement (none if it is answered as asked)."""
    notes = []
    if field:
        notes.append(f"{', '.join(field)} ignored: a replay answers with the recorded fields as they are")
    if key[0] != field.packet_type:
        notes.append(f"answered from the recorded {key[0]} {key[1]} fields")
    return {"WARN": "; ".join(notes), "WARC": WARC_IGNORED} if notes else {}


class ReplayNode(SimulatedNode):
    """
    A node that answers commands with the fields of a capture file.

    :param file: The capture file (``.ncp``).
    :param float speed: Replay at this many times the recorded pace; ``math.inf`` for as fast as
        the client reads.
    :param bool loop: Start again at the start of the capture after the last field.
    :param str serial: The node's name, its ``SEID`` in the handshake.
    :raises OSError: if the file cannot be read.
    :raises ValueError: if ``speed`` is not positive, or the file holds no field to replay.

    :meth:`start` and :meth:`handle` serve it as for :class:`~ncplib.node.SimulatedNode`.
    """

    def __init__(
        self,
        file: str | os.PathLike[str],
        *,
        speed: float = 1.0,
        loop: bool = False,
        serial: str = "rfeye-replay",
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0:
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        super().__init__(rate=0, serial=serial)
        self.helo_params["NCPV"] = "ncplib replay node"
        self.path = os.fspath(file)
        self.speed = float(speed)
        self.loop = loop
        # Per connection, where each one-off command has got to in the recording.
        self._cursors: dict[Connection, dict[tuple[str, str], Generator[CapturedField, None, None]]] = {}
        #: How many fields the capture holds for each (packet type, field name).
        self.recorded: dict[tuple[str, str], int] = {}
        for field in self._read():
            key = (field.packet_type, field.name)
            self.recorded[key] = self.recorded.get(key, 0) + 1
        if not self.recorded:
            raise ValueError("no fields to replay")
        logger.info(
            "Replaying %s: %s", self.path, ", ".join(f"{t} {n} x{c}" for (t, n), c in self.recorded.items())
        )

    def _read(self) -> Iterator[CapturedField]:
        with CaptureReader(self.path, skip_damaged=True) as reader:
            for field in reader.fields():
                if _replayable(field):
                    yield field

    def _recorded(self, key: tuple[str, str]) -> Generator[CapturedField, None, None]:
        """The recorded fields of ``key``, in order; forever when looping."""
        while True:
            for field in self._read():
                if (field.packet_type, field.name) == key:
                    yield field
            if not self.loop:
                return

    def _key(self, field: Field) -> tuple[str, str] | None:
        key = (field.packet_type, field.name)
        if key in self.recorded:
            return key
        same_name = [recorded for recorded in self.recorded if recorded[1] == field.name]
        return same_name[0] if same_name else None

    def _dispatch(self, connection: Connection, field: Field) -> asyncio.Task[None] | None:
        key = self._key(field)
        if key is None:
            logger.info("Replay node: nothing recorded for %s %s", field.packet_type, field.name)
            field.send(ERRO="Unknown command", ERRC=400)
            return None
        field.send(ACKN=1, **_replay_warning(field, key))
        if field.packet_type == _STREAM_PACKET_TYPE:
            return asyncio.ensure_future(self._replay(connection, field, key))
        self._forget_closed()
        cursors = self._cursors.setdefault(connection, {})
        cursor = cursors.get(key)
        reply = next(cursor, None) if cursor is not None else None
        if reply is None:
            cursor = cursors[key] = self._recorded(key)
            reply = next(cursor, None)
        if reply is not None:
            field.send(**reply)
        return None

    def _forget_closed(self) -> None:
        """Drops the cursors of connections that have ended."""
        for gone in [connection for connection in self._cursors if connection not in self._connections]:
            for cursor in self._cursors.pop(gone).values():
                cursor.close()

    async def _replay(self, connection: Connection, field: Field, key: tuple[str, str]) -> None:
        loop = asyncio.get_running_loop()
        recorded = self._recorded(key)
        start: float | None = None
        first: datetime | None = None
        previous: datetime | None = None
        sent = 0
        try:
            for reply in recorded:
                stamp = reply.packet_timestamp
                if start is None or first is None or previous is None or stamp < previous:
                    # The start, or the capture began again (looping): pace from here.
                    start, first = loop.time(), stamp
                elif math.isfinite(self.speed):
                    due = start + (stamp - first).total_seconds() / self.speed
                    await asyncio.sleep(max(0.0, due - loop.time()))
                previous = stamp
                field.send(**reply)
                sent += 1
                await connection.drain()
                await asyncio.sleep(0)
            # Only reached without looping: say so rather than go quiet.
            field.send(
                ACKN=1,
                WARN=f"end of the capture: all {sent} recorded {key[0]} {key[1]} fields sent",
                WARC=WARC_CAPTURE_ENDED,
            )
            await connection.drain()
        except NCPError as ex:
            logger.debug("Replay node: stream %s ended: %s", field.name, ex)
        finally:
            recorded.close()
