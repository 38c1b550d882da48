"""
Simulated RFeye node
====================

An NCP server that behaves like an RFeye spectrum-monitoring node closely enough to develop and
test clients without hardware: it answers the ``LINK`` handshake, acknowledges every command
with an ``ACKN`` field and then replies with synthetic but realistic spectrum sweeps and I/Q
captures.

Start one from the command line with ``ncplib node``, or in a program::

    server = await ncplib.node.start_node("127.0.0.1", 9999)

Commands, by packet type and field name (every reply repeats the request's packet type, field
name and field id):

``DSPC``, ``NODE``
    Answered once.
``DSPL``
    Answered repeatedly, at ``rate`` replies per second, until the client disconnects or sends
    another ``DSPL`` command with the same field name (which replaces the stream).
``SWEP``
    Spectrum sweep. Params ``FSTA``/``FSTP`` start and stop frequency (MHz, default 400/500),
    ``RESB`` resolution bandwidth (Hz, default 100000), ``RLEV`` reference level (dBm, default
    -20). Reply: ``PDAT`` (data u8, one value per bin: ``power_dBm = RLEV - PDAT / 2``),
    ``FSTA``, ``FSTP``, ``RESB`` (the bin width actually used, Hz), ``RLEV`` and ``NBIN`` (the
    number of bins: the span divided by ``RESB``, 1 to 65536).
``TIME``
    I/Q capture. Params ``FCTR`` centre frequency (MHz, default 446), ``SAMP`` complex samples
    (default 4096, at most 262144), ``DECI`` decimation (default 8; the sample rate is 62.5 MHz
    / ``DECI``). Reply: ``DIQT`` (data i16, I and Q interleaved, ``2 * SAMP`` values),
    ``FCTR``, ``SAMP``, ``DECI``.
``STAT``
    Node status: ``OCON`` open connections, ``CADD`` client addresses, ``CIDS`` client names,
    ``RGPS`` GPS status, ``ELOC``.
``GPS``, ``SGPS``
    GPS fix: ``LATI``/``LONG`` (degrees times 1e6), ``ALTI``, ``SATS``, ``GFIX``, ``STAT``,
    ``SPEE``, ``HEAD``, ``UTIM`` (Unix time), ``TSTR``.

An invalid param gets a single reply field with ``ERRO="Bad request: ..."`` and ``ERRC=400``;
an unknown packet type or field name gets ``ERRO="Unknown command"`` and ``ERRC=400``. Neither
closes the connection.

Streams respect flow control: after each ``DSPL`` reply the node waits for
:meth:`~ncplib.Connection.drain`, so a client that reads slowly slows the stream down instead
of making the node buffer replies without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ncplib._signal import Scene
from ncplib.errors import NCPError, NetworkError, NetworkTimeoutError
from ncplib.server import start_server

if TYPE_CHECKING:  # pragma: no cover
    from ncplib.connection import Connection, Field

__all__ = [
    "SimulatedNode",
    "start_node",
    "DEFAULT_RATE",
    "DEFAULT_PORT",
    "MAX_BINS",
    "MAX_SAMPLES",
]

logger = logging.getLogger(__name__)

#: Default ``DSPL`` replies per second, per stream.
DEFAULT_RATE = 10.0
#: The port real nodes listen on for plain NCP (used by ``ncplib node``; :func:`start_node`
#: defaults to a free port).
DEFAULT_PORT = 9999
#: The most bins in one sweep.
MAX_BINS = 65536
#: The most complex samples in one I/Q capture.
MAX_SAMPLES = 262144
#: Highest frequency the simulated receiver tunes to, MHz.
MAX_FREQUENCY_MHZ = 20000.0

_ONCE_PACKET_TYPES = frozenset({"DSPC", "NODE"})
_STREAM_PACKET_TYPE = "DSPL"

_Params = dict[str, Any]


class _BadRequest(Exception):
    """A command's params are invalid; the message says why (sent back in ``ERRO``)."""


def _number(
    field: Field, name: str, default: float, low: float, high: float, *, integer: bool = False
) -> Any:
    """Reads an optional numeric param, checked to be within ``low..high``."""
    value = field.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f"{name} must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise _BadRequest(f"{name} must be between {low:g} and {high:g}")
    if integer and value != int(value):
        raise _BadRequest(f"{name} must be a whole number")
    return value


class SimulatedNode:
    """
    The behaviour of a simulated RFeye node, shared by all its connections.

    Pass :meth:`handle` to :func:`ncplib.start_server` as its ``client_connected`` callback, or
    call :meth:`start` (or :func:`start_node`) to do that.

    :param float rate: ``DSPL`` replies per second, per stream; ``0`` sends as fast as the client
        reads them.
    :param str synthesis: ``"numpy"``, ``"python"`` (pure Python, slower) or ``"auto"`` (numpy
        when it is installed) to compute the signals.
    :param seed: Seed for the simulated noise, for reproducible output.
    :param str serial: The node's name, its ``SEID`` in :attr:`helo_params`.
    :raises ValueError: if ``rate`` is negative or not a number, or ``synthesis`` is unknown.
    :raises ImportError: if ``synthesis`` is ``"numpy"`` and numpy is not installed.
    """

    def __init__(
        self,
        *,
        rate: float = DEFAULT_RATE,
        synthesis: Literal["auto", "numpy", "python"] = "auto",
        seed: int | None = None,
        serial: str = "rfeye-sim",
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < math.inf:
            raise ValueError(f"rate must be a non-negative number, not {rate!r}")
        if synthesis not in ("auto", "numpy", "python"):
            raise ValueError(f"synthesis must be 'auto', 'numpy' or 'python', not {synthesis!r}")
        #: ``DSPL`` replies per second, per stream (0: unthrottled).
        self.rate = float(rate)
        #: The simulated radio scene.
        self.scene = Scene(use_numpy=None if synthesis == "auto" else synthesis == "numpy", seed=seed)
        #: The identity a real node announces in its ``HELO`` handshake field (firmware version,
        #: name, MAC address). Sent when :func:`ncplib.start_server` accepts ``helo_params``;
        #: otherwise the handshake's ``HELO`` field has no params.
        self.helo_params: dict[str, str] = {
            "NCPV": "ncplib simulated node 7.0",
            "SEID": serial,
            "MACA": "02:00:5e:10:00:01",
        }
        self._started = time.monotonic()
        self._connections: set[Connection] = set()
        self._commands: dict[str, Callable[[Field], Callable[[], _Params]]] = {
            "SWEP": self._swep,
            "TIME": self._time,
            "STAT": self._stat,
            "GPS": self._gps,
            "SGPS": self._gps,
        }

    @property
    def connections(self) -> frozenset[Connection]:
        """The connections being served now."""
        return frozenset(self._connections)

    def elapsed(self) -> float:
        """Seconds since the node was created: the clock of the simulated scene."""
        return time.monotonic() - self._started

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, timeout: int = 60) -> asyncio.Server:
        """
        Starts serving on ``host`` and ``port``.

        :param str host: The address to listen on.
        :param int port: The port to listen on; 0 picks a free one (read it from the returned
            server's ``sockets``).
        :param int timeout: The network timeout, in seconds (see :func:`ncplib.start_server`).
        :raises OSError: if the address cannot be bound.
        :returns: The listening :class:`asyncio.Server`.
        """
        extra: dict[str, Any] = {}
        if "helo_params" in inspect.signature(start_server).parameters:
            extra["helo_params"] = self.helo_params
        server: asyncio.Server = await start_server(self.handle, host, port, timeout=timeout, **extra)
        return server

    async def handle(self, connection: Connection) -> None:
        """
        Serves one client connection until it closes.

        :param connection: The connection, from :func:`ncplib.start_server`.
        """
        self._connections.add(connection)
        streams: dict[str, asyncio.Task[None]] = {}
        try:
            async for field in connection:
                task = self._dispatch(connection, field)
                if task is not None:
                    old = streams.pop(field.name, None)
                    if old is not None:
                        old.cancel()
                    streams[field.name] = task
        except (NetworkError, NetworkTimeoutError) as ex:
            # The client went away or fell silent. (A malformed packet, DecodeError, is left to
            # the server, which answers it with "Bad request".)
            logger.info("Simulated node: connection ended: %s", ex)
        finally:
            self._connections.discard(connection)
            for task in streams.values():
                task.cancel()
            for task in streams.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _dispatch(self, connection: Connection, field: Field) -> asyncio.Task[None] | None:
        """Answers one command; returns the task of a new stream, if it starts one."""
        command = self._commands.get(field.name)
        stream = field.packet_type == _STREAM_PACKET_TYPE
        if command is None or not (stream or field.packet_type in _ONCE_PACKET_TYPES):
            logger.info("Simulated node: unknown command %s %s", field.packet_type, field.name)
            field.send(ERRO="Unknown command", ERRC=400)
            return None
        try:
            make_reply = command(field)
        except _BadRequest as ex:
            field.send(ERRO=f"Bad request: {ex}", ERRC=400)
            return None
        field.send(ACKN=1)
        if not stream:
            field.send(**make_reply())
            return None
        return asyncio.ensure_future(self._stream(connection, field, make_reply))

    async def _stream(self, connection: Connection, field: Field, make_reply: Callable[[], _Params]) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate if self.rate else 0.0
        deadline = loop.time()
        try:
            while True:
                field.send(**make_reply())
                # Flow control: wait while the client is slow to read what was sent.
                await connection.drain()
                if interval:
                    deadline += interval
                    now = loop.time()
                    if deadline < now - interval:
                        deadline = now  # Fell behind (a slow client): do not burst to catch up.
                    await asyncio.sleep(max(0.0, deadline - now))
                else:
                    await asyncio.sleep(0)
        except NCPError as ex:
            logger.debug("Simulated node: stream %s ended: %s", field.name, ex)

    # Commands: each validates the request's params, then returns a function making one reply.

    def _swep(self, field: Field) -> Callable[[], _Params]:
        fsta = _number(field, "FSTA", 400, 0.0, MAX_FREQUENCY_MHZ)
        fstp = _number(field, "FSTP", 500, 0.0, MAX_FREQUENCY_MHZ)
        resb = _number(field, "RESB", 100000, 1.0, 1e9)
        rlev = _number(field, "RLEV", -20, -200.0, 50.0)
        if fstp <= fsta:
            raise _BadRequest("FSTP must be greater than FSTA")
        span_hz = (float(fstp) - float(fsta)) * 1e6
        bins = max(1, min(MAX_BINS, round(span_hz / float(resb))))
        used_resb = round(span_hz / bins)

        def reply() -> _Params:
            pdat = self.scene.sweep(float(fsta), float(fstp), bins, float(rlev), self.elapsed())
            return {"PDAT": pdat, "FSTA": fsta, "FSTP": fstp, "RESB": used_resb, "RLEV": rlev, "NBIN": bins}

        return reply

    def _time(self, field: Field) -> Callable[[], _Params]:
        fctr = _number(field, "FCTR", 446, 0.0, MAX_FREQUENCY_MHZ)
        samp = _number(field, "SAMP", 4096, 1, 2**31 - 1, integer=True)
        deci = _number(field, "DECI", 8, 1, 65536, integer=True)
        samples = min(int(samp), MAX_SAMPLES)
        decimation = int(deci)

        def reply() -> _Params:
            diqt = self.scene.iq(float(fctr), samples, decimation, self.elapsed())
            return {"DIQT": diqt, "FCTR": fctr, "SAMP": samples, "DECI": decimation}

        return reply

    def _stat(self, field: Field) -> Callable[[], _Params]:
        def reply() -> _Params:
            connections = list(self._connections)
            addresses = []
            for connection in connections:
                peer = connection.transport.get_extra_info("peername")
                addresses.append(str(peer[0]) if peer else "")
            return {
                "OCON": len(connections),
                "CADD": ",".join(addresses),
                "CIDS": ",".join(connection.remote_hostname for connection in connections),
                "RGPS": ",".join("GPS fix" for _ in connections),
                "ELOC": 0,
            }

        return reply

    def _gps(self, field: Field) -> Callable[[], _Params]:
        def reply() -> _Params:
            now = time.time()
            return {
                "LATI": 52205300,
                "LONG": 119300,
                "ALTI": 1500,
                "SATS": 9,
                "GFIX": 1,
                "STAT": 1,
                "SPEE": 0,
                "HEAD": 0,
                "UTIM": int(now),
                "TSTR": time.asctime(time.gmtime(now)),
            }

        return reply


async def start_node(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    rate: float = DEFAULT_RATE,
    timeout: int = 60,
    synthesis: Literal["auto", "numpy", "python"] = "auto",
    seed: int | None = None,
) -> asyncio.Server:
    """
    Starts a simulated RFeye node.

    :param str host: The address to listen on.
    :param int port: The port to listen on; 0 (the default) picks a free one: read it with
        ``server.sockets[0].getsockname()[1]``.
    :param float rate: ``DSPL`` replies per second, per stream; 0 for as fast as the client reads.
    :param int timeout: The network timeout, in seconds (see :func:`ncplib.start_server`).
    :param str synthesis: ``"numpy"``, ``"python"`` or ``"auto"``: see :class:`SimulatedNode`.
    :param seed: Seed for the simulated noise.
    :raises ValueError: if ``rate`` or ``synthesis`` is invalid.
    :raises ImportError: if ``synthesis`` is ``"numpy"`` and numpy is not installed.
    :raises OSError: if the address cannot be bound.
    :returns: The listening :class:`asyncio.Server`; close it to stop the node.
    """
    node = SimulatedNode(rate=rate, synthesis=synthesis, seed=seed)
    return await node.start(host, port, timeout=timeout)
