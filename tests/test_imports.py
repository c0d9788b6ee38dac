"""The package's import graph: every module imports, nothing imports in a circle, and the command
line stays on top of the library.

The graph is read from the source (module-level ``import lte...`` / ``from lte... import``, outside
``if TYPE_CHECKING:``), not from ``sys.modules``, so an edge exists only where a module names
another. Imports inside functions are left out: they run late, on purpose.

Layers: ``lte.cli.*`` holds the entry points; ``python -m lte.<tool>`` runs a five-line alias of
``lte.cli.<tool>`` (:data:`ALIASES`). The library (everything else) imports neither.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import lte

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

#: ``python -m lte.<tool>``: modules that only hand over to ``lte.cli.<tool>.main``.
ALIASES = {
    f"lte.{tool}": f"lte.cli.{tool}" for tool in ("train", "test", "upscale", "compare", "export")
}
ALIASES["lte.fourier"] = "lte.cli.fourier"
ALIASES["lte.cmsr"] = "lte.cli.cmsr"
ALIASES["lte.cache"] = "lte.cli.cache"


def modules() -> list[str]:
    """Every module of the ``lte`` package, packages included."""
    found = ["lte"]
    for info in pkgutil.walk_packages(lte.__path__, "lte."):
        found.append(info.name)
    return sorted(found)


def source_of(name: str) -> Path:
    base = SRC / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run when the module is imported (into ``if``/``try``, not ``def``)."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            if not _is_type_checking(stmt):
                out += _module_level(stmt.body) + _module_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for part in (stmt.body, stmt.orelse, stmt.finalbody, *[h.body for h in stmt.handlers]):
                out += _module_level(part)
        else:
            out.append(stmt)
    return out


def imports_of(name: str, known: set[str], *, anywhere: bool = False) -> set[str]:
    """The ``lte`` modules that module ``name`` imports when it is imported (``anywhere``: also
    inside its functions)."""
    tree = ast.parse(source_of(name).read_text(encoding="utf-8"))
    package = name if source_of(name).name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    statements = list(ast.walk(tree)) if anywhere else _module_level(tree.body)
    for stmt in statements:
        if isinstance(stmt, ast.Import):
            out |= {a.name for a in stmt.names if a.name.split(".")[0] == "lte"}
        elif isinstance(stmt, ast.ImportFrom):
            base = stmt.module or ""
            if stmt.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "lte":
                continue
            for alias in stmt.names:  # `from lte import evaluation` imports a module
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out & known


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    names = modules()
    known = set(names)
    return {name: imports_of(name, known) for name in names}


def test_every_module_imports() -> None:
    for name in modules():
        importlib.import_module(name)


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    """Depth-first search; a back edge is a cycle, reported as the path around it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_library_imports_no_entry_point(graph: dict[str, set[str]]) -> None:
    """Not even inside a function: the library never reaches back into a command."""
    entry = set(ALIASES) | {n for n in graph if n == "lte.cli" or n.startswith("lte.cli.")}
    known = set(graph)
    wrong = sorted(
        (name, dep)
        for name in graph
        if name not in entry
        for dep in imports_of(name, known, anywhere=True)
        if dep in entry
    )
    assert not wrong, f"library modules importing lte.cli or an alias: {wrong}"


def test_aliases_only_hand_over_to_the_cli(graph: dict[str, set[str]]) -> None:
    """An alias imports its command's ``main`` and runs it: no definitions, no other command."""
    for alias, cli in ALIASES.items():
        assert cli in graph[alias], alias
        assert not {d for d in graph[alias] if d.startswith("lte.cli")} - {cli}, alias
        tree = ast.parse(source_of(alias).read_text(encoding="utf-8"))
        defined = [s for s in tree.body if isinstance(s, ast.FunctionDef | ast.ClassDef)]
        assert not defined, f"{alias} defines {[d.name for d in defined]}: it is only an alias"


def test_console_scripts_point_at_the_cli() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {f"lte-{alias.removeprefix('lte.')}" for alias in ALIASES}
    for name, target in scripts.items():
        assert target == f"lte.cli.{name.removeprefix('lte-')}:main", name
