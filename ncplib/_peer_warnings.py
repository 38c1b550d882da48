"""
Warnings whose text comes from the peer (a node's ``WARN`` field, or a decoder's
:exc:`~ncplib.DecodeWarning` naming the param or byte at fault), issued so that a peer cannot
grow the process's memory through them.

Under the ``"default"`` action (and ``"module"`` and ``"once"``), :func:`warnings.warn`
remembers every warning it has shown in the ``__warningregistry__`` of the module it points at,
keyed by the warning's text, so as to show each one once. A node whose ``WARN`` fields carry
ever-changing text (a counter, a time), or whose packets name ever-new params of an unknown
type, would grow that registry by an entry per field for as long as it runs.
:func:`warn_from_peer` issues the warning exactly as :func:`warnings.warn` would (same location,
same filters), after clearing that registry if it already remembers more than
:data:`MOST_REMEMBERED` warnings; a warning shown before may then be shown once more, as happens
after any change of the warnings filters.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["MOST_REMEMBERED", "warn_from_peer"]

#: The most warnings a module's registry remembers before it is cleared.
MOST_REMEMBERED = 256


def warn_from_peer(warning: Warning, stacklevel: int) -> None:
    """
    :func:`warnings.warn` of ``warning`` with ``stacklevel`` counted from the caller (as if the
    caller had called :func:`warnings.warn` itself), with the registry it uses kept bounded.
    """
    try:
        module_globals = sys._getframe(stacklevel).f_globals
    except ValueError:
        # Fewer frames than that: the warnings machinery then points at the sys module.
        module_globals = sys.__dict__
    registry = module_globals.get("__warningregistry__")
    if isinstance(registry, dict) and len(registry) > MOST_REMEMBERED:
        registry.clear()
    warnings.warn(warning, stacklevel=stacklevel + 1)
