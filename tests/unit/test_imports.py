"""One import path per name: every ``from soulsai_ray.x import name`` names the module that
defines ``name``, and no module or package passes on names it imported (no re-exports)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("soulsai_ray", "soulsai_bench", "scripts", "tests")


def _module_file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _defined_names(module: str) -> frozenset[str]:
    """Names a module binds itself: functions, classes, assignments (imports excluded)."""
    names: set[str] = set()
    body = list(ast.parse(_module_file(module).read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If | ast.Try | ast.With):  # module level all the same
            for block in ("body", "orelse", "finalbody", "handlers"):
                body.extend(getattr(node, block, []))
        elif isinstance(node, ast.ExceptHandler):
            body.extend(node.body)
    return frozenset(names)


def _imports_from_the_project(path: Path) -> list[tuple[int, str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and (node.module or "").split(".")[0] == "soulsai_ray"
        for alias in node.names
    ]


def _python_files() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def test_every_project_import_names_the_defining_module():
    wrong = []
    for path in _python_files():
        for line, module, name in _imports_from_the_project(path):
            if _module_file(module) is None or _module_file(f"{module}.{name}") is not None:
                continue  # a module outside this checkout, or a submodule
            if name not in _defined_names(module):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} is not defined in {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "init", sorted((ROOT / "soulsai_ray").rglob("__init__.py")), ids=lambda p: p.parent.name
)
def test_packages_pass_on_no_names(init):
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assert not [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]


def test_the_checker_sees_a_re_export():
    assert "format_number" in _defined_names("soulsai_ray.console")
    assert "format_number" not in _defined_names("soulsai_ray.telemetry")
    assert "TransitionBatch" not in _defined_names("soulsai_ray.replay")
