"""What ``src/lte`` imports is what ``pyproject.toml`` declares, so a fresh install never lacks a module.

An import that happens to work here because another package brought it along (tqdm comes with
Lightning) would break the day that package stops bringing it. The check reads the source with
``ast``, so imports inside functions count too; an import inside ``try: ... except ImportError``
is optional (its fallback is the code's business) and need not be declared. Import names are
mapped to distributions with ``importlib.metadata.packages_distributions()`` (``PIL`` -> pillow,
``hydra`` -> hydra-core).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import lte

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 runs the rest of the suite

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(lte.__file__).parent


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Hydra_Core`` -> ``hydra-core``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """The distributions of ``[project.dependencies]``, and those of every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonical(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}

    extras = project.get("optional-dependencies", {})
    return names(project["dependencies"]), set().union(*map(names, extras.values()))


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(
            isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"}
            for n in names
        ):
            return True
    return False


def third_party_imports() -> dict[str, dict[str, bool]]:
    """``{top-level module: {"file.py:line": optional}}`` for every import of src/lte outside
    the standard library and lte itself."""
    found: dict[str, dict[str, bool]] = {}

    def visit(node: ast.AST, where: str, optional: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = [node.module] if node.level == 0 and node.module else []
            for module in modules:
                top = module.split(".")[0]
                if top != "lte" and top not in sys.stdlib_module_names:
                    found.setdefault(top, {})[f"{where}:{node.lineno}"] = optional
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for child in node.body:
                visit(child, where, True)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, where, optional)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, where, optional)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text(), str(path)), str(path.relative_to(PACKAGE)), False)
    return found


def test_every_import_of_lte_is_a_declared_dependency() -> None:
    required, extras = declared()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, places in sorted(third_party_imports().items()):
        needed = [where for where, optional in places.items() if not optional]
        if not needed:
            continue  # only ever imported with a fallback (rich: Lightning's optional extra)
        owners = {canonical(d) for d in distributions.get(module, [])}
        if not owners & required:
            owner = ", ".join(sorted(owners)) or "no installed distribution"
            extra = " (only in an extra)" if owners & extras else ""
            missing.append(f"{module} ({owner}){extra}, imported at {', '.join(needed)}")
    assert not missing, "not in [project.dependencies]:\n" + "\n".join(missing)


def test_every_dependency_is_imported() -> None:
    """A declared dependency that nothing imports is a leftover (extras are Hydra plugins, which
    Hydra loads itself, so they are not checked)."""
    required, _ = declared()
    distributions = importlib.metadata.packages_distributions()
    used = {canonical(d) for m in third_party_imports() for d in distributions.get(m, [])}
    assert required <= used, f"declared but never imported: {sorted(required - used)}"


def test_the_check_sees_lazy_and_optional_imports() -> None:
    imports = third_party_imports()
    assert not any(imports["tqdm"].values())  # inside functions, still required
    assert all(imports["rich"].values())  # guarded by except ImportError
    assert "PIL" in imports and "lte" not in imports and "os" not in imports
