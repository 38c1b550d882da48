"""The Sphinx documentation builds without a single warning, and documents every CLI option."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ncplib.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_sphinx_build_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for page in ("index", "client", "server", "connection", "errors", "values", "extensions", "node", "cli"):
        assert (tmp_path / f"{page}.html").is_file()
    # autodoc really pulled the docstrings in.
    assert "Connects to a NCP server" in (tmp_path / "client.html").read_text(encoding="utf-8")


def test_cli_page_documents_every_subcommand_and_option() -> None:
    text = (DOCS / "cli.rst").read_text(encoding="utf-8")
    parser = build_parser()
    (subparsers,) = (action for action in parser._actions if action.choices and action.dest == "command")
    assert subparsers.choices is not None
    for name, subparser in subparsers.choices.items():
        assert f"``ncplib {name}``" in text
        for action in subparser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"``{option}``" in text or f"[{option}" in text, (name, option)


def test_cli_page_documents_no_option_a_subcommand_lacks() -> None:
    # Each ``--option`` in a subcommand's section is one of its options (or names the other
    # subcommand it belongs to, as ``stream --save``).
    text = (DOCS / "cli.rst").read_text(encoding="utf-8")
    parser = build_parser()
    (subparsers,) = (action for action in parser._actions if action.choices and action.dest == "command")
    assert subparsers.choices is not None
    sections = re.split(r"^``ncplib (\w+)``\n-+\n", text, flags=re.MULTILINE)
    checked = 0
    for name, section in zip(sections[1::2], sections[2::2], strict=True):
        for match in re.finditer(r"(?:(\w+)\s+)?(--[a-z][a-z-]*)", section):
            other, option = match.groups()
            owner = other if other in subparsers.choices else name
            owned = {o for action in subparsers.choices[owner]._actions for o in action.option_strings}
            assert option in owned, (name, match.group(0))
            checked += 1
    assert checked > 20


@pytest.mark.filterwarnings("ignore:Argument .writer_name.:PendingDeprecationWarning")
def test_readme_is_valid_restructured_text_for_package_indexes() -> None:
    # Package indexes render the README with plain docutils, without Sphinx's extensions.
    docutils_core = pytest.importorskip("docutils.core")
    html = docutils_core.publish_string(
        (ROOT / "README.rst").read_text(encoding="utf-8"),
        writer_name="html",
        settings_overrides={"halt_level": 2, "report_level": 2, "syntax_highlight": "none"},
    )
    assert b"Migrating from ncplib 6.1.0" in html
