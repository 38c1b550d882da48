"""
Checks the distributions of ncplib end to end.

Usage: ``python tools/check_dist.py [--keep] [-- pytest arguments]``, with ``build``,
``cibuildwheel`` and ``twine`` installed (``pip install --group dev``). It needs a C compiler and
access to the package index (build isolation and the test dependencies); it does not need Docker.

1. ``python -m build`` makes an sdist, then a wheel from that sdist (so the sdist is proven to
   build with build isolation); ``NCPLIB_PUREPYTHON=1`` makes the pure-Python wheel from the same
   sdist. The contents and tags of all three are checked: the sdist carries the Cython source, the
   stub, ``py.typed``, ``setup.py``, the README and the tests, and no generated or compiled file;
   both wheels carry ``py.typed`` and the stub and no Cython source; the compiled wheel holds the
   extension, the pure one is tagged ``py3-none-any`` and holds none. ``twine check --strict``
   validates the metadata and the README that PyPI will render.
2. Each of the compiled wheel, the sdist (built from source by pip) and the pure wheel is
   installed into a fresh virtual environment with the ``test`` extra. There, ``ncplib`` must
   import from that environment, with the compiled codec active (wheel, sdist) or the pure one
   (pure wheel), and the test suite must pass when run from a scratch copy of ``tests/`` (with
   the docs and README whose examples it checks), so the source tree cannot be imported by
   mistake. By default the runs leave out the tests marked ``interop``, ``load`` and ``slow``,
   which the full run of ``tools/run_tests.py`` covers, and the sdist and pure wheel runs take
   only a representative subset (:data:`SUBSET`: codecs, packaging, one end-to-end path); pytest
   arguments after ``--`` replace that selection for all three.
3. ``cibuildwheel --print-build-identifiers`` must list exactly the intended wheel builds for
   Linux, Windows and macOS, and the runners of ``.github/workflows/wheels.yml`` (each with its
   ``CIBW_ARCHS``) must together build each of them exactly once.

Every check runs even when an earlier one failed (unless it needs what failed to build); the
script then lists the failures and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 1200
INSTALL_TIMEOUT = 1200
TEST_TIMEOUT = 1200
DEFAULT_PYTEST_ARGS = ["-q", "-m", "not interop and not load and not slow"]
# The sdist and the pure wheel hold the same Python code as the compiled wheel, which gets the
# whole selection above: for them, the tests of the codecs, of packaging and one end-to-end path.
SUBSET = (
    "test_codec_*.py",
    "test_vectors.py",
    "test_numpy_mode.py",
    "test_framing.py",
    "test_stub.py",
    "test_packaging.py",
    "test_connection_basic.py",
    "test_cli.py",
)

PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314", "cp315")
EXPECTED_BUILDS = {
    "linux": [
        f"{py}-{plat}"
        for plat in ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64")
        for py in PYTHONS
    ],
    "windows": [f"{py}-win_amd64" for py in PYTHONS],
    "macos": [f"{py}-macosx_{arch}" for py in PYTHONS for arch in ("x86_64", "arm64")],
}

# What the tests need beside them; the same list as test-sources in [tool.cibuildwheel].
TEST_SOURCES = ("tests", "tools", "docs", "README.rst", "pyproject.toml")

SDIST_REQUIRED = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.rst",
    "LICENSE",
    "ncplib/__init__.py",
    "ncplib/py.typed",
    "ncplib/_codec.pyx",
    "ncplib/_framing.pxi",
    "ncplib/_receive.pxi",
    "ncplib/_codec.pyi",
    "ncplib/_pycodec.py",
    "tests/conftest.py",
    "tests/test_stub.py",
    "tests/vectors/packets.json",
    "tools/run_tests.py",
)
WHEEL_REQUIRED = ("ncplib/__init__.py", "ncplib/py.typed", "ncplib/_codec.pyi", "ncplib/_pycodec.py")
BUILT_SUFFIXES = (".so", ".pyd", ".dylib", ".c", ".pyc", ".o")


# Variables that would change what is built, installed or imported.
SWITCHES = frozenset(
    {
        "NCPLIB_PUREPYTHON",
        "NCPLIB_REQUIRE_COMPILED",
        "NCPLIB_EXPECT_COMPILED",
        "NCPLIB_EXPECT_INSTALLED",
        "PYTHONPATH",
        "PYTHONHOME",
        "PIP_REQUIRE_VIRTUALENV",
    }
)


class CheckFailed(Exception):
    """One of the checks did not pass."""


def log(message: str) -> None:
    print(f"[check_dist] {message}", flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ncplib's and cibuildwheel's switches, plus ``extra``."""
    env = {
        key: value for key, value in os.environ.items() if key not in SWITCHES and not key.startswith("CIBW_")
    }
    env.update(extra)
    return env


def run(cmd: Sequence[str | Path], *, cwd: Path, env: dict[str, str], timeout: int) -> str:
    """Runs a command, echoing its output; raises :class:`CheckFailed` if it fails."""
    args = [str(c) for c in cmd]
    log("$ " + shlex.join(args).replace("\n", " "))
    started = time.monotonic()
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as ex:
        raise CheckFailed(f"timed out after {timeout} s: {' '.join(args)}") from ex
    if result.returncode != 0:
        print(result.stdout, flush=True)
        raise CheckFailed(f"exit {result.returncode}: {' '.join(args)}")
    log(f"  ok in {time.monotonic() - started:.0f} s")
    return result.stdout


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def one(paths: list[Path], what: str) -> Path:
    expect(len(paths) == 1, f"expected one {what}, found {[p.name for p in paths]}")
    return paths[0]


# Building and inspecting the distributions.


def build_all(work: Path) -> tuple[Path, Path, Path]:
    """Builds the sdist, the compiled wheel (from the sdist) and the pure wheel (from the sdist)."""
    dist = work / "dist"
    pure = work / "pure"
    run(
        [sys.executable, "-m", "build", "--outdir", dist, ROOT],
        cwd=work,
        env=clean_env(NCPLIB_REQUIRE_COMPILED="1"),
        timeout=BUILD_TIMEOUT,
    )
    sdist = one(sorted(dist.glob("*.tar.gz")), "sdist")
    wheel = one(sorted(dist.glob("*.whl")), "wheel")
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", pure, sdist],
        cwd=work,
        env=clean_env(NCPLIB_PUREPYTHON="1"),
        timeout=BUILD_TIMEOUT,
    )
    pure_wheel = one(sorted(pure.glob("*.whl")), "pure wheel")
    return sdist, wheel, pure_wheel


def check_metadata(*dists: Path) -> None:
    """The metadata is valid and the README renders, as PyPI will need."""
    run([sys.executable, "-m", "twine", "check", "--strict", *dists], cwd=ROOT, env=clean_env(), timeout=300)
    log("metadata valid and README renders (twine check --strict)")


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    for required in SDIST_REQUIRED:
        expect(required in names, f"sdist lacks {required}")
    built = [n for n in names if n.endswith(BUILT_SUFFIXES) or "__pycache__" in n]
    expect(not built, f"sdist holds generated or compiled files: {built}")
    log(f"sdist {sdist.name}: {len(names)} entries, source, stub, py.typed and tests present")


def wheel_names(wheel: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        return names, zf.read(wheel_meta).decode()


def check_wheel(wheel: Path, *, compiled: bool) -> None:
    names, meta = wheel_names(wheel)
    for required in WHEEL_REQUIRED:
        expect(required in names, f"{wheel.name} lacks {required}")
    sources = [n for n in names if n.endswith((".pyx", ".pxd", ".c", ".html"))]
    expect(not sources, f"{wheel.name} ships Cython source or generated C: {sources}")
    extensions = [
        n
        for n in names
        if n.startswith("ncplib/_codec.") and n.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    ]
    tag = wheel.name[: -len(".whl")].split("-", 2)[2]
    if compiled:
        expect(len(extensions) == 1, f"{wheel.name} should hold one compiled codec, has {extensions}")
        expect(tag != "py3-none-any", f"{wheel.name} holds compiled code but is tagged {tag}")
        expect("Root-Is-Purelib: false" in meta, f"{wheel.name} should not be purelib")
    else:
        expect(not extensions, f"pure wheel {wheel.name} holds compiled code: {extensions}")
        expect(tag == "py3-none-any", f"pure wheel is tagged {tag}, not py3-none-any")
        expect("Root-Is-Purelib: true" in meta, f"{wheel.name} should be purelib")
    log(f"wheel {wheel.name}: {len(names)} entries, py.typed and stub present, tag {tag}")


# Installing and testing.


def venv_python(env_dir: Path) -> Path:
    if sys.platform == "win32":
        return env_dir / "Scripts" / "python.exe"
    return env_dir / "bin" / "python"


PROBE = (
    "import json, ncplib, ncplib.codec; "
    'print(json.dumps({"file": ncplib.__file__, "implementation": ncplib.codec.implementation()}))'
)


def install_and_test(
    work: Path, label: str, target: Path, *, implementation: str, pytest_args: list[str], subset: bool
) -> None:
    """Installs ``target`` with the test extra into a fresh venv and runs the tests against it."""
    log(f"--- {label}: {target.name}")
    env_dir = work / f"venv-{label}"
    venv.create(env_dir, with_pip=True, clear=True)
    python = venv_python(env_dir)
    install_env = clean_env(NCPLIB_REQUIRE_COMPILED="1" if implementation == "compiled" else "0")
    run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{target}[test]"],
        cwd=work,
        env=install_env,
        timeout=INSTALL_TIMEOUT,
    )

    # A scratch directory with a copy of the tests and nothing importable as ncplib.
    scratch = work / f"run-{label}"
    scratch.mkdir()
    for name in TEST_SOURCES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "_build", ".hypothesis")
            shutil.copytree(source, scratch / name, ignore=ignore)
        else:
            shutil.copy2(source, scratch / name)
    expect(not (scratch / "ncplib").exists(), "scratch directory must not hold ncplib")

    probe = json.loads(run([python, "-c", PROBE], cwd=scratch, env=clean_env(), timeout=120))
    installed = Path(probe["file"]).resolve()
    expect(
        installed.is_relative_to(env_dir.resolve()),
        f"{label}: ncplib imported from {installed}, not from the virtual environment {env_dir}",
    )
    expect(
        probe["implementation"] == implementation,
        f"{label}: codec is {probe['implementation']!r}, expected {implementation!r}",
    )
    log(f"{label}: ncplib from {installed.parent}, codec {probe['implementation']}")

    test_env = clean_env(NCPLIB_EXPECT_INSTALLED=str(env_dir.resolve()))
    if implementation == "compiled":
        test_env["NCPLIB_EXPECT_COMPILED"] = "1"
    output = run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args, *test_paths(scratch, subset)],
        cwd=scratch,
        env=test_env,
        timeout=TEST_TIMEOUT,
    )
    summary = [line for line in output.splitlines() if " passed" in line or " failed" in line]
    log(f"{label}: {summary[-1] if summary else 'pytest passed'}")


def test_paths(scratch: Path, subset: bool) -> list[str]:
    """``tests``, or the test files of :data:`SUBSET` that exist."""
    if not subset:
        return ["tests"]
    found = sorted(
        {p.relative_to(scratch).as_posix() for pattern in SUBSET for p in (scratch / "tests").glob(pattern)}
    )
    expect(len(found) >= 5, f"only {found} of the representative tests exist")
    return found


# The cibuildwheel build matrix.


def check_build_identifiers() -> None:
    for platform, expected in EXPECTED_BUILDS.items():
        output = run(
            [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform],
            cwd=ROOT,
            env=clean_env(),
            timeout=300,
        )
        found = output.split()
        expect(
            sorted(found) == sorted(expected),
            f"cibuildwheel {platform} builds differ:\n  unexpected {sorted(set(found) - set(expected))}"
            f"\n  missing {sorted(set(expected) - set(found))}",
        )
        log(f"cibuildwheel {platform}: the {len(found)} intended builds, nothing else")


def check_workflow_matrix() -> None:
    """The runners of the wheels workflow build every intended wheel, each exactly once."""
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "wheels.yml").read_text(encoding="utf-8"))
    entries = workflow["jobs"]["binary"]["strategy"]["matrix"]["include"]
    platforms = {"ubuntu": "linux", "windows": "windows", "macos": "macos"}
    built: list[str] = []
    for entry in entries:
        platform = platforms[entry["os"].split("-")[0]]
        output = run(
            [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", platform],
            cwd=ROOT,
            env=clean_env(CIBW_ARCHS=entry["archs"]),
            timeout=300,
        )
        found = output.split()
        expect(bool(found), f"runner {entry['name']} builds nothing")
        built += found
    expected = [build for builds in EXPECTED_BUILDS.values() for build in builds]
    expect(
        sorted(built) == sorted(expected),
        f"the wheels workflow's runners build {sorted(built)}, expected each of {sorted(expected)} once",
    )
    log(f"wheels workflow: {len(entries)} runners build the {len(built)} intended wheels once each")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("pytest_args", nargs="*", help="pytest arguments (after --)")
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args or DEFAULT_PYTEST_ARGS

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ncplib-dist-"))
    failures: list[str] = []

    def attempt(what: str, check: Callable[..., object], *check_args: Any, **kwargs: Any) -> bool:
        """Runs one independent check; a failure is recorded and the other checks still run."""
        try:
            check(*check_args, **kwargs)
        except CheckFailed as ex:
            log(f"FAILED ({what}): {ex}")
            failures.append(f"{what}: {ex}")
            return False
        return True

    try:
        attempt("cibuildwheel matrix", check_build_identifiers)
        attempt("wheels workflow matrix", check_workflow_matrix)
        built: list[tuple[Path, Path, Path]] = []
        if attempt("build", lambda: built.append(build_all(work))):
            sdist, wheel, pure_wheel = built[0]
            attempt("metadata", check_metadata, sdist, wheel, pure_wheel)
            attempt("sdist contents", check_sdist, sdist)
            attempt("wheel contents", check_wheel, wheel, compiled=True)
            attempt("pure wheel contents", check_wheel, pure_wheel, compiled=False)
            for label, target, implementation, subset in (
                ("wheel", wheel, "compiled", False),
                ("sdist", sdist, "compiled", not args.pytest_args),
                ("pure-wheel", pure_wheel, "pure", not args.pytest_args),
            ):
                attempt(
                    f"{label} installed",
                    install_and_test,
                    work,
                    label,
                    target,
                    implementation=implementation,
                    pytest_args=pytest_args,
                    subset=subset,
                )
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    if failures:
        log(f"{len(failures)} distribution check(s) FAILED in {elapsed:.0f} s:")
        for failure in failures:
            log(f"  {failure}")
        return 1
    log(f"all distribution checks passed in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
