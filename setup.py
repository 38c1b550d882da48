"""
Build script for the optional compiled codec.

The extension ``ncplib._codec`` is built from ``ncplib/_codec.pyx`` with Cython. It is left out,
and ncplib installs as pure Python, when the environment variable ``NCPLIB_PUREPYTHON`` is set
to a non-empty value other than ``0``, or when it cannot be compiled (no compiler, no Cython).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
PURE = os.environ.get("NCPLIB_PUREPYTHON", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """Builds the extension if it can; otherwise warns and leaves it out."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as ex:  # noqa: BLE001 - any failure means: ship pure Python
            self._skip(ex)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as ex:  # noqa: BLE001
            self._skip(ex)

    @staticmethod
    def _skip(ex: Exception) -> None:
        if os.environ.get("NCPLIB_REQUIRE_COMPILED", "") not in ("", "0"):
            raise ex
        print(f"WARNING: ncplib's compiled codec could not be built ({ex}); installing pure Python.",
              file=sys.stderr)


def extensions() -> list[Extension]:
    if PURE or not (HERE / "ncplib" / "_codec.pyx").exists():
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("WARNING: Cython is not installed; installing ncplib as pure Python.", file=sys.stderr)
        return []
    return cythonize(
        [Extension("ncplib._codec", ["ncplib/_codec.pyx"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
