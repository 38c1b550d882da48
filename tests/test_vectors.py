"""Byte-exact conformance with the reference encoder and decoder, from the captured vectors."""

from __future__ import annotations

import array
import warnings
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import pytest
from codec_modules import CODECS
from vectors import VECTORS, load, same_packet, to_packet

from ncplib import DecodeWarning, f64, i64, u32, u64
from ncplib.packets import decode_packet, encode_packet

CASES = load("values.json") + load("packets.json")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_encodes_to_reference_bytes(case: dict[str, Any]) -> None:
    assert encode_packet(*to_packet(case["encode"])).hex() == case["wire_hex"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_decodes_to_reference_values(case: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_packet(bytes.fromhex(case["wire_hex"]))
    assert same_packet(decoded, to_packet(case["decoded"]))


def test_handshake_capture_decodes_and_reencodes() -> None:
    for packet in load("handshake.json"):
        wire = bytes.fromhex(packet["wire_hex"])
        packet_type, packet_id, timestamp, info, fields = decode_packet(wire)
        expected = (packet["packet_type"], packet["packet_id"], packet["info_hex"])
        assert (packet_type, packet_id, info.hex()) == expected
        assert [(n, i, [(p, repr(v)) for p, v in ps]) for n, i, ps in fields] == [
            (n, i, [tuple(p) for p in ps]) for n, i, ps in packet["fields"]
        ]
        assert encode_packet(packet_type, packet_id, timestamp, info, fields) == wire


def test_real_link_helo() -> None:
    wire = (VECTORS / "real-link-helo.bin").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        packet = decode_packet(wire)
    assert packet == (
        "LINK",
        1,
        datetime(2014, 12, 15, 14, 0, 19, 639305, tzinfo=timezone.utc),
        bytes.fromhex("3449b481"),
        [
            (
                "HELO",
                0,
                [
                    ("NCPV", "Beta B01.025:Nov  7 2012, 11:27:52 __TESTING_ONLY__"),
                    ("SEID", "monitor"),
                    ("MACA", "00:24:81:b4:49:34"),
                ],
            )
        ],
    )


def test_real_stat_with_embedded_footer_decodes_tolerantly() -> None:
    wire = (VECTORS / "real-stat-embedded-footer.bin").read_bytes()
    assert len(wire) == 364
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packet = decode_packet(wire)
    assert [type(w.message) for w in caught] == [DecodeWarning]
    assert packet[:4] == (
        "STAT",
        10,
        datetime(2015, 8, 31, 14, 7, 49, 205642, tzinfo=timezone.utc),
        bytes.fromhex("09070089"),
    )
    assert packet[4] == [
        (
            "STAT",
            1,
            [
                ("OCON", 3),
                ("CADD", "127.0.0.1,127.0.0.1,192.168.1.28"),
                ("CIDS", "rfeye000709,rfeye000709,python3-ncplib"),
                ("RGPS", "no GPS,no GPS,no GPS"),
                ("ELOC", 0),
            ],
        ),
        (
            "SGPS",
            1,
            [
                ("LATI", 51180800),
                ("LONG", -100000),
                ("STAT", 1),
                ("GFIX", 1),
                ("SATS", 9),
                ("SPEE", 20372),
                ("HEAD", 4256),
                ("ALTI", 9000),
                ("UTIM", 1441030068),
                ("TSTR", "Mon Aug 31 14:07:48 2015"),
            ],
        ),
    ]
    assert all(type(v) is int for _, v in packet[4][1][2][:-1])


def test_wrapper_types_survive_a_round_trip() -> None:
    ts = datetime(2020, 1, 1, tzinfo=timezone.utc)
    values = [("A", u32(1)), ("B", i64(-2)), ("C", u64(3)), ("D", f64(0.5)), ("E", 7), ("F", 0.25)]
    fields = decode_packet(encode_packet("PACK", 1, ts, b"", [("FIEL", 1, values)]))[4]
    assert [(n, type(v), v) for n, v in fields[0][2]] == [(n, type(v), v) for n, v in values]


# The same vectors against each codec module directly, whichever one ncplib.packets uses.


@CODECS
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_codec_encodes_to_reference_bytes(codec: ModuleType, case: dict[str, Any]) -> None:
    packet = to_packet(case["encode"])
    assert codec.encode_packet(*packet).hex() == case["wire_hex"]
    assert b"".join(codec.encode_packet_buffers(*packet)).hex() == case["wire_hex"]


@CODECS
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_codec_decodes_to_reference_values(codec: ModuleType, case: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = codec.decode_packet(bytes.fromhex(case["wire_hex"]))
    assert same_packet(decoded, to_packet(case["decoded"]))


@CODECS
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_each_codec_decodes_the_same_values_in_numpy_mode(codec: ModuleType, case: dict[str, Any]) -> None:
    numpy = pytest.importorskip("numpy")
    wire = bytes.fromhex(case["wire_hex"])
    as_arrays = codec.decode_packet(wire)[4]
    as_numpy = codec.decode_packet(wire, use_numpy=True)[4]
    for (_, _, params), (_, _, numpy_params) in zip(as_arrays, as_numpy, strict=True):
        for (name, value), (numpy_name, numpy_value) in zip(params, numpy_params, strict=True):
            assert name == numpy_name
            if isinstance(value, array.array):
                assert isinstance(numpy_value, numpy.ndarray)
                assert numpy_value.itemsize == value.itemsize
                assert numpy_value.tobytes() == value.tobytes()
            else:
                assert repr(numpy_value) == repr(value)
