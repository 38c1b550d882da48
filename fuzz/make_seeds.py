"""
Builds the seed corpora of the fuzz targets from the conformance vectors in ``tests/vectors``.

Usage: ``python fuzz/make_seeds.py [--out DIR]`` (default ``fuzz/corpus``). It writes:

- ``DIR/seeds/``: one packet per file: every ``wire_hex`` of ``tests/vectors/*.json``, every
  ``tests/vectors/*.bin``, and a few packets with defects the vectors do not show (an unknown
  type id, a string that is not UTF-8, a data value that is not a whole number of items);
- ``DIR/seeds-framer/``: inputs of the ``framer`` target: its control bytes (settings and
  chunk sizes) followed by a stream of one to four of those packets.

Generated corpora are not committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors"
FRAMER_CONTROL_SIZE = 16  # as in fuzz_targets.py


def vector_packets() -> list[bytes]:
    """The packets of the conformance vectors."""
    found = []
    for path in sorted(VECTORS.glob("*.json")):
        for entry in json.loads(path.read_text()):
            if "wire_hex" in entry:
                found.append(bytes.fromhex(entry["wire_hex"]))
    for path in sorted(VECTORS.glob("*.bin")):
        found.append(path.read_bytes())
    return found


def _packet(fields: bytes) -> bytes:
    size = 32 + len(fields) + 8
    header = (
        b"\xdd\xcc\xbb\xaa"
        + b"TEST"
        + (size // 4).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
        + (1_600_000_000).to_bytes(4, "little")
        + (123_456_000).to_bytes(4, "little")
        + b"\x01\x02\x03\x04"
    )
    return header + fields + b"\x00\x00\x00\x00\xaa\xbb\xcc\xdd"


def _field(name: bytes, params: list[tuple[bytes, int, bytes]]) -> bytes:
    body = b""
    for pname, type_id, value in params:
        value += b"\x00" * (-len(value) % 4)
        body += (
            pname.ljust(4, b"\x00") + ((8 + len(value)) // 4 | type_id << 24).to_bytes(4, "little") + value
        )
    return (
        name.ljust(4, b"\x00")
        + ((12 + len(body)) // 4).to_bytes(4, "little")
        + (7).to_bytes(4, "little")
        + body
    )


def defect_packets() -> list[bytes]:
    """Packets with recoverable defects, built by hand."""
    return [
        _packet(_field(b"ODD", [(b"UNKN", 0x42, b"\x01\x02\x03\x04")])),
        _packet(_field(b"ODD", [(b"STR", 0x02, b"\xff\xfeok\x00")])),
        _packet(_field(b"ODD", [(b"F64", 0x91, b"\x00" * 12), (b"I16", 0x85, b"\x01\x00\x02\x00")])),
        _packet(_field(b"A", [(b"B", 0x00, b"\x01\x00\x00\x00")]) + _field(b"C", [])),
    ]


def _write(directory: Path, data: bytes) -> None:
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def build(out: Path) -> tuple[Path, Path]:
    """Writes both seed corpora under ``out``; returns their directories."""
    seeds = out / "seeds"
    framer = out / "seeds-framer"
    seeds.mkdir(parents=True, exist_ok=True)
    framer.mkdir(parents=True, exist_ok=True)
    packets = vector_packets() + defect_packets()
    for packet in packets:
        _write(seeds, packet)
    rng = random.Random(20260101)
    for i in range(len(packets)):
        stream = b"".join(rng.choice(packets) for _ in range(rng.randint(1, 4)))
        if i % 3 == 0:
            stream += packets[i][: rng.randrange(len(packets[i]))]  # a packet cut short
        control = bytes(rng.randrange(256) for _ in range(FRAMER_CONTROL_SIZE))
        _write(framer, control + stream)
    return seeds, framer


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=HERE / "corpus", help="where to write (default fuzz/corpus)"
    )
    args = parser.parse_args(argv)
    seeds, framer = build(args.out)
    print(f"{len(list(seeds.iterdir()))} seeds in {seeds}, {len(list(framer.iterdir()))} in {framer}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
