"""Addresses as users write them, for ncplib.Fleet and the command line (one definition)."""

from __future__ import annotations

import pytest

import ncplib
from ncplib._address import split_address
from ncplib.cli._errors import UsageError
from ncplib.cli._values import parse_address

GOOD = [
    ("node", ("node", 9999)),
    ("node-12.example.org:1234", ("node-12.example.org", 1234)),
    ("rfeye_002:80", ("rfeye_002", 80)),
    ("10.0.0.7:65535", ("10.0.0.7", 65535)),
    ("knoten-\u00e4.example", ("knoten-\u00e4.example", 9999)),
    ("::1", ("::1", 9999)),
    ("fe80::1%eth0", ("fe80::1%eth0", 9999)),
    ("[::1]", ("::1", 9999)),
    ("[2001:db8::7]:7000", ("2001:db8::7", 7000)),
    ("node.example.org.", ("node.example.org.", 9999)),
    ("\u0939\u093f\u0928\u094d\u0926\u0940.com", ("\u0939\u093f\u0928\u094d\u0926\u0940.com", 9999)),
    ("cafe\u0301.fr:80", ("cafe\u0301.fr", 80)),
]

# Each with what the message must say.
BAD = [
    ("tcp://127.0.0.1:19901", "without a scheme"),
    ("http://node", "without a scheme"),
    (".", "between dots"),
    ("node..x", "between dots"),
    ("-node", "between dots"),
    ("a" * 64 + ".org", "between dots"),
    (".".join(["a" * 60] * 5), "longer than 253"),
    ("node:" + "0" * 5000 + "80", "1 to 65535"),
    ("127.0.0.1:19901:1", "host:port or \\[IPv6\\]:port"),
    ("127.0.0.1;19901", "not ';'"),
    ("node 12", "not ' '"),
    ("user@node", "not '@'"),
    ("[node]:80", "brackets are for an IPv6 address"),
    ("[::1", "\\[IPv6\\]:port"),
    ("[::1]x", "\\[IPv6\\]:port"),
    ("[]:80", "no host"),
    (":80", "no host"),
    ("", "no host"),
    ("node:", "1 to 65535"),
    ("node:0", "1 to 65535"),
    ("node:65536", "1 to 65535"),
    ("node:http", "1 to 65535"),
    ("node:+80", "1 to 65535"),
    ("node:\u0668\u0660", "1 to 65535"),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_the_forms_of_an_address(text: str, expected: tuple[str, int]) -> None:
    assert split_address(text, 9999) == expected
    assert parse_address(text) == expected
    node = ncplib.Fleet([text]).nodes[0]
    assert (node.address, node.host, node.port) == (text, *expected)


@pytest.mark.parametrize(("text", "message"), BAD)
def test_anything_else_is_refused_up_front_saying_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_address(text, 9999)
    with pytest.raises(UsageError, match=message):
        parse_address(text)
    with pytest.raises(ValueError, match=message):
        ncplib.Fleet([text])


def test_a_pairs_host_is_checked_too() -> None:
    assert ncplib.Fleet([("fe80::1", 80)]).nodes[0].address == "[fe80::1]:80"
    for host, message in [("", "no host"), ("no de", "not ' '"), ("1:2", "not an IPv6 address")]:
        with pytest.raises(ValueError, match=message):
            ncplib.Fleet([(host, 80)])
    with pytest.raises(ValueError, match="1 to 65535"):
        ncplib.Fleet([("node", 65536)])
