"""Sphinx configuration for the ncplib documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
# The API pages document the pure-Python code, the specification of its compiled twins (the codec,
# and ncplib.framing.PacketReader, which the compiled codec replaces with its own).
os.environ.setdefault("NCPLIB_PUREPYTHON", "1")

import ncplib

project = "ncplib"
author = "ncplib developers"
copyright = "CRFS and ncplib developers"
release = ncplib.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "NCP for CRFS RFeye nodes", "fixed_sidebar": True}
pygments_style = "sphinx"
# ncplib.Connection and ncplib.sync.Connection share a name: a bare "Connection" in a signature
# has two targets, and Sphinx says so. The prose names the one it means in full.
suppress_warnings = ["ref.python"]
