"""
Helpers for the tests of capture files and recording.

:func:`small_disk` gives a directory on a nearly full file system: a 1 MiB tmpfs where mounting
one is allowed (root on Linux); otherwise a per-file size limit (``RLIMIT_FSIZE``) applied to
the child process, which fails writes past it with ``EFBIG`` as a full disk fails them with
``ENOSPC``. :func:`disk_full_reason` is the error message each gives.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class SmallDisk:
    #: Where to write.
    directory: Path
    #: For ``subprocess``: applies the size limit in the child, when there is no tmpfs.
    preexec_fn: Callable[[], None] | None
    #: The reason the system gives when it is full.
    reason: str


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        # Else the process is killed by SIGXFSZ instead of seeing the write fail.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: int = 1 << 20) -> Iterator[SmallDisk]:
    """A directory where writing fails once about ``size`` bytes are written (see the module)."""
    if sys.platform == "win32":
        pytest.skip("needs a tmpfs mount or RLIMIT_FSIZE (POSIX)")
    directory = tmp_path / "small"
    directory.mkdir()
    mounted = False
    if sys.platform.startswith("linux") and shutil.which("mount"):
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True
        )
        mounted = result.returncode == 0
    try:
        if mounted:
            yield SmallDisk(directory, None, os.strerror(28))  # ENOSPC
        else:
            yield SmallDisk(directory, _limit_file_size(size), os.strerror(27))  # EFBIG
    finally:
        if mounted:
            # Lazily: a test may still map a file of it (sigmf memory-maps recordings); the
            # mount goes away once nothing uses it.
            gc.collect()
            subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)
