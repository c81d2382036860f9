"""What a clean `pip install .` needs is declared, and every dependency has a tested range."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FIRST_PARTY = set(PYPROJECT["tool"]["mypy"]["packages"])  # the project's own top-level packages


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _imports(path: Path) -> set[str]:
    """Dotted names imported by a module (module level and inside functions alike)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(dotted: str) -> Path | None:
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports_of_compiled_core() -> set[str]:
    """Top-level third-party packages mypyc's type check reaches from the compiled modules."""
    todo = [REPO / path for path in PYPROJECT["tool"]["escalator"]["compiled"]]
    seen: set[Path] = set()
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted in _imports(path):
            top = dotted.split(".")[0]
            if top in FIRST_PARTY:
                module = _module_file(dotted)
                if module is not None:
                    todo.append(module)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def _ignored_by_mypy(package: str) -> bool:
    """Modules mypy is told to treat as untyped need not be present for the build."""
    for override in PYPROJECT["tool"]["mypy"].get("overrides", []):
        if override.get("ignore_missing_imports") and f"{package}.*" in override["module"]:
            return True
    return False


def _with_dependencies(names: set[str]) -> set[str]:
    """The distributions `names` bring along (installed metadata)."""
    todo, found = list(names), set(names)
    while todo:
        try:
            requires = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            name = _name(requirement)
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


def test_the_build_requires_what_the_compiled_core_imports() -> None:
    """mypyc type-checks the compiled modules at build time, in pip's isolated environment
    with only build-system.requires: a module imported there that is not required fails a
    clean `pip install .` (as orjson did)."""
    build = {_name(r) for r in PYPROJECT["build-system"]["requires"]}
    available = _with_dependencies(build)
    distributions = metadata.packages_distributions()
    missing = []
    for package in sorted(third_party_imports_of_compiled_core()):
        if _ignored_by_mypy(package):
            continue
        provided_by = {_name(d) for d in distributions.get(package, [package])}
        if not provided_by & available:
            missing.append(f"{package} (from {sorted(provided_by)})")
    assert not missing, f"add to [build-system] requires: {missing}"


def test_the_check_sees_orjson() -> None:
    """The check above reaches events/codec.py's orjson through the compiled closure."""
    assert {"orjson", "pydantic"} <= third_party_imports_of_compiled_core()


def _bounded(requirement: str) -> bool:
    spec = requirement.split(";")[0]
    exact = "==" in spec or "~=" in spec
    return exact or (">=" in spec and "<" in spec.replace("<=", "<"))


def test_every_dependency_has_a_tested_range() -> None:
    """`>=tested,<next-major` (or an exact pin): a new major release never arrives unseen."""
    groups = {
        "build-system.requires": PYPROJECT["build-system"]["requires"],
        "project.dependencies": PYPROJECT["project"]["dependencies"],
        **{
            f"optional-dependencies.{extra}": reqs
            for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()
        },
    }
    unbounded = [f"{group}: {r}" for group, reqs in groups.items() for r in reqs if not _bounded(r)]
    assert not unbounded, unbounded


def test_installed_versions_are_inside_the_ranges() -> None:
    """What the tests run against is what the ranges allow (the 'tested' in tested range)."""
    from packaging.requirements import Requirement

    outside = []
    reqs = [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["dev"],
    ]
    for text in reqs:
        req = Requirement(text)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            outside.append(f"{req.name}: not installed")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            outside.append(f"{req.name} {installed} not in {req.specifier}")
    assert not outside, outside
