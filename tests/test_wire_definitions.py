"""
One definition of the wire facts: both codecs take their constants, magic numbers and message
templates from ``ncplib/_wire.py`` (the compiled one through the generated ``_wire.pxi``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from ncplib import _wire as w

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "ncplib" / "_codec.pyx").is_file():
    # These tests read the source tree; an installed package's tests run without it.
    pytest.skip("the source tree is not beside the tests", allow_module_level=True)
# Each codec with its packet reader (the compiled codec includes its own).
CODECS = {
    name: "".join((ROOT / "ncplib" / file).read_text(encoding="utf-8") for file in files)
    for name, files in {
        "_pycodec.py": ("_pycodec.py", "framing.py"),
        "_codec.pyx": ("_codec.pyx", "_framing.pxi"),
    }.items()
}
TEMPLATES = sorted(name for name in vars(w) if name.startswith(("MSG_", "WARN_")))


def test_pxi_is_generated_from_wire() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from tools.gen_wire_pxi import PXI, render
    finally:
        sys.path.remove(str(ROOT))
    assert PXI.read_text(encoding="utf-8") == render(), "run tools/gen_wire_pxi.py"


def test_pxi_matches_wire_values() -> None:
    text = (ROOT / "ncplib" / "_wire.pxi").read_text(encoding="utf-8")
    constants = {
        name: int(value, 16) for name, value in re.findall(r"^    (\w+) = (0x[0-9a-f]+)$", text, re.M)
    }
    assert constants["HEADER_SIZE"] == w.PACKET_HEADER_SIZE
    assert constants["MIN_PACKET_SIZE"] == w.MIN_PACKET_SIZE
    assert constants["T_RAW"] == w.TYPE_RAW
    assert f"{w.PACKET_FOOTER_MAGIC_WORD:#010x}u" in text
    assert int.from_bytes(b"\xdd\xcc\xbb\xaa", "little") == w.PACKET_HEADER_MAGIC_WORD


def test_compiled_codec_defines_no_wire_constant_of_its_own() -> None:
    source = CODECS["_codec.pyx"]
    assert 'include "_wire.pxi"' in source
    assert not re.search(r"^\s+(T_\w+|\w*HEADER_SIZE|FOOTER_SIZE|MIN_PACKET_SIZE)\s*=", source, re.M)
    assert not re.search(r"0x(dd|aa)(cc|bb)", source, re.I), "magic numbers come from _wire.pxi"


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codecs_spell_no_message_of_their_own(codec: str) -> None:
    source = CODECS[codec]
    # Errors and warnings about the data are built from _wire's templates; only internal
    # consistency checks (RuntimeError, MemoryError) have messages of their own.
    spelled = re.findall(r"(\w*(?:Error|Warning))\(\s*f?\"", source)
    assert [name for name in spelled if name not in ("RuntimeError",)] == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_is_used_by_both_codecs(template: str) -> None:
    for codec, source in CODECS.items():
        assert f"w.{template}" in source, f"{codec} does not use {template}"


def test_templates_format() -> None:
    message = w.MSG_OUT_OF_RANGE.format(name="FSTA", value=2**40, ncp_type="i32")
    assert message == "Param 'FSTA': 1099511627776 is out of range for NCP i32"
    assert w.WARN_UNKNOWN_TYPE.format(name="X", type_id=0x42).endswith("type id 0x42; kept as bytes")


@pytest.mark.parametrize("module", ["errors.py", "values.py", "_wire.py"])
def test_bottom_modules_import_nothing_of_ncplib(module: str) -> None:
    import ast

    tree = ast.parse((ROOT / "ncplib" / module).read_text(encoding="utf-8"))
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert [name for name in imported if name.split(".")[0] == "ncplib"] == []


def test_the_command_restates_no_wire_fact() -> None:
    # The ncplib command takes identifiers, integer ranges, data type names and the port from
    # the library, so that the CLI cannot accept what the codec refuses, or the reverse.
    for path in sorted((ROOT / "ncplib" / "cli").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"=\s*9999\b", source), path.name
        assert "A-Z0-9" not in source, path.name
        assert "2**31" not in source and "2**63" not in source, path.name
        assert '"u16"' not in source, path.name
