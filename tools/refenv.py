"""
The reference ncplib 6.1.0, installed from PyPI into a virtual environment of its own.

Interop tests and benchmarks run the reference as a separate process with the interpreter this
module returns, so its code never mixes with ours. The environment is created once and reused:
by default under ``~/.cache/ncplib-dev/``, or wherever ``NCPLIB_REFERENCE_VENV`` points.

Run ``python tools/refenv.py`` to create it ahead of time; it prints the interpreter's path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REFERENCE_REQUIREMENT = "ncplib==6.1.0"


def venv_dir() -> Path:
    """Where the reference virtual environment lives."""
    configured = os.environ.get("NCPLIB_REFERENCE_VENV")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "ncplib-dev" / "reference-6.1.0"


def _python(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


def _is_ready(python: Path) -> bool:
    if not python.exists():
        return False
    probe = "import ncplib.connection, sys; sys.exit(0 if ncplib.connection.__file__ else 1)"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, cwd=str(Path.home()))
    return result.returncode == 0


def reference_python() -> Path:
    """
    Returns the interpreter of the reference environment, creating it first if needed.

    :raises RuntimeError: if the environment could not be created or the reference library could
        not be installed (the first time this needs the package index).
    """
    env_dir = venv_dir()
    python = _python(env_dir)
    if _is_ready(python):
        return python
    try:
        env_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise RuntimeError(f"could not create {env_dir}: {ex}") from ex
    lock = env_dir.with_name(env_dir.name + ".lock")
    with _FileLock(lock):
        if _is_ready(python):
            return python
        try:
            venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
        except (OSError, subprocess.CalledProcessError) as ex:
            raise RuntimeError(f"could not create a virtual environment in {env_dir}: {ex}") from ex
        result = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                REFERENCE_REQUIREMENT,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not _is_ready(python):
            output = f"{result.stdout}\n{result.stderr}".strip()
            raise RuntimeError(
                f"could not install {REFERENCE_REQUIREMENT} into {env_dir} from the package index:\n{output}"
            )
    return python


class _FileLock:
    """An exclusive lock on a file, so that concurrent test processes create the venv once."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: object = None

    def __enter__(self) -> _FileLock:
        handle = open(self._path, "a+b")  # held until __exit__
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        self._file = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        handle = self._file
        assert handle is not None
        handle.close()  # type: ignore[attr-defined]  # closing releases the lock


if __name__ == "__main__":
    print(reference_python())
