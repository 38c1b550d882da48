"""
Peer logic shared by the interop drivers and the interop tests.

This module is imported in two kinds of process: the test process (where ``ncplib`` is ours) and
the driver processes run by the reference interpreter (where ``ncplib`` is the reference 6.1.0).
It only uses the public API that both libraries share, so one server handler and one client
session serve every pairing of client and server.

Values cross process boundaries as JSON "tags" that keep the exact Python type and value.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import ssl
import warnings
import zlib
from datetime import datetime, timezone
from typing import Any

import ncplib

# The packet type every test command uses.
PACKET_TYPE = "TEST"


# Tagging: exact, JSON-safe descriptions of decoded values.


def tag(value: Any) -> dict[str, Any]:
    """Describes a decoded value by its exact type name and value, in a JSON-safe form."""
    type_name = type(value).__name__
    if isinstance(value, array.array):
        if value.typecode in "fd":
            items: list[Any] = [float(item).hex() for item in value]
        else:
            items = list(value)
        return {"t": "array", "c": value.typecode, "v": items}
    if type_name == "ndarray":
        kind = value.dtype.kind
        items = [float(item).hex() for item in value.tolist()] if kind == "f" else value.tolist()
        return {
            "t": "ndarray",
            "dtype": value.dtype.str,
            "writeable": bool(value.flags.writeable),
            "v": items,
        }
    if isinstance(value, float):
        return {"t": type_name, "v": value.hex()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"t": type_name, "v": bytes(value).hex()}
    if isinstance(value, int):
        return {"t": type_name, "v": int(value)}
    if isinstance(value, str):
        return {"t": type_name, "v": value}
    return {"t": type_name, "v": repr(value)}


def digest(value: Any) -> dict[str, Any]:
    """Describes an array or raw value by type, length and CRC-32 of its bytes; others by :func:`tag`."""
    if isinstance(value, (int, float, str)):
        return tag(value)
    code = (
        value.typecode
        if isinstance(value, array.array)
        else getattr(getattr(value, "dtype", None), "str", "")
    )
    crc = zlib.crc32(memoryview(value).cast("B"))
    return {"t": type(value).__name__, "c": code, "n": len(value), "crc": crc}


def pattern(code: str, count: int) -> array.array:  # type: ignore[type-arg]
    """``count`` items of typecode ``code`` filled with a fixed byte pattern."""
    values = array.array(code)
    size = count * values.itemsize
    values.frombytes((bytes(range(251)) * (size // 251 + 1))[:size])
    return values


_SCALARS = {
    "int": int,
    "bool": bool,
    "u32": ncplib.u32,
    "i64": ncplib.i64,
    "u64": ncplib.u64,
    "f64": ncplib.f64,
}


def untag(tagged: dict[str, Any]) -> Any:
    """Builds the value a tag describes, with this process's ``ncplib`` value types."""
    kind = tagged["t"]
    if kind == "array":
        code = tagged["c"]
        items = [float.fromhex(item) for item in tagged["v"]] if code in "fd" else tagged["v"]
        return array.array(code, items)
    if kind == "pattern":
        return pattern(tagged["c"], tagged["n"])
    if kind == "float":
        return float.fromhex(tagged["v"])
    if kind == "f64":
        return ncplib.f64(float.fromhex(tagged["v"]))
    if kind == "bytes":
        return bytes.fromhex(tagged["v"])
    if kind == "str":
        return tagged["v"]
    if kind in _SCALARS:
        return _SCALARS[kind](tagged["v"])
    raise ValueError(f"cannot build a value from {tagged!r}")


def tag_params(params: Any) -> dict[str, dict[str, Any]]:
    """Tags every parameter of a field (or any mapping of names to values)."""
    return {name: tag(params[name]) for name in params}


def untag_params(tagged: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The inverse of :func:`tag_params`."""
    return {name: untag(value) for name, value in tagged.items()}


#: Whether array typecode "L" holds 64 bits here. The reference library sends data u64/i64 only
#: from "L"/"l" arrays, which are 32-bit on Windows, so the 64-bit arrays are left out there.
WIDE_LONG = array.array("L").itemsize == 8


def canonical_values() -> dict[str, Any]:
    """One parameter of every value type, as the server sends them for the ``GIVE`` command."""
    values = {
        "I32": -123456789,
        "BOOL": True,
        "U32": ncplib.u32(4000000000),
        "I64": ncplib.i64(-(2**62) - 3),
        "U64": ncplib.u64(2**63 + 5),
        "F32": 0.1,
        "F64": ncplib.f64(0.1),
        "STR": "h\u00e9llo \u2713 \U0001f680",
        "STRE": "",
        "RAW": b"foo",
        "RAW4": b"\x00\x01\x02\xff",
        "AU8": array.array("B", [1, 2, 255]),
        "AI8": array.array("b", [-1]),
        "AU16": array.array("H", [7]),
        "AI16": array.array("h", [-7, 8, 9]),
        "AU32": array.array("I", [0, 4294967295]),
        "AI32": array.array("i", [-2147483648, 2147483647]),
        "AU64": array.array("L", [0, 2**64 - 1]),
        "AI64": array.array("l", [-(2**63), 2**63 - 1]),
        "AF32": array.array("f", [1.5, -0.25]),
        "AF64": array.array("d", [0.1, -1e300]),
    }
    if not WIDE_LONG:
        del values["AU64"], values["AI64"]
    return values


# The server side: one handler, run by our server or the reference one.


async def handle(connection: Any) -> None:
    """
    Serves the test commands, all in packet type ``TEST``:

    ECHO sends the params back; DESC describes what arrived (tags as JSON in param JSON); GIVE
    sends :func:`canonical_values`; BADC, WRNC and ACKC reply with ERRO, WARN and ACKN params
    (WRNC and ACKC then send DONE; the command names differ from the params because the reference
    client drops fields named WARN or ERRO); ERCO and WACO send ERRC or WARC alone; NAMW and NAME
    send a field named WARN or ERRO holding neither param, then DONE; HASH describes what arrived
    by :func:`digest`; BIGA sends large :func:`pattern` arrays; WAIT replies DONE after SECS
    seconds while the handler keeps receiving; INFO tells the remote hostname the server sees;
    BOOM raises RuntimeError, BADR raises NCPError; LAST sends three fields, then ends the
    handler; BYE ends the handler.
    """
    async for field in connection:
        if field.packet_type != PACKET_TYPE:
            continue
        params = {name: field[name] for name in field}
        command = field.name
        if command == "ECHO":
            field.send(**params)
        elif command == "DESC":
            field.send(JSON=json.dumps(tag_params(params)))
        elif command == "GIVE":
            field.send(**canonical_values())
        elif command == "BADC":
            field.send(ERRO="Bad thing", ERRC=400)
        elif command == "WRNC":
            field.send(WARN="Careful now", WARC=123)
            field.send(DONE=1)
        elif command == "ACKC":
            field.send(ACKN=1)
            field.send(DONE=1)
        elif command == "ERCO":
            field.send(ERRC=7)
        elif command == "WACO":
            field.send(WARC=9)
            field.send(DONE=1)
        elif command in ("NAMW", "NAME"):
            connection.send(PACKET_TYPE, "WARN" if command == "NAMW" else "ERRO", NOTE=1)
            field.send(DONE=1)
        elif command == "WAIT":
            asyncio.get_running_loop().call_later(float(params["SECS"]), lambda f=field: f.send(DONE=1))
        elif command == "HASH":
            field.send(JSON=json.dumps({name: digest(value) for name, value in params.items()}))
        elif command == "BIGA":
            field.send(A=pattern("h", 512 * 1024), B=pattern("B", 1024 * 1024 + 3), C=pattern("d", 3))
        elif command == "INFO":
            field.send(HOST=connection.remote_hostname)
        elif command == "BOOM":
            raise RuntimeError("the handler failed on purpose")
        elif command == "BADR":
            raise ncplib.NCPError("the handler rejected the request on purpose")
        elif command == "LAST":
            for number in (1, 2, 3):
                field.send(N=number)
            break
        elif command == "BYE":
            break
        else:
            field.send(ERRO="Unknown command", ERRC=404)


async def start_test_server(options: dict[str, Any]) -> Any:
    """
    Starts a server on 127.0.0.1 with an ephemeral port, serving :func:`handle`.

    ``options``: ``timeout``; ``tls`` = {"cert": path, "key": path}; ``auth`` = [username, password].
    """
    kwargs: dict[str, Any] = {"timeout": options.get("timeout", 60)}
    tls = options.get("tls")
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls["cert"], tls["key"])
        kwargs["ssl"] = context
    auth = options.get("auth")
    if auth:
        expected = tuple(auth)
        kwargs["authenticate"] = lambda username, password: (username, password) == expected
    return await ncplib.start_server(handle, "127.0.0.1", 0, **kwargs)


# The client side: one session object, driven in-process or over JSON lines.


class _LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(
            {"logger": record.name, "level": record.levelname, "message": record.getMessage()}
        )


def _describe_exception(exc: BaseException) -> dict[str, Any]:
    described: dict[str, Any] = {"class": type(exc).__name__, "message": str(exc)}
    for attribute in ("detail", "code"):
        if hasattr(exc, attribute):
            described[attribute] = getattr(exc, attribute)
    return described


def _describe_warnings(caught: list[warnings.WarningMessage]) -> list[dict[str, Any]]:
    return [_describe_exception(item.message) for item in caught if isinstance(item.message, Warning)]


def _describe_field(field: Any, digests: bool = False, meta: bool = False) -> dict[str, Any]:
    params = {name: digest(field[name]) for name in field} if digests else tag_params(field)
    described = {"packet_type": field.packet_type, "name": field.name, "params": params}
    if meta:
        timestamp = field.packet_timestamp
        offset = timestamp.utcoffset()
        described["meta"] = {
            "packet_id": field.packet_id,
            "id_type": type(field.id).__name__,
            "timestamp_type": type(timestamp).__name__,
            "utcoffset": None if offset is None else offset.total_seconds(),
            "age": (datetime.now(timezone.utc) - timestamp).total_seconds() if offset is not None else None,
        }
    return described


class ClientSession:
    """
    A client connection driven by JSON-safe operations (dicts with an ``op`` key), whose results are
    JSON-safe dicts too. Every result has ``warnings``; failures come back as ``error``.
    """

    def __init__(self) -> None:
        self.connection: Any = None
        self.logs = _LogRecorder()
        logger = logging.getLogger("ncplib")
        self._previous_level = logger.level
        logger.addHandler(self.logs)
        logger.setLevel(logging.DEBUG)

    async def run(self, op: dict[str, Any]) -> dict[str, Any]:
        """Runs one operation; never raises for library errors, it reports them."""
        timeout = float(op.get("op_timeout", 30))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = await asyncio.wait_for(getattr(self, "op_" + op["op"])(op), timeout)
            except Exception as exc:
                result = {"error": _describe_exception(exc)}
        result["warnings"] = _describe_warnings(caught)
        return result

    async def op_connect(self, op: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(op.get("kwargs", {}))
        cafile = op.get("cafile")
        if cafile:
            kwargs["ssl"] = ssl.create_default_context(cafile=cafile)
        self.connection = await ncplib.connect("127.0.0.1", op["port"], **kwargs)
        return {"remote_hostname": self.connection.remote_hostname}

    async def op_request(self, op: dict[str, Any]) -> dict[str, Any]:
        """
        Sends one field (or a packet of several, with ``fields``) and receives ``count`` replies,
        described value by value (or by :func:`digest` with ``digest``; with ``meta`` also the
        packet id, field id type and timestamp).
        """
        if "fields" in op:
            fields = {name: untag_params(params) for name, params in op["fields"].items()}
            response = self.connection.send_packet(op.get("packet", PACKET_TYPE), **fields)
        else:
            params = untag_params(op.get("params", {}))
            response = self.connection.send(op.get("packet", PACKET_TYPE), op["field"], **params)
        # "via": "connection" receives with Connection.recv() instead of Response.recv().
        recv = self.connection.recv if op.get("via") == "connection" else response.recv
        replies: list[dict[str, Any]] = []
        try:
            for _ in range(int(op.get("count", 1))):
                replies.append(_describe_field(await recv(), bool(op.get("digest")), bool(op.get("meta"))))
        except Exception as exc:
            return {"replies": replies, "error": _describe_exception(exc)}
        return {"replies": replies}

    async def op_iterate(self, op: dict[str, Any]) -> dict[str, Any]:
        """Sends one field and collects the replies with ``async for`` until the connection closes."""
        response = self.connection.send(op.get("packet", PACKET_TYPE), op["field"])
        replies = [_describe_field(field) async for field in response]
        return {"replies": replies}

    async def op_sleep(self, op: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(op["seconds"]))
        return {}

    async def op_close(self, op: dict[str, Any]) -> dict[str, Any]:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            connection.close()
            await connection.wait_closed()
        return {}

    async def op_logs(self, op: dict[str, Any]) -> dict[str, Any]:
        records, self.logs.records = self.logs.records, []
        return {"logs": records}

    def detach(self) -> None:
        """Stops recording log lines."""
        logger = logging.getLogger("ncplib")
        logger.removeHandler(self.logs)
        logger.setLevel(self._previous_level)
