"""
Choice of the packet codec implementation.

ncplib has two codecs with one behaviour: the compiled extension :mod:`ncplib._codec` (Cython)
and the pure-Python :mod:`ncplib._pycodec`. The compiled one is used when it was built, unless
the environment variable ``NCPLIB_PUREPYTHON`` is set to a non-empty value other than ``0``
when ncplib is first imported.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Literal

__all__ = ["IMPLEMENTATION", "implementation"]


def _load() -> tuple[ModuleType, Literal["compiled", "pure"]]:
    if os.environ.get("NCPLIB_PUREPYTHON", "") not in ("", "0"):
        from ncplib import _pycodec

        return _pycodec, "pure"
    try:
        from ncplib import _codec
    except ImportError:
        from ncplib import _pycodec

        return _pycodec, "pure"
    return _codec, "compiled"


impl, IMPLEMENTATION = _load()
"""The active codec module, and ``"compiled"`` or ``"pure"`` for which one it is."""


def implementation() -> Literal["compiled", "pure"]:
    """
    Returns which packet codec is in use.

    :returns: ``"compiled"`` for the Cython extension, ``"pure"`` for the pure-Python codec.
    """
    return IMPLEMENTATION
