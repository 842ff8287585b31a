"""The planes depend one way (docs/architecture.md, "Layers"): the data plane, the build runner, the gateway and the
runtime import nothing from the control plane, and the control plane imports nothing from the gateway. Inside the
control plane, modules depend one way too ("Control plane layers"): their import graph has no cycle. The CLI is a
client of the API: it imports nothing from the control plane but the module that starts it in-process.

The check reads every module under src/cellplane with ``ast`` and counts every import statement wherever it stands
(module level, inside a function, under ``if TYPE_CHECKING``), absolute or relative; nothing is imported to check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cellplane

SRC = Path(cellplane.__file__).resolve().parent

# (packages that must not import, the package they must not import)
RULES = (
    (("dataplane", "kubernetes", "build", "gateway", "runtime", "images"), "cellplane.controlplane"),
    (("controlplane",), "cellplane.gateway"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement in ``source`` names, with its line: ``import a.b``, ``from a import b``
    (as ``a`` and ``a.b``, since ``b`` may be a module) and relative forms resolved against ``module``."""
    found: list[tuple[int, str]] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def module_graph(package: str) -> dict[str, set[str]]:
    """The modules of ``package`` and, for each, the modules of the package it imports (any form, anywhere)."""
    paths = {module_name(path): path for path in sorted((SRC / package).rglob("*.py"))}
    return {module: {name for _, name in imported(path.read_text(), module, path.name == "__init__.py")
                     if name in paths and name != module}
            for module, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as the modules along it, first repeated at the end (empty when there is none): a depth-
    first search that keeps the path it is on, so the cycle it meets can be printed."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str]:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target):], target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        on_path.discard(path.pop())
        done.add(module)
        return []

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


# The CLI is a client of the REST API. What it may import from the control plane, and why:
CLI_ALLOWED = {
    # `controlplane serve` starts the control plane in-process: that is its job.
    "cli/commands_server.py": "cellplane.controlplane",
    # `admin recover-token` is break-glass for when no admin token is left: it must work with no control plane
    # running, so it opens the control plane's database and token key itself. It goes through one function the
    # control plane owns (recovery.recover_admin_token), not through identity, keys or the store.
    "cli/commands_admin.py": "cellplane.controlplane.recovery",
}


def cli_violations() -> list[str]:
    out = []
    for path in sorted((SRC / "cli").rglob("*.py")):
        where = str(path.relative_to(SRC).as_posix())
        allowed = CLI_ALLOWED.get(where)
        for line, name in imported(path.read_text(), module_name(path), path.name == "__init__.py"):
            if not (name == "cellplane.controlplane" or name.startswith("cellplane.controlplane.")):
                continue
            if allowed is not None and (name == allowed or name.startswith(allowed + ".")):
                continue
            out.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    return sorted(set(out))


def violations(packages: tuple[str, ...], forbidden: str) -> list[str]:
    out = []
    for package in packages:
        for path in sorted((SRC / package).rglob("*.py")):
            module = module_name(path)
            for line, name in imported(path.read_text(), module, path.name == "__init__.py"):
                if name == forbidden or name.startswith(forbidden + "."):
                    out.append(f"{path.relative_to(SRC.parent)}:{line} imports {name}")
    return sorted(set(out))


def test_the_data_plane_build_runner_gateway_and_runtime_import_nothing_from_the_control_plane() -> None:
    packages, forbidden = RULES[0]
    assert violations(packages, forbidden) == []


def test_the_control_plane_imports_nothing_from_the_gateway() -> None:
    packages, forbidden = RULES[1]
    assert violations(packages, forbidden) == []


def test_the_check_sees_imports_inside_functions_and_in_every_form() -> None:
    source = '''
import cellplane.controlplane.keys
from cellplane import controlplane
def helper():
    from cellplane.controlplane.sources import subdirectory
    from ..controlplane import keys
    from . import sibling
'''
    names = {name for _, name in imported(source, "cellplane.dataplane.agent", is_package=False)}
    assert {"cellplane.controlplane.keys", "cellplane.controlplane", "cellplane.controlplane.sources",
            "cellplane.dataplane.sibling"} <= names


def test_every_package_the_rules_name_exists() -> None:
    for packages, forbidden in RULES:
        for package in packages:
            assert (SRC / package / "__init__.py").is_file(), package
        assert (SRC / forbidden.removeprefix("cellplane.") / "__init__.py").is_file(), forbidden


def test_the_control_plane_modules_import_each_other_without_a_cycle() -> None:
    cycle = find_cycle(module_graph("controlplane"))
    assert cycle == [], "import cycle: " + " -> ".join(m.removeprefix("cellplane.controlplane.") for m in cycle)


# The control plane's orchestration ("Control plane layers"): what a change sets off elsewhere. Entity services sit
# below it and never call it; only the entry points do (the API's routes, the platform's bootstrap).
ORCHESTRATION = ("lifecycle", "kindhandlers", "cascade", "rotation", "scaling")
ENTRY_POINTS = ("api", "platform")


def test_only_the_entry_points_call_the_orchestration_layer() -> None:
    graph = module_graph("controlplane")
    prefix = "cellplane.controlplane."
    layer = {prefix + m for m in ORCHESTRATION}
    assert layer <= set(graph), sorted(layer - set(graph))
    callers = sorted(m for m, targets in graph.items() if targets & layer and m not in layer
                     and not any(m == prefix + e or m.startswith(prefix + e + ".") for e in ENTRY_POINTS))
    assert callers == []


def test_the_cycle_check_finds_a_cycle_closed_inside_a_function_and_one_through_type_checking() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from cellplane.controlplane.platform import Platform
def later():
    from cellplane.controlplane import deployments
"""
    names = {name for _, name in imported(source, "cellplane.controlplane.resources", is_package=False)}
    assert {"cellplane.controlplane.platform", "cellplane.controlplane.deployments"} <= names


def test_the_cli_imports_nothing_from_the_control_plane_but_what_starts_or_recovers_it() -> None:
    assert cli_violations() == []


def test_the_cli_allowances_name_files_and_modules_that_exist() -> None:
    for where, module in CLI_ALLOWED.items():
        assert (SRC / where).is_file(), where
        relative = Path(*module.split(".")[1:])
        assert (SRC / relative).with_suffix(".py").is_file() or (SRC / relative / "__init__.py").is_file(), module


# The console is a client of the control plane's API (its pages call the API in-process); the API's app mounts it,
# and nothing else in the control plane reaches up into it.
CONSOLE_MOUNT = "controlplane/api/app.py"


def test_the_control_plane_imports_nothing_from_the_console_but_the_app_that_mounts_it() -> None:
    found = [v for v in violations(("controlplane",), "cellplane.console") if not v.startswith(
        "cellplane/" + CONSOLE_MOUNT + ":")]
    assert found == []
    assert (SRC / CONSOLE_MOUNT).is_file()
