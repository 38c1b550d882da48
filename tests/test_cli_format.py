"""How the ``ncplib`` command shows, sizes and saves received fields (no network)."""

from __future__ import annotations

import array
import io
import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from ncplib import cli
from ncplib.cli import _commands
from ncplib.framing import PacketReader
from ncplib.values import f64, i64, u32, u64

STAMP = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


class FakeField(dict[str, Any]):
    """The attributes of a received :class:`ncplib.Field` that the command uses."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.packet_type = "DSPC"
        self.packet_id = 7
        self.packet_timestamp = STAMP
        self.name = "TEST"
        self.id = 42


PARAMS: dict[str, Any] = {
    "I32": -5,
    "U32": u32(5),
    "I64": i64(-(2**40)),
    "U64": u64(2**63),
    "F32": 1.5,
    "F64": f64(math.nan),
    "STR": "héllo",
    "RAW": b"\x00\x01\xfe\xff",
    "U8": array.array("B", [1, 2, 3, 4]),
    "I16": array.array("h", [-3, 7]),
    "F8": array.array("d", [0.25]),
    "NONE": array.array("i"),
}
TYPES = {
    "I32": "i32",
    "U32": "u32",
    "I64": "i64",
    "U64": "u64",
    "F32": "f32",
    "F64": "f64",
    "STR": "string",
    "RAW": "raw",
    "U8": "data u8",
    "I16": "data i16",
    "F8": "data f64",
    "NONE": "data i32",
}


def test_type_names() -> None:
    assert {name: cli.type_name(value) for name, value in PARAMS.items()} == TYPES


def test_type_names_of_numpy_arrays() -> None:
    np = pytest.importorskip("numpy")
    assert cli.type_name(np.zeros(3, dtype=np.uint16)) == "data u16"
    assert cli.type_name(np.zeros(3, dtype=np.float32)) == "data f32"
    assert cli.type_name(np.zeros(3, dtype=np.int64)) == "data i64"


def test_format_field_summarises_arrays() -> None:
    text = cli.format_field(FakeField(PARAMS))
    lines = text.splitlines()
    assert lines[0] == "DSPC TEST  field id 42, packet id 7, 2026-01-02 03:04:05.678901 UTC"
    shown = {line.split()[0]: line for line in lines[1:]}
    assert shown["U8"].endswith("4 values, min 1, max 4")
    assert shown["I16"].endswith("2 values, min -3, max 7")
    assert shown["NONE"].endswith("0 values")
    assert shown["RAW"].endswith("4 bytes: 0001feff")
    assert shown["STR"].endswith("'héllo'")
    assert shown["F64"].endswith("nan")


def test_format_field_line() -> None:
    line = cli.format_field_line(FakeField({"PDAT": array.array("B", [9, 3]), "RLEV": -20}), 3)
    assert line == "#3 DSPC TEST id 42: PDAT data u8[2] 3..9, RLEV=-20"


def test_json_is_strict_json() -> None:
    data = cli.field_to_json(FakeField(PARAMS))
    # No NaN literal: the output parses with a strict parser.
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["timestamp"] == STAMP.isoformat()
    assert back["params"]["F64"] == {"type": "f64", "value": "nan"}
    assert back["params"]["RAW"] == {"type": "raw", "value": "0001feff"}
    assert back["params"]["U64"] == {"type": "u64", "value": 2**63}
    assert back["params"]["I16"] == {"type": "data i16", "value": [-3, 7]}


def test_wire_size_is_the_size_of_the_saved_packet() -> None:
    field = FakeField(PARAMS)
    packet = cli.encode_field(field)
    assert cli.field_wire_size(field) == len(packet)
    reader = PacketReader()
    reader.feed(packet)
    ((packet_type, packet_id, timestamp, _, fields),) = reader.read_packets()
    assert (packet_type, packet_id, timestamp) == ("DSPC", 7, STAMP)
    ((name, field_id, params),) = fields
    assert (name, field_id) == ("TEST", 42)
    decoded = dict(params)
    assert decoded["STR"] == "héllo"
    assert list(decoded["U8"]) == [1, 2, 3, 4]
    assert type(decoded["U64"]) is u64


def test_live_status_line_rewrites_itself() -> None:
    stream = io.StringIO()
    status = _commands._Status(stream, live=True)
    status.update(FakeField({"PDAT": array.array("B", bytes(1000))}))
    status.finish()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[K1 field, ")
    assert text.endswith(" s\n")
    assert "MB/s" in text


def test_status_counts_in_words() -> None:
    stream = io.StringIO()
    status = _commands._Status(stream, live=False)
    status.update(FakeField({"X": 1}))
    status.finish()
    assert stream.getvalue().startswith("1 field, ")
    assert (cli.plural(0, "sweep"), cli.plural(1, "sweep"), cli.plural(2, "bin")) == (
        "0 sweeps",
        "1 sweep",
        "2 bins",
    )


def test_counted_data_is_shown_without_its_padding() -> None:
    sweep = FakeField({"PDAT": array.array("B", [40, 60, 50, 0]), "NBIN": 3, "RLEV": -20})
    assert cli.format_field_line(sweep, 1) == "#1 DSPC TEST id 42: PDAT data u8[3] 40..60, NBIN=3, RLEV=-20"
    assert "  PDAT  data u8    3 values, min 40, max 60 (+1 padding)" in cli.format_field(sweep).splitlines()
    assert cli.field_to_json(sweep)["params"]["PDAT"] == {
        "type": "data u8",
        "value": [40, 60, 50],
        "padding": 1,
    }
    # What is saved is the field as received, padding included.
    assert cli.encode_field(sweep) == cli.encode_field(FakeField(dict(sweep)))
    # Without a usable count the whole value is shown.
    for params in (
        {"PDAT": array.array("B", [1, 2, 3, 4])},
        {"PDAT": array.array("B", [1, 2, 3, 4]), "NBIN": 9},
    ):
        assert "PDAT data u8[4] 1..4" in cli.format_field_line(FakeField(params), 1)


def test_counted_iq_is_cut_to_two_values_per_sample() -> None:
    capture = FakeField({"DIQT": array.array("h", [1, -1, 2, -2, 0, 0]), "SAMP": 2})
    assert "DIQT data i16[4] -2..2" in cli.format_field_line(capture, 1)


def test_status_summary_when_not_live() -> None:
    stream = io.StringIO()
    status = _commands._Status(stream, live=False)
    for _ in range(3):
        status.update(FakeField({"X": 1}))
    assert stream.getvalue() == ""
    status.finish()
    assert stream.getvalue().startswith("3 fields, ")
