"""The public connection API has the reference 6.1.0's names, parameters and defaults."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from peers.harness import reference_python

import ncplib

# Introspected in the reference's own environment; only names, kinds and defaults are compared.
_DUMP = r"""
import inspect, json, ncplib

def describe(obj):
    out = []
    for p in inspect.signature(obj).parameters.values():
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        out.append([p.name, p.kind.name, default])
    return out

result = {"connect": describe(ncplib.connect), "start_server": describe(ncplib.start_server)}
from importlib.metadata import version
result["version"] = version("ncplib")
for cls in ("Connection", "Response", "Field"):
    klass = getattr(ncplib, cls)
    for name, member in vars(klass).items():
        if name.startswith("_") or not callable(member):
            continue
        result[cls + "." + name] = [describe(member), inspect.iscoroutinefunction(member)]
    for base in klass.__mro__[1:]:
        for name in ("__aiter__", "__anext__", "__aenter__", "__aexit__"):
            if name in vars(base) and cls + "." + name not in result:
                result[cls + "." + name] = [[], inspect.iscoroutinefunction(vars(base)[name])]
result["properties"] = {
    cls: sorted(n for n, m in vars(getattr(ncplib, cls)).items() if isinstance(m, property))
    for cls in ("Connection", "Response", "Field")
}
print(json.dumps(result))
"""


def _describe(obj: Any) -> list[list[Any]]:
    out = []
    for p in inspect.signature(obj).parameters.values():
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        out.append([p.name, p.kind.name, default])
    return out


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    # The interop policy: skipped with the reason without the reference, a failure where CI is set.
    python = reference_python()
    result = subprocess.run(
        [str(python), "-c", _DUMP],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(Path.home()),
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    )
    dumped: dict[str, Any] = json.loads(result.stdout)
    assert dumped["version"] == "6.1.0"
    return dumped


def _same_start(ours: list[list[Any]], theirs: list[list[Any]]) -> None:
    # Everything the reference has, in the same order; additions only as keyword-only with defaults.
    assert ours[: len(theirs)] == theirs
    for name, kind, default in ours[len(theirs) :]:
        assert kind == "KEYWORD_ONLY", name
        assert default is not None, name


@pytest.mark.interop
def test_connect_and_start_server_signatures(reference: dict[str, Any]) -> None:
    _same_start(_describe(ncplib.connect), reference["connect"])
    _same_start(_describe(ncplib.start_server), reference["start_server"])
    added = [p[0] for p in _describe(ncplib.connect)[len(reference["connect"]) :]]
    assert added == ["use_numpy", "max_packet_size"]


@pytest.mark.interop
@pytest.mark.parametrize("cls", ["Connection", "Response", "Field"])
def test_class_methods(reference: dict[str, Any], cls: str) -> None:
    klass = getattr(ncplib, cls)
    for key, value in reference.items():
        if not key.startswith(cls + ".") or key == "version":
            continue
        params, is_coroutine = value
        name = key.split(".", 1)[1]
        ours = getattr(klass, name)
        assert inspect.iscoroutinefunction(ours) == is_coroutine, key
        if params:
            assert _describe(ours) == params, key
    for name in reference["properties"][cls]:
        assert isinstance(inspect.getattr_static(klass, name), property), name


def test_field_and_response_constructors() -> None:
    # The documented (if discouraged) constructors keep their parameters.
    assert [p[0] for p in _describe(ncplib.Field)] == [
        "connection",
        "packet_type",
        "packet_id",
        "packet_timestamp",
        "name",
        "id",
        "params",
    ]
    assert [p[0] for p in _describe(ncplib.Response)] == ["connection", "packet_type", "expected_fields"]
