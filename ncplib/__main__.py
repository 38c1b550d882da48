"""``python -m ncplib``: the ``ncplib`` command (see :mod:`ncplib.cli`)."""

from __future__ import annotations

import sys

from ncplib.cli import main

if __name__ == "__main__":
    sys.exit(main())
