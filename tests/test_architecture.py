"""The import graph of the package: layers that import downward only, and no circle.

docs/architecture.md draws the layers; this test holds the code to the drawing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tap_pipedrive"

# Lowest first. A module may import its own layer's modules and those of lower layers.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "redact", "normalize", "endpoints", "sdk_private", "schemas", "output"),
    (
        "http.transport",
        "http.pacer",
        "http.pages",
        "http.paging",
        "budget",
        "progress",
        "conform",
    ),
    ("auth",),
    ("http.client", "http.fetch_ahead"),
    ("custom_fields", "run", "sweeps"),
    ("streams",),
    ("estimate", "tap"),
    ("__main__",),
)


def _unit(module: str) -> str:
    """The layer entry a module belongs to: its package's or its own name."""
    for layer in LAYERS:
        for name in layer:
            if module == name or module.startswith(name + "."):
                return name
    raise AssertionError(f"tap_pipedrive.{module} is in no layer of this test: add it")


def _rank(module: str) -> int:
    unit = _unit(module)
    return next(index for index, layer in enumerate(LAYERS) if unit in layer)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports of tap_pipedrive modules that run (those under TYPE_CHECKING do not)."""
    found: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "tap_pipedrive":
                    found.extend((node.lineno, alias.name) for alias in node.names)
                elif node.module.startswith("tap_pipedrive."):
                    found.append((node.lineno, node.module.removeprefix("tap_pipedrive.")))
            elif isinstance(node, ast.Import):
                found.extend(
                    (node.lineno, alias.name.removeprefix("tap_pipedrive."))
                    for alias in node.names
                    if alias.name.startswith("tap_pipedrive.")
                )
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return found


def _graph() -> dict[str, list[tuple[int, str]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = _runtime_imports(ast.parse(path.read_text()))
    return graph


def test_every_import_goes_to_the_same_or_a_lower_layer():
    upward = [
        f"{module}:{line} imports {target}"
        for module, imports in _graph().items()
        if module != "__init__"
        for line, target in imports
        if _rank(target) > _rank(module)
    ]
    assert not upward, upward


def test_no_import_inside_a_function_hides_a_circle():
    hidden = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                        "tap_pipedrive"
                    ):
                        hidden.append(f"{_module_name(path)}:{inner.lineno}")
    assert not hidden, hidden


def test_the_modules_import_no_circle():
    graph = {module: [target for _, target in imports] for module, imports in _graph().items()}
    known = set(graph)
    state: dict[str, int] = {}  # 1 visiting, 2 done
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, ()):
            if target not in known:
                continue
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target) :], target] if target in trail else [])
            elif state.get(target) is None:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module, [module])
    assert not circles, circles


def test_an_upward_import_is_caught():
    # The checks themselves, on a module of the http layer that imports the tap and a stream.
    source = (
        "import typing as t\n"
        "from tap_pipedrive.errors import PipedriveError\n"
        "from tap_pipedrive.tap import TapPipedrive\n"
        "if t.TYPE_CHECKING:\n"
        "    from tap_pipedrive.streams.base import PipedriveStream\n"
    )
    imports = _runtime_imports(ast.parse(source))
    assert [target for _, target in imports] == ["errors", "tap"]
    assert [t for _, t in imports if _rank(t) > _rank("http.client")] == ["tap"]
