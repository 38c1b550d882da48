"""
What the distributions promise: type information ships with the package, the version has one
source, the wheel matrix is the intended one, and the CI workflows are valid.

The checks that need the project files (``pyproject.toml``, ``.github/``) skip when the tests run
from a copy beside an installed wheel, where those files are absent. ``tools/check_dist.py``
builds and installs the real distributions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import ncplib

PACKAGE = Path(ncplib.__file__).resolve().parent
ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
WORKFLOWS = ROOT / ".github" / "workflows"


def load_pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    if not PYPROJECT.is_file():
        pytest.skip("pyproject.toml is not beside the tests")
    with PYPROJECT.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def test_ncplib_is_imported_from_the_expected_installation() -> None:
    expected = os.environ.get("NCPLIB_EXPECT_INSTALLED")
    if not expected:
        pytest.skip("NCPLIB_EXPECT_INSTALLED is not set")
    assert PACKAGE.is_relative_to(Path(expected).resolve()), f"ncplib imported from {PACKAGE}"


def test_package_is_marked_as_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_version_has_a_single_source() -> None:
    project = load_pyproject()
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ncplib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", ncplib.__version__)


def test_metadata_declares_supported_pythons() -> None:
    project = load_pyproject()["project"]
    assert project["requires-python"] == ">=3.10"
    classifiers = set(project["classifiers"])
    for minor in range(10, 15):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert {"Documentation", "Source", "Issues", "Changelog"} <= set(project["urls"])
    assert {"numpy", "plot", "test", "docs"} <= set(project["optional-dependencies"])


def test_project_urls_to_repository_files_name_existing_files() -> None:
    urls = load_pyproject()["project"]["urls"]
    if not (ROOT / "setup.py").is_file():
        pytest.skip("needs the whole source tree")
    prefix = "https://github.com/ncplib/ncplib/blob/main/"
    for name, url in urls.items():
        assert url.startswith("https://"), name
        if url.startswith(prefix):
            assert (ROOT / url[len(prefix) :]).is_file(), f"{name}: {url} names no file of the repository"


def test_wheel_matrix_covers_every_supported_cpython() -> None:
    cibw = load_pyproject()["tool"]["cibuildwheel"]
    supported = {f"cp3{minor}-*" for minor in range(10, 15)}
    assert supported <= set(cibw["build"])
    assert cibw["environment"]["NCPLIB_REQUIRE_COMPILED"] == "1"
    # The wheels' tests install a lean list that exists on every platform (no atheris there).
    assert "test-extras" not in cibw
    assert {req.split(">")[0] for req in cibw["test-requires"]} == {
        "numpy",
        "pytest",
        "pytest-timeout",
        "hypothesis",
    }
    assert "tests" in cibw["test-sources"]
    assert "ncplib" not in cibw["test-sources"]


def test_wheel_tests_and_dist_checks_copy_the_same_sources() -> None:
    cibw = load_pyproject()["tool"]["cibuildwheel"]
    check_dist = pytest.importorskip("tools.check_dist")
    assert list(check_dist.TEST_SOURCES) == cibw["test-sources"]


def workflow_files() -> list[Path]:
    if not WORKFLOWS.is_dir():
        pytest.skip(".github/workflows is not beside the tests")
    return sorted(WORKFLOWS.glob("*.yml"))


def load_workflow(path: Path) -> dict[Any, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def uses_of(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return found + [u for value in node.values() for u in uses_of(value)]
    if isinstance(node, list):
        return [u for item in node for u in uses_of(item)]
    return []


def test_workflows_exist() -> None:
    names = {path.name for path in workflow_files()}
    assert {"tests.yml", "wheels.yml"} <= names


def test_workflows_are_valid_and_pin_their_actions() -> None:
    for path in workflow_files():
        workflow = load_workflow(path)
        # YAML 1.1 reads the key "on" as True.
        assert "on" in workflow or True in workflow, f"{path.name} has no trigger"
        assert workflow.get("jobs"), f"{path.name} has no jobs"
        for job_name, job in workflow["jobs"].items():
            assert "runs-on" in job or "uses" in job, f"{path.name}: job {job_name} has no runner"
        for action in uses_of(workflow["jobs"]):
            assert re.search(r"@v\d+(\.\d+)*$", action), f"{path.name}: {action} is not pinned to a version"


def test_release_publishing_uses_trusted_publishing() -> None:
    path = WORKFLOWS / "wheels.yml"
    if not path.is_file():
        pytest.skip(".github/workflows/wheels.yml is not beside the tests")
    workflow = load_workflow(path)
    publishers = [
        job
        for job in workflow["jobs"].values()
        if any(u.startswith("pypa/gh-action-pypi-publish@") for u in uses_of(job))
    ]
    assert len(publishers) == 1
    assert publishers[0].get("permissions", {}).get("id-token") == "write"
    assert "release" in str(publishers[0].get("if", ""))
