"""The planes depend one way (docs/architecture.md, "Layers"): the data plane, the build runner, the gateway and the
runtime import nothing from the control plane, and the control plane imports nothing from the gateway.

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
    (("dataplane", "build", "gateway", "runtime"), "cellplane.controlplane"),
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
