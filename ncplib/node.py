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
    number of bins: the span divided by ``RESB``, 1 to :data:`MAX_BINS`).

    **Read the first** ``NBIN`` **values of** ``PDAT``: NCP pads every param to a multiple of 4
    bytes and a data param has no length of its own, so a sweep of 667 bins arrives as 668
    values, the last one a padding zero (which would read as a signal at ``RLEV``)::

        levels = field["RLEV"] - data_values(field, "PDAT") / 2  # numpy mode: dBm per bin

``TIME``
    I/Q capture, asked for in one of two ways (the physical params win when both are sent):

    * physically, as in CRFS's published client examples: ``FCTR`` centre frequency (MHz) with
      ``FCTM`` (the remainder in milli-hertz), ``RBME``/``RBMI`` the real-time bandwidth (MHz
      and milli-hertz) and ``LSEC``/``LNAN`` the capture length (seconds and nanoseconds). The
      sample rate is the lowest the receiver offers (62.5 MHz / ``DECI``, ``DECI`` a whole
      number up to :data:`MAX_DECIMATION`) that covers the bandwidth, and the sample count
      covers the length at that rate;
    * by the digitiser's settings: ``SAMP`` complex samples (default 4096) and ``DECI``
      decimation (default 8; the sample rate is 62.5 MHz / ``DECI``).

    ``FCTR`` defaults to 446 MHz. At most :data:`MAX_SAMPLES` samples and 62.5 MHz of
    bandwidth. Reply: ``DIQT`` (data i16, I and Q interleaved, ``2 * SAMP`` values), ``FCTR``,
    ``FCTM``, and what was used: ``SAMP`` (the sample count), ``DECI``, ``RBME``/``RBMI`` (the
    sample rate, which is the real-time bandwidth of complex samples) and ``LSEC``/``LNAN``
    (the length captured, ``SAMP`` divided by the sample rate).
``STAT``
    Node status: ``OCON`` open connections, ``CADD`` client addresses, ``CIDS`` client names,
    ``RGPS`` GPS status, ``ELOC``.
``GPS``, ``SGPS``
    GPS fix: ``LATI``/``LONG`` (degrees times 1e6), ``ALTI``, ``SATS``, ``GFIX``, ``STAT``,
    ``SPEE``, ``HEAD``, ``UTIM`` (Unix time), ``TSTR``.

An invalid param gets a single reply field with ``ERRO="Bad request: ..."`` and ``ERRC=400``;
an unknown packet type or field name gets ``ERRO="Unknown command"`` and ``ERRC=400``. Neither
closes the connection.

Nothing is ignored in silence: when a command has params the node does not use (such as
``INPT``, ``BDEX`` and ``BINP`` of the published sweep example: the simulated node has one
input and no band or bin options), params overridden by others (``SAMP`` with
``LSEC``/``LNAN``, ``DECI`` with ``RBME``/``RBMI``), or asks for more than the node gives (more
than :data:`MAX_BINS` bins, more than :data:`MAX_SAMPLES` samples, more than 62.5 MHz), its
acknowledgement carries ``WARN`` (every reason, in words, separated by ``"; "``) and ``WARC``
(:data:`WARC_CAPPED` if something was capped, else :data:`WARC_IGNORED`). The acknowledgement
comes before the data and once per command (not per ``DSPL`` reply); the client library, 6.1.0
included, shows it as a :exc:`~ncplib.CommandWarning` and then skips the acknowledgement.

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
from collections.abc import Callable, Mapping, Sized
from typing import TYPE_CHECKING, Any, Literal

from ncplib import _wire
from ncplib._signal import IQ_SAMPLE_RATE_HZ, Scene
from ncplib.errors import NCPError, NetworkError, NetworkTimeoutError
from ncplib.server import Server, start_server

if TYPE_CHECKING:  # pragma: no cover
    from ncplib.connection import Connection, Field

__all__ = [
    "SimulatedNode",
    "start_node",
    "DEFAULT_RATE",
    "DEFAULT_PORT",
    "MAX_BINS",
    "MAX_SAMPLES",
    "MAX_DECIMATION",
    "COUNTED_DATA",
    "ONCE_PACKET_TYPES",
    "STREAM_PACKET_TYPE",
    "data_values",
    "WARC_IGNORED",
    "WARC_CAPPED",
]

logger = logging.getLogger(__name__)

#: Default ``DSPL`` replies per second, per stream.
DEFAULT_RATE = 10.0
#: The port real nodes listen on for plain NCP (used by ``ncplib node``; :func:`start_node`
#: defaults to a free port).
DEFAULT_PORT = _wire.DEFAULT_PORT
#: The most bins in one sweep.
MAX_BINS = 65536
#: The most complex samples in one I/Q capture.
MAX_SAMPLES = 262144
#: Highest frequency the simulated receiver tunes to, MHz.
MAX_FREQUENCY_MHZ = 20000.0
#: The highest ``TIME`` decimation: the lowest sample rate is 62.5 MHz / 65536.
MAX_DECIMATION = 65536
# NCP splits frequencies into whole MHz and the remainder in milli-hertz (FCTR/FCTM, RBME/RBMI).
_MILLI_PER_MEGA = 1_000_000_000

#: Data params of replies whose values another param of the same field counts: name ->
#: (count param, values per count). NCP pads every param to a multiple of 4 bytes and a data
#: param has no length of its own, so a u8 ``PDAT`` of 667 bins arrives as 668 values, the last
#: a padding zero; ``NBIN`` says how many are bins. ``DIQT`` holds I and Q for each of ``SAMP``
#: samples. See :func:`data_values`.
COUNTED_DATA: dict[str, tuple[str, int]] = {"PDAT": ("NBIN", 1), "DIQT": ("SAMP", 2)}

#: Packet types of commands answered once, as on RFeye nodes.
ONCE_PACKET_TYPES = frozenset({"DSPC", "NODE"})
#: The packet type of commands answered repeatedly (a stream of replies).
STREAM_PACKET_TYPE = "DSPL"

_Params = dict[str, Any]


class _BadRequest(Exception):
    """A command's params are invalid; the message says why (sent back in ``ERRO``)."""


#: ``WARC`` of a warning about params the node does not use (or that others override).
WARC_IGNORED = 1
#: ``WARC`` of a warning about a request the node had to cap (bins, samples, bandwidth).
WARC_CAPPED = 2


class _Request:
    """
    A command's params, read and checked one by one. Remembers which were read and what had to
    be capped or overridden, so that nothing the client asked for is ignored in silence.
    """

    def __init__(self, field: Field) -> None:
        self.field = field
        self._used: set[str] = set()
        self._notes: list[tuple[int, str]] = []

    def given(self, *names: str) -> bool:
        """Whether the client sent any of these params."""
        return any(name in self.field for name in names)

    def number(self, name: str, default: float, low: float, high: float, *, integer: bool = False) -> Any:
        """Reads an optional numeric param, checked to be within ``low..high``."""
        self._used.add(name)
        value = self.field.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _BadRequest(f"{name} must be a number")
        if not math.isfinite(value) or not low <= value <= high:
            raise _BadRequest(f"{name} must be between {low:g} and {high:g}")
        if integer and value != int(value):
            raise _BadRequest(f"{name} must be a whole number")
        return value

    def overridden(self, names: tuple[str, ...], why: str) -> None:
        """Notes that these params, if sent, are not used because of others (``why``)."""
        self._used.update(names)
        sent = [name for name in names if name in self.field]
        if sent:
            self._notes.append((WARC_IGNORED, f"{', '.join(sent)} ignored: {why}"))

    def capped(self, why: str) -> None:
        """Notes that the request was capped (``why`` says what and to what)."""
        self._notes.append((WARC_CAPPED, why))

    def warning(self) -> _Params:
        """
        The ``WARN`` and ``WARC`` params that tell the client what was not done as asked (none if
        all was): params the node does not use, params overridden by others, and caps.
        """
        notes = list(self._notes)
        unused = [name for name in self.field if name not in self._used]
        if unused:
            notes.append((WARC_IGNORED, f"{', '.join(unused)} not used by this node: ignored"))
        if not notes:
            return {}
        # One field per acknowledgement: the most serious code (a cap) and every reason.
        return {"WARN": "; ".join(text for _, text in notes), "WARC": max(code for code, _ in notes)}


def data_values(field: Mapping[str, Any], name: str) -> Any:
    """
    A data param of a received field without the padding NCP adds: the first ``NBIN`` values of
    ``PDAT`` (one per bin), the first ``2 * SAMP`` of ``DIQT`` (I and Q per sample); see
    :data:`COUNTED_DATA`.

    Use it instead of the raw value wherever values are counted or searched: the padding zeros
    of ``PDAT`` would read as bins at the reference level.

    :param field: The received field (a :class:`~ncplib.Field` or any mapping of params).
    :param str name: The data param's name.
    :raises KeyError: if the field has no such param.
    :returns: The value cut to its count, of the same type (an :class:`array.array` copy, or a
        numpy view in numpy mode); the whole value when the field holds no usable count for it
        (a param not in :data:`COUNTED_DATA`, or a count that is missing, not a whole number or
        larger than the value).
    """
    value = field[name]
    counted = COUNTED_DATA.get(name)
    if counted is None:
        return value
    count_name, per_count = counted
    count = field.get(count_name)
    length = len(value) if isinstance(value, Sized) else 0
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count * per_count < length:
        return value
    return value[: count * per_count]


def _split_hz(request: _Request, mhz: str, millihertz: str) -> float:
    """A frequency sent as whole MHz plus the remainder in milli-hertz, in Hz."""
    whole = request.number(mhz, 0, 0, MAX_FREQUENCY_MHZ, integer=True)
    rest = request.number(millihertz, 0, 0, _MILLI_PER_MEGA - 1, integer=True)
    return int(whole) * 1e6 + int(rest) / 1000


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
        self._commands: dict[str, Callable[[_Request], Callable[[], _Params]]] = {
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

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, timeout: int = 60) -> Server:
        """
        Starts serving on ``host`` and ``port``.

        :param str host: The address to listen on.
        :param int port: The port to listen on; 0 picks a free one (read it from the returned
            server's ``sockets``).
        :param int timeout: The network timeout, in seconds (see :func:`ncplib.start_server`).
        :raises OSError: if the address cannot be bound.
        :returns: The listening server (see :func:`ncplib.start_server`).
        """
        extra: dict[str, Any] = {}
        if "helo_params" in inspect.signature(start_server).parameters:
            extra["helo_params"] = self.helo_params
        server = await start_server(self.handle, host, port, timeout=timeout, **extra)
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
        stream = field.packet_type == STREAM_PACKET_TYPE
        if command is None or not (stream or field.packet_type in ONCE_PACKET_TYPES):
            logger.info("Simulated node: unknown command %s %s", field.packet_type, field.name)
            field.send(ERRO="Unknown command", ERRC=400)
            return None
        request = _Request(field)
        try:
            make_reply = command(request)
        except _BadRequest as ex:
            field.send(ERRO=f"Bad request: {ex}", ERRC=400)
            return None
        # The acknowledgement carries any warning, so that it comes before the data, once per
        # command, and is never taken for the data: clients skip ACKN fields after warning.
        field.send(ACKN=1, **request.warning())
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

    def _swep(self, request: _Request) -> Callable[[], _Params]:
        fsta = request.number("FSTA", 400, 0.0, MAX_FREQUENCY_MHZ)
        fstp = request.number("FSTP", 500, 0.0, MAX_FREQUENCY_MHZ)
        resb = request.number("RESB", 100000, 1.0, 1e9)
        rlev = request.number("RLEV", -20, -200.0, 50.0)
        if fstp <= fsta:
            raise _BadRequest("FSTP must be greater than FSTA")
        span_hz = (float(fstp) - float(fsta)) * 1e6
        wanted = max(1, round(span_hz / float(resb)))
        bins = min(MAX_BINS, wanted)
        used_resb = round(span_hz / bins)
        if wanted > bins:
            request.capped(
                f"RESB {resb:g} Hz over {span_hz / 1e6:g} MHz needs {wanted} bins, more than "
                f"{MAX_BINS}: RESB {used_resb} Hz used"
            )

        def reply() -> _Params:
            pdat = self.scene.sweep(float(fsta), float(fstp), bins, float(rlev), self.elapsed())
            return {"PDAT": pdat, "FSTA": fsta, "FSTP": fstp, "RESB": used_resb, "RLEV": rlev, "NBIN": bins}

        return reply

    def _time(self, request: _Request) -> Callable[[], _Params]:
        fctr = request.number("FCTR", 446, 0.0, MAX_FREQUENCY_MHZ)
        fctm = int(request.number("FCTM", 0, 0, _MILLI_PER_MEGA - 1, integer=True))
        if request.given("RBME", "RBMI"):
            # A bandwidth: the lowest sample rate that covers it (the highest decimation).
            bandwidth_hz = _split_hz(request, "RBME", "RBMI")
            if bandwidth_hz <= 0:
                raise _BadRequest("RBME/RBMI must give a bandwidth of more than 0")
            decimation = max(1, min(MAX_DECIMATION, math.floor(IQ_SAMPLE_RATE_HZ / bandwidth_hz)))
            if bandwidth_hz > IQ_SAMPLE_RATE_HZ:
                request.capped(
                    f"RBME/RBMI {bandwidth_hz / 1e6:g} MHz is more than the receiver's "
                    f"{IQ_SAMPLE_RATE_HZ / 1e6:g} MHz: {IQ_SAMPLE_RATE_HZ / 1e6:g} MHz used"
                )
            request.overridden(("DECI",), "RBME/RBMI set the sample rate")
        else:
            decimation = int(request.number("DECI", 8, 1, MAX_DECIMATION, integer=True))
        rate_hz = IQ_SAMPLE_RATE_HZ / decimation
        if request.given("LSEC", "LNAN"):
            # A length: enough samples to cover it at the sample rate.
            seconds = int(request.number("LSEC", 0, 0, 2**31 - 1, integer=True))
            nanos = int(request.number("LNAN", 0, 0, 999_999_999, integer=True))
            length_ns = seconds * 1_000_000_000 + nanos
            if length_ns <= 0:
                raise _BadRequest("LSEC/LNAN must give a length of more than 0")
            wanted = math.ceil(length_ns * rate_hz / 1e9 - 1e-6)
            what = f"LSEC/LNAN {length_ns / 1e9:g} s at {rate_hz / 1e6:g} MS/s"
            request.overridden(("SAMP",), "LSEC/LNAN set the sample count")
        else:
            wanted = int(request.number("SAMP", 4096, 1, 2**31 - 1, integer=True))
            what = f"SAMP {wanted}"
        samples = min(wanted, MAX_SAMPLES)
        if wanted > samples:
            request.capped(f"{what} needs {wanted} samples, more than {MAX_SAMPLES}: {samples} captured")
        centre_mhz = float(fctr) + fctm / _MILLI_PER_MEGA
        # What was used, in the request's own terms: the sample rate (which is the real-time
        # bandwidth of complex samples) and the length captured.
        rbme, rbmi = divmod(round(rate_hz * 1000), _MILLI_PER_MEGA)
        lsec, lnan = divmod(round(samples * 1e9 / rate_hz), 1_000_000_000)

        def reply() -> _Params:
            diqt = self.scene.iq(centre_mhz, samples, decimation, self.elapsed())
            return {
                "DIQT": diqt,
                "FCTR": fctr,
                "FCTM": fctm,
                "SAMP": samples,
                "DECI": decimation,
                "RBME": rbme,
                "RBMI": rbmi,
                "LSEC": lsec,
                "LNAN": lnan,
            }

        return reply

    def _stat(self, request: _Request) -> Callable[[], _Params]:
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

    def _gps(self, request: _Request) -> Callable[[], _Params]:
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
) -> Server:
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
    :returns: The listening server (see :func:`ncplib.start_server`); close it to stop the node.
    """
    node = SimulatedNode(rate=rate, synthesis=synthesis, seed=seed)
    return await node.start(host, port, timeout=timeout)
