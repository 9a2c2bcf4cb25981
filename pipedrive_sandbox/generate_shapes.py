"""Regenerate ``shapes.json`` from the official Pipedrive OpenAPI files.

The sandbox itself is stdlib-only and never reads the YAML specs at run time; it reads the
compact JSON written here instead.  Only field names, types, formats, enums, nullability,
parameter constraints and token costs are extracted (no descriptions or examples).

Usage (from the repository root, needs PyYAML from the dev extras)::

    python -m pipedrive_sandbox.generate_shapes [--spec-dir ../shared/pipedrive-openapi]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipedrive_sandbox.endpoints import ENDPOINTS, Endpoint

SHAPES_PATH = Path(__file__).with_name("shapes.json")
DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "pipedrive-openapi"

# Keys kept from a schema node; everything else (descriptions, examples, titles) is dropped.
_KEPT = ("type", "nullable", "format", "enum", "maximum", "minimum")


def load_spec(path: Path) -> dict[str, Any]:
    import yaml  # dev-only dependency: the sandbox never imports this module at run time

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def _deref(spec: dict[str, Any], node: Any, seen: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:  # recursive schema: stop expanding
            return {"type": "object"}, seen
        target: Any = spec
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node, seen = target, (*seen, ref)
    return node, seen


def compact(spec: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Resolve $ref, merge allOf, pick the first oneOf/anyOf branch, keep only type facts."""
    node, seen = _deref(spec, node, seen)
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = {key: node[key] for key in _KEPT if key in node}
    properties: dict[str, Any] = {}
    for part in node.get("allOf", []):
        merged = compact(spec, part, seen)
        properties.update(merged.pop("properties", {}))
        for key, value in merged.items():
            out.setdefault(key, value)
    for key in ("oneOf", "anyOf"):
        if node.get(key):
            first = compact(spec, node[key][0], seen)
            properties.update(first.pop("properties", {}))
            for sub_key, value in first.items():
                out.setdefault(sub_key, value)
    for name, sub in (node.get("properties") or {}).items():
        properties[name] = compact(spec, sub, seen)
    if properties:
        out["properties"] = properties
        out.setdefault("type", "object")
    if "items" in node:
        out["items"] = compact(spec, node["items"], seen)
        out.setdefault("type", "array")
    return out


def _item_schema(response: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    node = response
    for step in ("data", *endpoint.data_path):
        node = node.get("properties", {}).get(step, {})
    if node.get("type") == "array":
        return node.get("items", {})
    return node


def shape_for(spec: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    operation = spec["paths"][endpoint.spec_path]["get"]
    params: dict[str, Any] = {}
    for raw in operation.get("parameters", []):
        param, _ = _deref(spec, raw, ())
        schema = compact(spec, param.get("schema", {}))
        entry: dict[str, Any] = {"required": bool(param.get("required", False))}
        for key in ("enum", "maximum", "type"):
            if key in schema:
                entry[key] = schema[key]
        params[param["name"]] = entry
    response = compact(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
    return {
        "cost": operation.get("x-token-cost"),
        "params": params,
        "item": _item_schema(response, endpoint),
    }


def generate(spec_dir: Path) -> dict[str, Any]:
    specs = {version: load_spec(spec_dir / f"{version}.yaml") for version in ("v1", "v2")}
    shapes: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        shapes[endpoint.key] = shape_for(specs[endpoint.version], endpoint)
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec-dir", type=Path, default=DEFAULT_SPEC_DIR)
    parser.add_argument("--output", type=Path, default=SHAPES_PATH)
    args = parser.parse_args()
    shapes = generate(args.spec_dir)
    args.output.write_text(
        json.dumps(dict(sorted(shapes.items())), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {len(shapes)} endpoint shapes to {args.output}")


if __name__ == "__main__":
    main()
