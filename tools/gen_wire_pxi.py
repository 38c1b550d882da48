"""
Writes ``ncplib/_wire.pxi``, the wire facts the compiled codec needs as C constants, from
``ncplib/_wire.py``, their one definition.

Run it after changing a size, type id or magic number in ``_wire.py``:
``python tools/gen_wire_pxi.py``. ``tests/test_wire_definitions.py`` fails while the file
differs from what this script makes, so the two codecs cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PXI = ROOT / "ncplib" / "_wire.pxi"

# C constant name -> _wire name, for each integer the compiled codec uses.
_CONSTANTS = {
    "HEADER_SIZE": "PACKET_HEADER_SIZE",
    "FOOTER_SIZE": "PACKET_FOOTER_SIZE",
    "FIELD_HEADER_SIZE": "FIELD_HEADER_SIZE",
    "PARAM_HEADER_SIZE": "PARAM_HEADER_SIZE",
    "MIN_PACKET_SIZE": "MIN_PACKET_SIZE",
    "MAX_FIELD_WORDS": "MAX_FIELD_WORDS",
    "MAX_PACKET_ITEMS": "MAX_PACKET_ITEMS",
    "T_I32": "TYPE_I32",
    "T_U32": "TYPE_U32",
    "T_STRING": "TYPE_STRING",
    "T_I64": "TYPE_I64",
    "T_U64": "TYPE_U64",
    "T_F32": "TYPE_F32",
    "T_F64": "TYPE_F64",
    "T_RAW": "TYPE_RAW",
}


def render() -> str:
    """The text of ``_wire.pxi`` for the current ``_wire.py``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from ncplib import _wire as w

    lines = [
        "# Generated from ncplib/_wire.py by tools/gen_wire_pxi.py: do not edit.",
        "# Included by _codec.pyx after its cimports (uint32_t).",
        "",
        "cdef enum:",
    ]
    lines += [f"    {name} = {getattr(w, source):#x}" for name, source in _CONSTANTS.items()]
    lines += [
        "",
        "cdef extern from *:",
        '    """',
        f"    #define NCP_HEADER_MAGIC_WORD {w.PACKET_HEADER_MAGIC_WORD:#010x}u",
        f"    #define NCP_FOOTER_MAGIC_WORD {w.PACKET_FOOTER_MAGIC_WORD:#010x}u",
        '    """',
        '    const uint32_t HEADER_MAGIC_WORD "NCP_HEADER_MAGIC_WORD"',
        '    const uint32_t FOOTER_MAGIC_WORD "NCP_FOOTER_MAGIC_WORD"',
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PXI.write_text(render(), encoding="utf-8")
    print(f"wrote {PXI.relative_to(ROOT)}")
