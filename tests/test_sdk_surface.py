"""The private Singer SDK surface the tap relies on: all of it in sdk_private.py, all still there.

An SDK upgrade that renames or reshapes any of it fails here, by name, instead of somewhere
in a sync.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from singer_sdk import RESTStream, Tap
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams import Stream

from tap_pipedrive import sdk_private
from tap_pipedrive.tap import TapPipedrive

PACKAGE = Path(__file__).resolve().parents[1] / "tap_pipedrive"
# Private attributes of SDK objects the tap reads or sets (through sdk_private only).
PRIVATE_ATTRIBUTES = ("_tap", "_stream_version", "_input_schema")
SDK_BASES = (Stream, RESTStream, Tap, PluginBase)


def _sdk_private_names() -> set[str]:
    names: set[str] = set()
    for base in SDK_BASES:
        names.update(
            name for name in dir(base) if name.startswith("_") and not name.startswith("__")
        )
    return names


@pytest.mark.parametrize(("where", "method", "parameters", "why"), sdk_private.OVERRIDDEN)
def test_every_overridden_private_method_still_has_its_signature(where, method, parameters, why):
    module_name, class_name = where.split(":")
    sdk_class = getattr(importlib.import_module(module_name), class_name)
    # Looked up without calling it: a class property would be evaluated by getattr.
    original = next((vars(c)[method] for c in sdk_class.__mro__ if method in vars(c)), None)
    assert original is not None, f"{where}.{method} is gone from the SDK ({why})"
    original = getattr(original, "fget", original)
    assert tuple(inspect.signature(original).parameters) == parameters


def test_the_private_attributes_are_where_sdk_private_reads_them():
    tap = TapPipedrive(config={"api_token": "abcdefgh"}, setup_mapper=False)
    stream = tap.streams["deals"]
    assert sdk_private.tap_of(stream) is tap
    assert sdk_private.input_schema(stream) is None  # no catalog was given
    sdk_private.set_stream_version(stream, 42)
    assert sdk_private.stream_version(stream) == 42
    assert stream._stream_version == 42  # what the SDK stamps RECORD messages with
    assert sdk_private.state_partition(stream, {"is_archived": True}) == {"is_archived": True}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text())) for path in sorted(PACKAGE.rglob("*.py"))]


def test_only_sdk_private_imports_private_sdk_modules_or_reads_private_attributes():
    offenders = []
    for path, tree in _modules():
        if path.name == "sdk_private.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] == "singer_sdk" and any(p.startswith("_") for p in parts):
                    offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
                offenders.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    assert not offenders, offenders


def test_only_the_listed_private_sdk_methods_are_overridden_or_called():
    private = _sdk_private_names()
    listed = {method for _, method, _, _ in sdk_private.OVERRIDDEN}
    overridden, called = set(), []
    for path, tree in _modules():
        if path.name == "sdk_private.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in private:
                overridden.add(node.name)
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and node.attr not in listed
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                called.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert overridden == listed
    assert not called, called


def test_a_second_termination_signal_lets_the_first_one_finish():
    import signal

    tap = TapPipedrive(config={"api_token": "abcdefgh"}, setup_mapper=False)
    with pytest.raises(SystemExit) as stopped:
        tap._handle_termination(signal.SIGTERM, None)
    assert stopped.value.code == 128 + signal.SIGTERM
    # Meltano forwards the signal the OS delivered already: no second exit mid-shutdown.
    assert tap._handle_termination(signal.SIGTERM, None) is None
