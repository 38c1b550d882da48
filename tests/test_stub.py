"""
The stub of the compiled codec, ``ncplib/_codec.pyi``, describes the same interface as the
pure-Python codec it mirrors: the same public names with the same signatures.

The stub is what type checkers see of the compiled module; the pure-Python codec is the reference
behaviour. The stub is looked up beside the imported package, so this also holds for an installed
wheel. While the stub does not exist the tests skip; once it does, any difference fails.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import ncplib
from ncplib import _pycodec

PACKAGE = Path(ncplib.__file__).resolve().parent
STUB = PACKAGE / "_codec.pyi"

pytestmark = pytest.mark.skipif(not STUB.exists(), reason="ncplib/_codec.pyi does not exist yet")

EMPTY = object()


class _Unqualify(ast.NodeTransformer):
    """Turns ``datetime.datetime`` into ``datetime``, ``typing.Any`` into ``Any``."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        return ast.copy_location(ast.Name(id=node.attr, ctx=node.ctx), node)


def normalize_annotation(annotation: ast.expr | str | None) -> str | None:
    """One spelling for equivalent annotations (module prefixes, spacing, quoting)."""
    if annotation is None:
        return None
    if isinstance(annotation, str):
        annotation = ast.parse(annotation, mode="eval").body
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    return ast.unparse(_Unqualify().visit(annotation))


def stub_tree() -> ast.Module:
    assert STUB.exists(), f"{STUB} is missing: the compiled codec needs a stub"
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def stub_functions() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {
        node.name: node
        for node in stub_tree().body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def stub_public_names() -> set[str]:
    """``__all__`` of the stub if it has one, else its public module-level definitions."""
    names: set[str] = set()
    for node in stub_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


def stub_signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, str, Any, str | None]]:
    """``(name, kind, default, annotation)`` for each parameter, then ``("return", ...)``."""
    args = node.args
    params: list[tuple[str, str, Any, str | None]] = []
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        params.append((arg.arg, kind, stub_default(default), normalize_annotation(arg.annotation)))
    if args.vararg is not None:
        params.append(
            (args.vararg.arg, "VAR_POSITIONAL", EMPTY, normalize_annotation(args.vararg.annotation))
        )
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(
            (arg.arg, "KEYWORD_ONLY", stub_default(kw_default), normalize_annotation(arg.annotation))
        )
    if args.kwarg is not None:
        params.append((args.kwarg.arg, "VAR_KEYWORD", EMPTY, normalize_annotation(args.kwarg.annotation)))
    params.append(("return", "RETURN", EMPTY, normalize_annotation(node.returns)))
    return params


def stub_default(node: ast.expr | None) -> Any:
    if node is None:
        return EMPTY
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return Ellipsis  # "has a default", as stubs usually write it
    return ast.literal_eval(node)


def runtime_signature(func: Any) -> list[tuple[str, str, Any, str | None]]:
    signature = inspect.signature(func)
    params: list[tuple[str, str, Any, str | None]] = []
    for param in signature.parameters.values():
        default = EMPTY if param.default is inspect.Parameter.empty else param.default
        annotation = None if param.annotation is inspect.Parameter.empty else param.annotation
        if annotation is not None and not isinstance(annotation, str):
            annotation = inspect.formatannotation(annotation)
        params.append((param.name, param.kind.name, default, normalize_annotation(annotation)))
    returns = signature.return_annotation
    if returns is inspect.Signature.empty:
        returns = None
    elif not isinstance(returns, str):
        returns = inspect.formatannotation(returns)
    params.append(("return", "RETURN", EMPTY, normalize_annotation(returns)))
    return params


def same_default(stub: Any, runtime: Any) -> bool:
    if stub is Ellipsis:
        return runtime is not EMPTY
    if stub is EMPTY or runtime is EMPTY:
        return stub is runtime
    return bool(type(stub) is type(runtime) and stub == runtime)


def test_stub_has_the_public_names_of_the_pure_codec() -> None:
    assert stub_public_names() == set(_pycodec.__all__)


def test_every_public_name_of_the_stub_is_a_function() -> None:
    functions = stub_functions()
    assert sorted(set(_pycodec.__all__) - set(functions)) == []


@pytest.mark.parametrize("name", sorted(_pycodec.__all__))
def test_stub_signature_matches_the_pure_codec(name: str) -> None:
    functions = stub_functions()
    assert name in functions, f"{name} is not defined in {STUB.name}"
    stub = stub_signature(functions[name])
    runtime = runtime_signature(getattr(_pycodec, name))
    assert [p[:2] for p in stub] == [p[:2] for p in runtime], "parameter names or kinds differ"
    assert [p[3] for p in stub] == [p[3] for p in runtime], "annotations differ"
    for (param, _, stub_value, _), (_, _, runtime_value, _) in zip(stub, runtime, strict=True):
        assert same_default(stub_value, runtime_value), f"default of {param!r} differs"


def test_compiled_module_has_the_names_of_the_stub() -> None:
    try:
        from ncplib import _codec
    except ImportError:
        pytest.skip("the compiled codec is not built")
    public = stub_public_names()
    missing = sorted(name for name in public if not callable(getattr(_codec, name, None)))
    assert missing == [], f"the compiled codec lacks {missing}"
    if hasattr(_codec, "__all__"):
        assert set(_codec.__all__) == public


@pytest.mark.parametrize("name", sorted(_pycodec.__all__))
def test_compiled_signature_matches_the_stub(name: str) -> None:
    try:
        from ncplib import _codec
    except ImportError:
        pytest.skip("the compiled codec is not built")
    try:
        compiled = inspect.signature(getattr(_codec, name))
    except (TypeError, ValueError):
        pytest.skip(f"the compiled {name} exposes no signature")
    stub = stub_signature(stub_functions()[name])
    assert [(p.name, p.kind.name) for p in compiled.parameters.values()] == [p[:2] for p in stub[:-1]]
