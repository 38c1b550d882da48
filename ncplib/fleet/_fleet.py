"""
:class:`Fleet`: many nodes in one place, each reconnecting on its own.

How fields travel (the *merger*): each node's protocol calls the node's tap (its ``on_data``
callback, :mod:`ncplib.fleet._tap`) whenever a complete packet may have arrived, and when its
connection ends. While the consumer waits for fields, the tap takes the node's fields itself
(with ``Connection._recv_nowait``, never waiting; at most :data:`TURN` of them) into the fleet's
batch and resolves the one future the consumer sleeps on, so the consumer is woken at most once
per pass of the event loop however many fields arrive. While the consumer is busy, or a node has
more than a turn to read, the tap puts the node, once, in a ring of ready nodes instead, and the
consumer takes fields from the node at the head of the ring: at most :data:`TURN` fields, then
the next node has its turn (a fast node cannot starve a slow one). A node leaves the ring once
it has nothing complete to read. After one round over the nodes that were ready when it began,
the consumer lets the event loop run once: it takes from every connection about what one pass
of the loop reads, so it keeps up with a thousand connections instead of falling behind a fixed
budget per pass. At most ``BATCH`` fields are taken ahead; fields a lagging consumer has not
taken stay in their connection, which stops reading at its high-water mark, so TCP slows the
node down and memory stays bounded.

Each node has one task, idle while the node is connected: it connects, sends the
subscriptions, waits for the connection to end (the merger reports the end once it has taken
every field received before it, so a node's fields stay in order across reconnects), then waits
a backoff delay and connects again. A single periodic check, not one timer per node, closes
connections that received no complete packet for their negotiated timeout.
"""

from __future__ import annotations

import asyncio
import logging
import numbers
import operator
import random
import ssl as _ssl
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from ncplib.client import connect, default_port
from ncplib.connection import Connection, Field
from ncplib.errors import AuthenticationError, CommandError, CommandWarning, NetworkTimeoutError
from ncplib.fleet._backoff import Backoff, check_bounds
from ncplib.fleet._error_log import ErrorLog
from ncplib.fleet._node import Address, Node, address_list, parse_address
from ncplib.fleet._tap import BATCH, TURN, Tap
from ncplib.framing import DEFAULT_MAX_PACKET_SIZE, PacketReader
from ncplib.packets import Param, encode_packet

__all__ = ["Fleet", "TURN", "DEFAULT_FLEET_HIGH_WATER"]

# The documented logger name, not this private module's.
logger = logging.getLogger("ncplib.fleet")

#: The default ``high_water`` of a fleet's connections, in bytes.
DEFAULT_FLEET_HIGH_WATER = 512 * 1024
# The consumer lets the event loop run after each round over the nodes ready when the round
# began (so it takes from every connection about as much as arrives in one pass of the loop),
# and at least once every this many fields, so that timers (keep-alives) run in a long round.
_MOST_UNYIELDED = 8192
# Seconds between two checks for silent nodes (the negotiated timeout is at least 5 s).
_CHECK_INTERVAL = 1.0
_UTC = timezone.utc


def _as_count(name: str, value: Any) -> int:
    # A count of bytes: any integer type (numpy's included), not bool.
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


class Fleet:
    """
    Fields from many NCP nodes, merged into one stream, each node reconnecting on its own.

    ::

        fleet = ncplib.Fleet(["10.0.0.7", "node-12:9999"], timeout=10)
        fleet.subscribe("DSPL", "SWEP", FSTA=400, FSTP=500)
        async with fleet:
            async for node, field in fleet:
                print(node.address, field["PDAT"][: field["NBIN"]])  # NBIN bins; the rest is padding

    Nodes connect in the background once the ``async with`` block is entered; the loop yields
    ``(node, field)`` pairs as fields arrive, from whichever nodes are connected. A node that
    cannot be reached, drops its connection, sends no complete packet for its negotiated timeout or
    rejects the credentials is retried, with its error in :attr:`Node.last_error` and in the
    log; nothing of one node is raised out of the loop. The loop finds a connection's end after
    its last field and only then does the node reconnect: keep looping. Leaving the block (or :meth:`close`)
    closes every connection; the loop then ends.

    :param addresses: The nodes: ``"host"``, ``"host:port"``, ``"[IPv6]"``, ``"[IPv6]:port"`` (a bare IPv6
        address, ``"fe80::1"``, is a host without a port) or ``(host, port)`` pairs; anything
        else (a scheme such as ``tcp://``, a second port, a character no host name has) is
        refused here, not retried as a name lookup for ever. The port defaults as in
        :func:`ncplib.connect` (9999; 443 with ``ssl``; 80 with ``username``/``password``).
        Each entry is one :class:`Node` with a connection of its own: an address listed twice
        is connected twice (as load tests do). A list (any iterable but a string), at least one
        address; a pair's port is an :class:`int`.
    :param int timeout: Proposed to each node as the connection's timeout in seconds (the node
        may change it, 5 to 60 for an ncplib server); a connection that receives no complete
        packet for the negotiated timeout (bytes trickling in do not count, as for
        :meth:`ncplib.Connection.recv`) is closed and the node reconnects. Also bounds connecting.
        Greater than 0.
    :param bool use_numpy: Decode data params as read-only numpy arrays (see
        :func:`ncplib.connect`).
    :param reconnect_delay: ``(low, high)``: the shortest and longest delay in seconds before a
        reconnection attempt. After each failure in a row the delay is drawn uniformly from
        ``low`` to a ceiling that doubles from ``2 * low`` up to ``high`` (exponential backoff,
        full jitter). An authentication failure waits ``high``.
    :param float stable_after: Seconds a connection must last for the backoff to start again
        from ``low`` when it ends (default: ``high``).
    :param int max_connecting: The most connection attempts (and handshakes) in progress at
        once, so that thousands of nodes do not overflow a listen queue or the resolver.
    :param int high_water: Received bytes held unread per node above which the fleet stops
        reading from that node's socket until the loop has caught up (TCP then slows the node
        down). Memory per node is bounded by about this plus one packet, so the default (512 KiB)
        is smaller than a single connection's: a fleet has many.
    :param random.Random rng: The source of the backoff jitter (for reproducible tests).
    :param hostname: Passed to :func:`ncplib.connect`, as are ``connection_username``,
        ``connection_domain``, ``auto_erro``, ``auto_warn``, ``auto_ackn``, ``ssl``,
        ``username``, ``password`` and ``max_packet_size``; the auto options apply per node
        (a node's :exc:`~ncplib.CommandError` goes to its :attr:`Node.last_error`, as does a
        :exc:`~ncplib.CommandWarning` that a warnings filter turns into an error).
    :raises ValueError: if an address is invalid, there are no addresses, or ``timeout``,
        ``reconnect_delay``, ``stable_after``, ``max_connecting``, ``high_water`` or
        ``max_packet_size`` is out of range.
    :raises TypeError: if ``addresses`` is a string (or bytes) rather than an iterable of
        addresses, an address is neither a string nor a ``(host, int port)`` pair,
        ``timeout`` is not a number, ``high_water`` or ``max_packet_size`` is not an int, or
        ``ssl`` is neither a bool nor an :class:`ssl.SSLContext` (:data:`None`, as for
        :func:`ncplib.connect`, means plain TCP).
    :raises ImportError: if ``use_numpy`` is true and numpy is not installed.
    """

    def __init__(
        self,
        addresses: Iterable[Address],
        *,
        timeout: int = 60,
        use_numpy: bool = False,
        reconnect_delay: tuple[float, float] = (0.5, 30.0),
        stable_after: float | None = None,
        max_connecting: int = 100,
        high_water: int = DEFAULT_FLEET_HIGH_WATER,
        rng: random.Random | None = None,
        hostname: str | None = None,
        connection_username: str | None = None,
        connection_domain: str = "",
        auto_erro: bool = True,
        auto_warn: bool = True,
        auto_ackn: bool = True,
        ssl: bool | _ssl.SSLContext = False,
        username: str = "",
        password: str = "",
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    ) -> None:
        addresses = address_list(addresses)
        # (int and float named for the type checker, which does not know the numeric tower.)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, numbers.Real)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if not timeout > 0:
            # A timeout of 0 or less would make every connection attempt time out at once.
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self._low, self._high = check_bounds(reconnect_delay)
        self._stable_after = self._high if stable_after is None else float(stable_after)
        if not self._stable_after >= 0:
            raise ValueError(f"stable_after must be >= 0, not {stable_after!r}")
        if max_connecting < 1:
            raise ValueError(f"max_connecting must be >= 1, not {max_connecting!r}")
        # Checked here, not at each node's connection, where a wrong value would only be
        # retried for ever.
        high_water = _as_count("high_water", high_water)
        if high_water < 1:
            raise ValueError(f"high_water must be >= 1, not {high_water!r}")
        self._high_water = high_water
        max_packet_size = _as_count("max_packet_size", max_packet_size)
        # As connect() checks them before connecting: the reader's own limits.
        PacketReader(max_packet_size=max_packet_size, use_numpy=use_numpy)
        if ssl is not None and not isinstance(ssl, (bool, _ssl.SSLContext)):
            raise TypeError(f"ssl must be a bool or an ssl.SSLContext, not {type(ssl).__name__}")
        port = default_port(ssl=ssl, authenticate=bool(username or password))
        self._nodes = [Node(*parse_address(address, port)) for address in addresses]
        if not self._nodes:
            # Its loop would wait forever for a field.
            raise ValueError("a Fleet needs at least one address")
        self._connect_args: dict[str, Any] = {
            "hostname": hostname,
            "connection_username": connection_username,
            "connection_domain": connection_domain,
            "timeout": timeout,
            "auto_erro": auto_erro,
            "auto_warn": auto_warn,
            "auto_ackn": auto_ackn,
            "ssl": ssl,
            "username": username,
            "password": password,
            "use_numpy": use_numpy,
            "max_packet_size": max_packet_size,
        }
        self._max_connecting = max_connecting
        self._random = rng if rng is not None else random.Random()
        self._subscriptions: dict[tuple[str, str], dict[str, Param]] = {}
        self._ready: deque[Node] = deque()
        # Fields taken from the nodes (in their turns, or by their taps) and not yet handed out,
        # in order.
        self._batch: deque[tuple[Node, Field]] = deque()
        for node in self._nodes:
            node._on_data = Tap(self, node, self._batch, self._ready)
        self._round_left = 0
        # When the round over the ready nodes began (event-loop time).
        self._round_began = 0.0
        self._unyielded = 0
        self._waiter: asyncio.Future[None] | None = None
        self._consuming = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._check_handle: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Semaphore | None = None
        self._started = False
        self._closing = False

    # The nodes.

    @property
    def nodes(self) -> list[Node]:
        """The :class:`Node` of every address, in the order given (a new list each time)."""
        return list(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    # Commands.

    def subscribe(self, packet_type: str, field_name: str, **params: Param) -> None:
        """
        Sends a command to every connected node now, and to each node again whenever it
        (re)connects, after the handshake and in the order subscribed.

        Subscribing again to the same ``(packet_type, field_name)`` replaces the earlier params
        (as an RFeye node replaces a ``DSPL`` stream with the same field name).

        :param str packet_type: The packet type, a valid identifier (``DSPL`` for a stream).
        :param str field_name: The field name, a valid identifier.
        :param \\**params: The command's NCP params.
        :raises ValueError: if a name is not a valid identifier or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        """
        # Fail here, not in every node's task later.
        encode_packet(packet_type, 1, datetime.now(_UTC), b"\0\0\0\0", [(field_name, 0, params.items())])
        self._subscriptions[(packet_type, field_name)] = dict(params)
        for node in self._nodes:
            if node.connected:
                assert node._connection is not None
                node._connection.send(packet_type, field_name, **params)

    def unsubscribe(self, packet_type: str, field_name: str) -> None:
        """
        Stops sending a subscribed command on reconnects (nothing is sent to the nodes: send
        whatever stops the stream yourself with :meth:`send`).

        :raises KeyError: if there is no such subscription.
        """
        del self._subscriptions[(packet_type, field_name)]

    def send(self, packet_type: str, field_name: str, **params: Param) -> dict[Node, int]:
        """
        Sends a one-off command to every connected node (not to the others, nor again later).

        Replies arrive through the fleet's loop; each repeats the command's packet type, field
        name and field id.

        :param str packet_type: The packet type, a valid identifier.
        :param str field_name: The field name, a valid identifier.
        :param \\**params: The command's NCP params.
        :raises ValueError: if a name is not a valid identifier or a value is invalid.
        :raises TypeError: if a value is not one of the supported value types.
        :returns: The field id sent to each node, by node.
        """
        encode_packet(packet_type, 1, datetime.now(_UTC), b"\0\0\0\0", [(field_name, 0, params.items())])
        sent: dict[Node, int] = {}
        for node in self._nodes:
            if node.connected:
                assert node._connection is not None
                response = node._connection.send(packet_type, field_name, **params)
                sent[node] = next(iter(response._expected_fields))[1]
        return sent

    # Life cycle.

    async def __aenter__(self) -> Fleet:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def start(self) -> None:
        """
        Starts connecting every node in the background (``async with`` calls it).

        :raises RuntimeError: if the fleet was started or closed before, or no event loop is
            running.
        """
        if self._closing:
            raise RuntimeError("This Fleet was closed and cannot be started again: make a new one")
        if self._started:
            raise RuntimeError("Fleet already started")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Start a Fleet from a coroutine, in a running event loop: async with fleet: ..."
            ) from None
        self._started = True
        self._loop = loop
        self._connecting = asyncio.Semaphore(self._max_connecting)
        now = time.time()
        for node in self._nodes:
            # Down since the fleet started.
            node.changed = now
            self._tasks.append(loop.create_task(self._run_node(node)))
        self._check_handle = loop.call_at(loop.time() + _CHECK_INTERVAL, self._check_silent)

    def close(self) -> None:
        """Starts closing every connection and stops reconnecting; the fleet's loop ends."""
        if self._closing:
            return
        self._closing = True
        if self._check_handle is not None:
            self._check_handle.cancel()
            self._check_handle = None
        for task in self._tasks:
            task.cancel()
        self._ready.clear()
        self._batch.clear()
        self._wake_consumer()

    async def wait_closed(self) -> None:
        """Waits until every connection has closed and every task of the fleet has ended."""
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # The merged stream.

    def __aiter__(self) -> Fleet:
        return self

    async def __anext__(self) -> tuple[Node, Field]:
        """
        The next ``(node, field)`` received by any node.

        :raises StopAsyncIteration: once the fleet is closed.
        :raises RuntimeError: if the fleet was not started, or another task is waiting for a
            field from it at the same time.
        """
        batch = self._batch
        if batch and not self._closing:
            # Taken from the node's connection in its turn, nothing to wait for. (A coroutine
            # that returns at once is the cheapest awaitable: a done future costs twice as much.)
            item = batch.popleft()
            item[0].fields += 1
            return item
        # Turns and waits, in this coroutine: no second one per wake-up of the consumer.
        loop = self._loop
        if loop is None:
            if self._closing:
                # Closed before it was started: its loop ends, as after any close.
                raise StopAsyncIteration
            raise RuntimeError("Start the fleet first: async with fleet: async for node, field in fleet")
        if self._consuming:
            raise RuntimeError("Another task is already waiting for fields from this fleet")
        self._consuming = True
        ready = self._ready
        try:
            while True:
                if self._closing:
                    raise StopAsyncIteration
                if batch:
                    item = batch.popleft()
                    item[0].fields += 1
                    return item
                if not ready:
                    self._round_left = self._unyielded = 0
                    waiter = self._waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        self._waiter = None
                    continue
                if self._round_left <= 0 or self._unyielded >= _MOST_UNYIELDED:
                    if self._unyielded:
                        # A round over the ready nodes is done (or it is very long): let
                        # sockets be read and timers run. Nothing was taken yet, so a
                        # cancellation here loses nothing.
                        self._unyielded = 0
                        await asyncio.sleep(0)
                        continue
                    if self._round_left <= 0:
                        self._round_left = len(ready)
                        self._round_began = loop.time()
                # Turns of several nodes at once: the fields then go out without a coroutine each.
                while ready and self._round_left > 0 and len(batch) < BATCH:
                    self._take_turn(ready[0], batch)
        finally:
            self._consuming = False

    def _take_turn(self, node: Node, batch: deque[tuple[Node, Field]]) -> None:
        # Takes up to TURN fields of the node at the head of the ring into the batch, then moves
        # the node to the back of the ring, or out of it if it has nothing more to read.
        connection = node._connection
        if connection is None:  # pragma: no cover - queued only while connected
            self._unqueue(node)
            return
        before = len(batch)
        if self._take(node, connection, batch, TURN):
            # Caught up (or ended): the node's protocol calls on_data (and so queues it again)
            # when a packet arrives or the connection ends.
            self._unqueue(node)
            # For _check_silent, when the round began is close enough (well within a second).
            node._idle_since = self._round_began
        else:
            self._ready.rotate(-1)
            self._round_left -= 1
        self._unyielded += len(batch) - before

    def _take(self, node: Node, connection: Connection, batch: deque[tuple[Node, Field]], limit: int) -> bool:
        # Takes up to ``limit`` fields of the node into the batch (for its turn, or for its tap:
        # see ncplib.fleet._tap). True once the node has nothing more to read for now (caught up,
        # or its connection ended and the end is reported).
        recv = connection._recv_nowait
        taken = 0
        while taken < limit:
            try:
                field = recv()
            except (CommandError, CommandWarning) as ex:
                # A CommandWarning is raised only where a warnings filter turns it into an
                # error: reported on the node as a CommandError is, the connection kept.
                taken += 1
                self._command_error(node, ex)
                continue
            except Exception as ex:
                # The connection ended (ConnectionClosed, NetworkError, DecodeError, ...) after
                # every field received before the end was taken.
                self._end(node, ex)
                return True
            if field is None:
                return True
            batch.append((node, field))
            taken += 1
            # Most reads bring one packet: asking the connection whether it has caught up
            # spares a call of recv that would find nothing.
            if connection._caught_up():
                return True
        return False

    def _unqueue(self, node: Node) -> None:
        # The node is at the head of the ring.
        self._ready.popleft()
        node._queued = False
        self._round_left -= 1

    def _wake_consumer(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _command_error(self, node: Node, ex: CommandError | CommandWarning) -> None:
        node.last_error = ex
        if node._error_log is None:
            node._error_log = ErrorLog()
        text = node._error_log.record(time.monotonic(), str(ex))
        if text is not None:
            logger.warning("%s: %s", node.address, text)

    def _log_errors_held(self, node: Node) -> None:
        # The count of errors reported by a node but not logged (see _command_error).
        error_log = node._error_log
        summary = error_log.summary() if error_log is not None else None
        if summary is not None:
            logger.warning("%s: %s", node.address, summary)

    def _end(self, node: Node, ex: BaseException) -> None:
        connection = node._connection
        if connection is not None:
            connection._protocol.on_data = None
        reason = node._lost_reason or ex
        node._lost_reason = None
        ended = node._ended
        if ended is not None and not ended.done():
            ended.set_result(reason)

    def _check_silent(self) -> None:
        # One periodic check for all nodes: a connection that received no complete packet
        # (keep-alives included) for its negotiated timeout, while the fleet had nothing of it
        # left to read, is closed; the node then reconnects. As for Connection.recv, the clock
        # runs from the first byte of the packet still incomplete, else from when the fleet
        # caught up: a node that trickles bytes of a packet never completed is timed out.
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for node in self._nodes:
            connection = node._connection
            if connection is None or node._queued or not node.connected:
                continue
            limit = connection._timeout
            if limit <= 0:
                continue
            started = connection._protocol.packet_started
            since = node._idle_since if started is None else started
            if now - since > limit:
                node._lost_reason = NetworkTimeoutError(
                    f"No packet received from {node.address} for {limit} seconds"
                )
                connection.close()
        self._check_handle = loop.call_at(now + _CHECK_INTERVAL, self._check_silent)

    # Each node's task.

    async def _run_node(self, node: Node) -> None:
        loop = self._loop
        assert loop is not None and self._connecting is not None
        backoff = Backoff(self._low, self._high, self._random)
        delay = 0.0
        first = True
        try:
            # Not "while True": before Python 3.12, asyncio.wait_for (inside connect) can swallow
            # the cancellation that close() sends when it coincides with the connection's end.
            while not self._closing:
                if delay > 0:
                    node.retry_delay = delay
                    await asyncio.sleep(delay)
                    node.retry_delay = 0.0
                try:
                    async with self._connecting:
                        node.attempts += 1
                        node.last_attempt = time.time()
                        connection = await connect(node.host, node.port, **self._connect_args)
                except AuthenticationError as ex:
                    # Wrong credentials do not get right by retrying fast.
                    self._failed(node, ex)
                    delay = backoff.high
                    continue
                except Exception as ex:
                    self._failed(node, ex)
                    delay = backoff.next_delay()
                    continue
                if self._closing:
                    connection.close()
                    await connection.wait_closed()
                    break
                connected_at = loop.time()
                try:
                    reason = await self._serve(node, connection, first)
                except Exception as ex:  # pragma: no cover - a bug: keep the node going
                    logger.exception("%s: unexpected error", node.address)
                    reason = ex
                first = False
                if loop.time() - connected_at >= self._stable_after:
                    backoff.reset()
                self._failed(node, reason, lost=True)
                delay = backoff.next_delay()
        finally:
            node.retry_delay = 0.0
            connection_left = node._connection
            node._connection = None
            if connection_left is not None:
                connection_left._protocol.on_data = None
                connection_left.close()
                await connection_left.wait_closed()
            node._note_state()

    async def _serve(self, node: Node, connection: Connection, first: bool) -> BaseException:
        """Runs one connection of ``node`` until it ended; returns why it ended."""
        loop = self._loop
        assert loop is not None and node._on_data is not None
        ended: asyncio.Future[BaseException] = loop.create_future()
        node._ended = ended
        node._connection = connection
        node._idle_since = loop.time()
        if not first:
            node.reconnects += 1
        node._note_state()
        logger.info("%s: connected", node.address)
        # The next failure is a change worth a warning, even if it is the same as the last one.
        node._logged = None
        connection._protocol.set_high_water(self._high_water)
        for (packet_type, field_name), params in self._subscriptions.items():
            connection.send(packet_type, field_name, **params)
        connection._protocol.on_data = node._on_data
        # Fields may have arrived with the handshake.
        node._on_data()
        try:
            return await ended
        finally:
            node._connection = None
            self._log_errors_held(node)
            connection._protocol.on_data = None
            connection.close()
            await connection.wait_closed()

    def _failed(self, node: Node, ex: BaseException, *, lost: bool = False) -> None:
        node.last_error = ex
        # Moves Node.changed only when a connection was lost, not at a failed retry.
        node._note_state()
        description = f"{type(ex).__name__}: {ex}"
        what = "connection lost" if lost else "cannot connect"
        if description != node._logged:
            node._logged = description
            logger.warning("%s: %s (%s)", node.address, what, description)
        else:
            logger.debug("%s: %s (%s)", node.address, what, description)

    def __repr__(self) -> str:
        connected = sum(node.connected for node in self._nodes)
        return f"<Fleet {connected}/{len(self._nodes)} nodes connected>"
