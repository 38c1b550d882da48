"""
Build script for the optional compiled codec.

The extension ``ncplib._codec`` is built from ``ncplib/_codec.pyx`` with Cython. Everything else
(metadata, packages, data files) is declared in ``pyproject.toml``.

Environment variables read at build time:

``NCPLIB_PUREPYTHON``
    Set to a non-empty value other than ``0`` to leave the extension out. The result is a pure
    Python distribution, and its wheel is tagged ``py3-none-any``.
``NCPLIB_REQUIRE_COMPILED``
    Set to a non-empty value other than ``0`` to make a failed compile an error. Without it a
    failed compile (no compiler, no Cython) only warns, and ncplib installs as pure Python; the
    wheel is then tagged ``py3-none-any`` too, since it holds no compiled code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import setuptools
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# pyproject.toml uses metadata (an SPDX license expression) that older setuptools rejects; pip's
# build isolation always brings a new enough one, but `python setup.py build_ext --inplace` uses
# the environment's own.
if int(setuptools.__version__.split(".")[0]) < 77:
    raise SystemExit(
        f"ncplib needs setuptools >= 77 to build (this is {setuptools.__version__}): "
        "run `python -m pip install -U 'setuptools>=77'`, or install with pip"
    )

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 (old development environments): the wheel package's
    try:
        from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]
    except ImportError:
        bdist_wheel = None  # type: ignore[assignment,misc]

HERE = Path(__file__).resolve().parent
PYX = HERE / "ncplib" / "_codec.pyx"


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


PURE = _flag("NCPLIB_PUREPYTHON")
REQUIRE_COMPILED = _flag("NCPLIB_REQUIRE_COMPILED") and not PURE

# Set when the extension was meant to be built but could not be.
_skipped: list[BaseException] = []


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Builds the extension if it can; otherwise warns and leaves it out."""

    def run(self) -> None:
        if _skipped:  # already failed in this process: do not try again (bdist_wheel runs us twice)
            return
        try:
            super().run()
        except Exception as ex:
            self._skip(ex)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as ex:
            self._skip(ex)

    @staticmethod
    def _skip(ex: Exception) -> None:
        if REQUIRE_COMPILED:
            raise ex
        _skipped.append(ex)
        _warn(f"ncplib's compiled codec could not be built ({ex}); installing pure Python.")


cmdclass: dict[str, Any] = {"build_ext": OptionalBuildExt}

if bdist_wheel is not None:

    class PureWhenNotCompiled(bdist_wheel):  # type: ignore[valid-type,misc]
        """Tags the wheel ``py3-none-any`` when it ends up holding no compiled code."""

        def run(self) -> None:
            if not self.skip_build:
                self.run_command("build")
            if _skipped:
                self.root_is_pure = True
            super().run()

    cmdclass["bdist_wheel"] = PureWhenNotCompiled


def extensions() -> list[Extension]:
    """The extensions to build: none when pure Python is asked for or cannot be avoided."""
    if PURE:
        return []
    if not PYX.exists():
        if REQUIRE_COMPILED:
            raise SystemExit(f"NCPLIB_REQUIRE_COMPILED is set but {PYX} does not exist")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_COMPILED:
            raise SystemExit("NCPLIB_REQUIRE_COMPILED is set but Cython is not installed") from None
        _warn("Cython is not installed; installing ncplib as pure Python.")
        _skipped.append(ImportError("Cython"))
        return []
    try:
        return cythonize(
            [Extension("ncplib._codec", ["ncplib/_codec.pyx"])],
            compiler_directives={"language_level": "3"},
            quiet=True,
        )
    except Exception as ex:
        if REQUIRE_COMPILED:
            raise
        _warn(f"Cython could not translate ncplib/_codec.pyx ({ex}); installing pure Python.")
        _skipped.append(ex)
        return []


setup(ext_modules=extensions(), cmdclass=cmdclass)
