"""The package's import graph: no cycles, and every internal import resolves inside
``svt_deploy``.

Each module's source is parsed (not imported), so imports inside functions count as much
as those at the top: an import loop that only closes when some function runs is still a
loop. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

PACKAGE = "svt_deploy"


def package_modules() -> dict[str, Path]:
    """{module name: source file} for every module of the package, sub-packages included."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGE} is not installed"
    modules = {PACKAGE: Path(spec.origin)}
    for info in pkgutil.walk_packages(list(spec.submodule_search_locations), f"{PACKAGE}."):
        path = Path(info.module_finder.path) / info.name.rsplit(".", 1)[-1]
        modules[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imported_names(module: str, source: Path, is_package: bool) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of every import in ``module``; for ``from X import a``
    both ``X`` and ``X.a`` (a may be a submodule)."""
    tree = ast.parse(source.read_text(), str(source))
    skip = _type_checking_only(tree)
    here = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                if node.level - 1 >= len(parts):
                    found.append((f"<beyond the top: {'.' * node.level}{node.module or ''}>",
                                  node.lineno))
                    continue
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names
                      if alias.name != "*"]
    return found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """({module: internal modules it imports}, problems): a problem is an import that names
    the source directory ``toolchain`` or a module of the package that does not exist."""
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems = []
    for name, source in modules.items():
        is_package = source.name == "__init__.py"
        for target, line in imported_names(name, source, is_package):
            where = f"{source}:{line}"
            top = target.split(".")[0]
            if top == "toolchain" or target.startswith("<"):
                problems.append(f"{where} imports {target}, outside {PACKAGE}")
            elif top == PACKAGE:
                if target in modules:
                    if target != name:
                        graph[name].add(target)
                elif target.rpartition(".")[0] not in modules:  # X.a where X is a module: a name
                    problems.append(f"{where} imports {target}, which is no module of {PACKAGE}")
    return graph, problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_every_module_is_found():
    modules = package_modules()
    for name in ("svt_deploy.cli", "svt_deploy.pipeline", "svt_deploy.pipeline.deploy",
                 "svt_deploy.firmware", "svt_deploy.qemu", "svt_deploy.tools",
                 "svt_deploy.manifest"):
        assert name in modules, sorted(modules)
    assert all(path.is_file() for path in modules.values())


def test_internal_imports_resolve_under_the_package():
    _, problems = import_graph()
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cli_is_imported_by_no_stage():
    """The CLI modules parse arguments and call the pipeline; nothing imports them back."""
    graph, _ = import_graph()
    cli = {f"{PACKAGE}.{m}" for m in ("cli", "cli_device", "cli_tflite")}
    users = sorted(f"{name} -> {target}" for name, targets in graph.items() if name not in cli
                   and not name.endswith("__main__") for target in targets & cli)
    assert not users, users


@pytest.mark.parametrize("graph,cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set()}, None),
])
def test_cycle_finder(graph, cycle):
    assert find_cycle(graph) == cycle


def test_every_subpackage_goes_into_the_wheel():
    """pyproject lists the packages by hand (its package-dir mapping rules out discovery):
    a sub-package left off it would be missing from a wheel, though an editable install
    from the checkout still finds it."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    on_disk = {PACKAGE + "".join("." + p for p in d.relative_to(root / "toolchain").parts)
               for d in (root / "toolchain").rglob("*") if (d / "__init__.py").is_file()}
    assert on_disk - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"
