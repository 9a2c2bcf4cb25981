"""The auth package keeps its layers: every module imports only the ones below it.

The order is declared here once. A module that imports a higher layer, a module the
order does not place, or an import inside a function (the usual way to hide a circle)
fails these tests with the file and line at fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tap_pipedrive.auth

PACKAGE = "tap_pipedrive.auth"
PACKAGE_DIR = Path(tap_pipedrive.auth.__file__).parent

# Lowest first. Each module may import the modules before it, never one after it.
LAYERS = ("company", "tokens", "store", "authenticator", "modes", "login", "cli")

# What the package may use from the rest of the tap: the bottom layer every package
# shares. The HTTP transport is listed under its present and its planned name.
OUTSIDE_ALLOWED = (
    "tap_pipedrive.errors",
    "tap_pipedrive.redact",
    "tap_pipedrive.http.transport",
)


def package_modules(directory: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {path.stem: path for path in sorted(directory.glob("*.py")) if path.stem != "__init__"}


def imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the file imports.

    ``from a.b import c`` gives ``a.b.c``: ``c`` may be a module or a name in ``a.b``,
    and ``owner`` tells which.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: resolved against the package itself.
                base = PACKAGE.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def owner(dotted: str, modules: dict[str, Path]) -> str:
    """The module of the package, or the tap module, that an imported name comes from."""
    if dotted.startswith(PACKAGE + "."):
        first = dotted.removeprefix(PACKAGE + ".").split(".")[0]
        return f"{PACKAGE}.{first}" if first in modules else PACKAGE
    for allowed in OUTSIDE_ALLOWED:
        if dotted == allowed or dotted.startswith(allowed + "."):
            return allowed
    return dotted


def layer_violations(modules: dict[str, Path]) -> list[str]:
    problems: list[str] = []
    for name, path in modules.items():
        if name not in LAYERS:
            problems.append(f"{path.name}: not placed in LAYERS")
            continue
        rank = LAYERS.index(name)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, dotted in imported_modules(tree):
            if not (dotted == "tap_pipedrive" or dotted.startswith("tap_pipedrive.")):
                continue  # the standard library and third-party packages
            source = owner(dotted, modules)
            if source == PACKAGE:
                # The package's __init__ holds nothing but its docstring.
                problems.append(f"{path.name}:{line}: imports {dotted} from the package itself")
            elif source.startswith(PACKAGE + "."):
                target = source.removeprefix(PACKAGE + ".")
                if target not in LAYERS:
                    problems.append(f"{path.name}:{line}: imports {target}, not placed in LAYERS")
                elif LAYERS.index(target) >= rank:
                    problems.append(f"{path.name}:{line}: imports {target}, not a lower layer")
            elif source not in OUTSIDE_ALLOWED:
                problems.append(f"{path.name}:{line}: imports {dotted} from outside the package")
    return problems


def imports_inside_functions(paths: list[Path]) -> list[str]:
    problems: list[str] = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    problems.append(f"{path.name}:{node.lineno}: import inside a function")
    return sorted(set(problems))


def test_every_auth_module_imports_only_lower_layers():
    assert set(package_modules()) == set(LAYERS), "LAYERS and the package's modules differ"
    assert layer_violations(package_modules()) == []


def test_the_auth_package_init_imports_nothing_of_its_own():
    """Importing one layer must not load the layers above it through ``__init__``."""
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    assert [module for _, module in imported_modules(tree)] == []


def test_no_import_inside_a_function_in_the_auth_package():
    paths = [PACKAGE_DIR / "__init__.py", *package_modules().values()]
    assert imports_inside_functions(paths) == []


# --- the checks themselves catch what they are for --------------------------------------
def write_package(directory: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        (directory / f"{name}.py").write_text(text, encoding="utf-8")
    return package_modules(directory)


@pytest.mark.parametrize(
    "statement",
    [
        "from tap_pipedrive.auth.login import login_for_run",
        "from tap_pipedrive.auth import login",
        "import tap_pipedrive.auth.modes",
        "from .cli import options",
        "from tap_pipedrive.auth.tokens import TokenSet",  # its own layer
    ],
)
def test_an_import_of_a_higher_layer_is_reported(tmp_path, statement):
    files = {name: "" for name in LAYERS}
    files["tokens"] = statement + "\n"
    problems = layer_violations(write_package(tmp_path, files))
    assert len(problems) == 1 and problems[0].startswith("tokens.py:1: imports ")


def test_imports_of_lower_layers_and_the_shared_bottom_pass(tmp_path):
    files = {name: "" for name in LAYERS}
    files["modes"] = (
        "from tap_pipedrive.auth.store import open_store\n"
        "from tap_pipedrive.auth import tokens\n"
        "from .company import same_company\n"
        "from tap_pipedrive.errors import ConfigError\n"
        "from tap_pipedrive import redact\n"
    )
    assert layer_violations(write_package(tmp_path, files)) == []


def test_an_import_of_the_tap_or_an_unplaced_module_is_reported(tmp_path):
    files = {name: "" for name in LAYERS}
    files["cli"] = "from tap_pipedrive.tap import TapPipedrive\n"
    files["extra"] = ""
    problems = layer_violations(write_package(tmp_path, files))
    assert problems == [
        "cli.py:1: imports tap_pipedrive.tap.TapPipedrive from outside the package",
        "extra.py: not placed in LAYERS",
    ]


def test_an_import_hidden_in_a_function_is_reported(tmp_path):
    path = tmp_path / "store.py"
    path.write_text(
        "import json\n\n\ndef load():\n    from tap_pipedrive.auth import modes\n\n"
        "class Store:\n    def save(self):\n        import os\n",
        encoding="utf-8",
    )
    assert imports_inside_functions([path]) == [
        "store.py:5: import inside a function",
        "store.py:9: import inside a function",
    ]
