"""The committed stream schemas agree with Pipedrive's official OpenAPI specs.

Needs the specs at ../shared/pipedrive-openapi (relative to the repository root); the whole
module is skipped when they are absent.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.support.specs import REPO_ROOT, SPEC_DIR, SPECS_MISSING, SPECS_PRESENT, generator

SCHEMA_DIR = REPO_ROOT / "tap_pipedrive" / "schemas"

if not SPECS_PRESENT:
    pytest.skip(SPECS_MISSING, allow_module_level=True)

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")


@functools.cache
def load_spec(version: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with (SPEC_DIR / f"{version}.yaml").open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def spec_query_params(version: str, path: str) -> set[str]:
    """Names of the query parameters the spec allows on ``GET {path}`` of API ``version``.

    ``version`` is "v1" or "v2"; ``path`` is relative to that version's base, e.g. "/deals".
    """
    spec = load_spec(version)
    path_item = spec["paths"][path]
    parameters = [*path_item.get("parameters", ()), *path_item["get"].get("parameters", ())]
    names = set()
    for parameter in parameters:
        parameter = _resolve(spec, parameter)
        if parameter.get("in") == "query":
            names.add(parameter["name"])
    return names


# ------------------------------------------------------------------------------------------
# A deliberately separate reading of the spec, so (b) does not grade the generator with its
# own code.
# ------------------------------------------------------------------------------------------


def _resolve(spec: Mapping[str, Any], node: Any) -> Any:
    while isinstance(node, Mapping) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _parts(spec: Mapping[str, Any], node: Any, depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """The node and every schema combined into it by allOf/oneOf/anyOf."""
    node = _resolve(spec, node)
    if not isinstance(node, Mapping) or depth > 20:
        return
    yield node
    for keyword in ("allOf", "oneOf", "anyOf"):
        for part in node.get(keyword, ()):
            yield from _parts(spec, part, depth + 1)


def _property_paths(
    spec: Mapping[str, Any], node: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    if len(prefix) > 8:
        return
    for part in _parts(spec, node):
        if "items" in part:
            yield from _property_paths(spec, part["items"], prefix)
        for name, child in (part.get("properties") or {}).items():
            yield (*prefix, name)
            yield from _property_paths(spec, child, (*prefix, name))


def _row_schemas(spec: Mapping[str, Any], path: str) -> list[Any]:
    body = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    rows: list[Any] = []
    for part in _parts(spec, body["schema"]):
        data = (part.get("properties") or {}).get("data")
        for data_part in _parts(spec, data):
            if "items" in data_part:
                rows.append(data_part["items"])
            for child in (data_part.get("properties") or {}).values():
                rows.extend(p["items"] for p in _parts(spec, child) if "items" in p)
    return rows


def _schema_has(schema: Mapping[str, Any], dotted: tuple[str, ...]) -> bool:
    node: Any = schema
    for name in dotted:
        while isinstance(node, Mapping) and "items" in node:
            node = node["items"]
        properties = node.get("properties") if isinstance(node, Mapping) else None
        if not properties or name not in properties:
            return False
        node = properties[name]
    return True


def _committed(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


STREAM_NAMES = [stream.name for stream in generator().STREAMS]


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return generator().build_outputs({version: load_spec(version) for version in ("v1", "v2")})


# ------------------------------------------------------------------------------------------
# (a) the committed files are exactly what the generator writes
# ------------------------------------------------------------------------------------------


def test_generator_reproduces_committed_files(generated: dict[str, str]) -> None:
    committed = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert committed == set(generated), "schema files and generator streams differ"
    stale = [
        name
        for name, text in sorted(generated.items())
        if (SCHEMA_DIR / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"regenerate with `python tools/generate_schemas.py`: {stale}"


def test_output_is_sorted_and_indented_by_two(generated: dict[str, str]) -> None:
    for text in generated.values():
        document = json.loads(text)
        assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


SCHEMA_KEYWORDS = {"type", "format", "properties", "items", "additionalProperties", "required"}


def _keywords(node: Any) -> Iterator[str]:
    yield from node
    for child in (node.get("properties") or {}).values():
        yield from _keywords(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), Mapping):
            yield from _keywords(node[key])


@pytest.mark.parametrize("stream_name", STREAM_NAMES)
def test_schemas_carry_names_and_types_only(stream_name: str) -> None:
    # No descriptions, examples, enums or defaults copied from the spec.
    assert set(_keywords(_committed(stream_name))) <= SCHEMA_KEYWORDS


# ------------------------------------------------------------------------------------------
# (b) every property the spec declares for a stream's rows is in the stream's schema
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", STREAM_NAMES)
def test_schema_covers_every_spec_property(stream_name: str) -> None:
    module = generator()
    stream = next(stream for stream in module.STREAMS if stream.name == stream_name)
    spec = load_spec(stream.version)
    schema = _committed(stream_name)
    excluded = module.EXCLUDED_PROPERTIES.get(stream_name, frozenset())
    overridden = [tuple(path.split(".")) for path in module.OVERRIDES.get(stream_name, {})]

    missing = set()
    for path in stream.paths:
        rows = _row_schemas(spec, path)
        assert rows, f"{stream_name}: no row schema under `data` of GET {path}"
        for row in rows:
            for dotted in _property_paths(spec, row):
                if dotted[0] in excluded:
                    continue
                if any(dotted[: len(o)] == o and len(dotted) > len(o) for o in overridden):
                    continue
                if not _schema_has(schema, dotted):
                    missing.add(".".join(dotted))
    assert not missing, f"{stream_name}: spec properties missing from schema: {sorted(missing)}"


def test_excluded_secrets_stay_out() -> None:
    for stream_name, names in generator().EXCLUDED_PROPERTIES.items():
        assert not set(names) & set(_committed(stream_name)["properties"]), stream_name


# ------------------------------------------------------------------------------------------
# (c) valid JSON Schema, keys non-null, Singer-friendly shapes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream_name", STREAM_NAMES)
def test_schema_is_valid_draft7(stream_name: str) -> None:
    jsonschema.Draft7Validator.check_schema(_committed(stream_name))


@pytest.mark.parametrize("stream_name", STREAM_NAMES)
def test_primary_keys_are_required_and_not_null(stream_name: str) -> None:
    stream = next(stream for stream in generator().STREAMS if stream.name == stream_name)
    schema = _committed(stream_name)
    assert schema["required"] == list(stream.primary_keys)
    validator = jsonschema.Draft7Validator(schema)
    for key in stream.primary_keys:
        assert schema["properties"][key]["type"] in ("integer", "string"), key
        assert not validator.is_valid({key: None}), f"{stream_name}.{key} accepts null"
    others = set(schema["properties"]) - set(stream.primary_keys)
    for name in others:
        assert "null" in schema["properties"][name]["type"], f"{stream_name}.{name}"


def test_v2_custom_fields_stay_open() -> None:
    for stream_name in ("deals", "persons", "organizations", "products", "projects"):
        assert _committed(stream_name)["properties"]["custom_fields"] == {
            "type": ["object", "null"],
            "additionalProperties": True,
        }


def test_objects_inside_lists_declare_properties() -> None:
    # singer-sdk's record conformer indexes `properties` of every object schema in a list.
    def walk(node: Any, where: str) -> Iterator[str]:
        if not isinstance(node, Mapping):
            return
        items = node.get("items")
        if isinstance(items, Mapping):
            if "object" in items.get("type", ()) and "properties" not in items:
                yield where
            yield from walk(items, f"{where}[]")
        for name, child in (node.get("properties") or {}).items():
            yield from walk(child, f"{where}.{name}")

    bad = [where for name in STREAM_NAMES for where in walk(_committed(name), name)]
    assert not bad


def test_timestamps_dates_and_clock_times() -> None:
    deals = _committed("deals")["properties"]
    activities = _committed("activities")["properties"]
    users = _committed("users")["properties"]
    assert deals["update_time"]["format"] == "date-time"
    assert deals["close_time"]["format"] == "date-time"
    assert deals["expected_close_date"]["format"] == "date"
    assert activities["due_date"]["format"] == "date"
    assert "format" not in activities["due_time"]
    assert "format" not in activities["duration"]
    assert users["last_login"]["format"] == "date-time"
    assert _committed("deal_installments")["properties"]["billing_date"]["format"] == "date"


def test_v1_coercions_follow_the_overrides() -> None:
    assert _committed("filters")["properties"]["visible_to"]["type"] == ["string", "null"]
    assert _committed("deals")["properties"]["visible_to"]["type"] == ["integer", "null"]
    assert _committed("products")["properties"]["visible_to"]["type"] == ["integer", "null"]
    assert _committed("mail_threads")["properties"]["read_flag"]["type"] == ["boolean", "null"]
    relationships = _committed("organization_relationships")["properties"]
    assert relationships["active_flag"]["type"] == ["boolean", "null"]


@pytest.mark.parametrize(
    ("name", "declared", "examples", "expected"),
    [
        ("add_time", None, ["2020-01-01 10:00:00"], "date-time"),
        ("add_time", None, [], "date-time"),
        ("close_time", None, ["2021-01-01T00:00:00Z"], "date-time"),
        ("billing_date", None, [], "date"),
        ("local_won_date", None, ["2021-01-01"], "date"),
        ("due_time", None, ["15:00:00"], None),
        ("due_time", "date-time", [], None),
        ("duration", None, ["01:00"], None),
        ("reminder", None, ["10:30"], None),
        ("title", None, ["Deal"], None),
        ("title", "date", [], "date"),
        ("created", None, [], "date-time"),
        ("source_lead_id", "uuid", [], None),
    ],
)
def test_string_format_rules(
    name: str, declared: str | None, examples: list[str], expected: str | None
) -> None:
    assert generator().string_format(name, declared, examples) == expected


# ------------------------------------------------------------------------------------------
# _endpoints.json
# ------------------------------------------------------------------------------------------


def test_endpoints_file_matches_spec() -> None:
    entries = json.loads((SCHEMA_DIR / "_endpoints.json").read_text(encoding="utf-8"))
    assert [entry["stream"] for entry in entries] == STREAM_NAMES
    for entry in entries:
        spec = load_spec(entry["version"])
        assert list(entry["by_path"]) == entry["paths"]
        for path, facts in entry["by_path"].items():
            operation = spec["paths"][path]["get"]
            assert facts["token_cost"] == operation["x-token-cost"], path
            assert set(facts["query_params"]) == spec_query_params(entry["version"], path)
            assert facts["scopes"], f"{path}: no OAuth scope"
        first = entry["by_path"][entry["paths"][0]]
        assert {key: entry[key] for key in first} == first


def test_endpoint_facts_known_values() -> None:
    entries = {
        entry["stream"]: entry
        for entry in json.loads((SCHEMA_DIR / "_endpoints.json").read_text(encoding="utf-8"))
    }
    assert entries["deals"]["by_path"]["/deals/archived"]["token_cost"] == 20
    assert entries["files"]["max_limit"] == 100
    assert entries["mail_threads"]["query_params"] == ["folder", "limit", "start"]
    assert "attendees" in entries["activities"]["include_fields"]
    assert "update_time" in entries["leads"]["sort_by"]
    assert "phone-integration" in entries["call_logs"]["scopes"]
    assert spec_query_params("v2", "/deals/products") >= {"deal_ids", "cursor", "limit"}


# ------------------------------------------------------------------------------------------
# (d) what the tap sends: every stream has an entry, every request a spec path and parameters
# ------------------------------------------------------------------------------------------


def _registered_streams() -> list[Any]:
    from tap_pipedrive.streams import STREAM_TYPES

    # custom_fields is assembled from the *Fields reads, not from an endpoint of its own.
    return [stream for stream in STREAM_TYPES if stream.name != "custom_fields"]


def test_every_registered_stream_reads_its_generated_endpoint() -> None:
    specs = {stream.name: stream for stream in generator().STREAMS}
    for stream in _registered_streams():
        assert stream.name in specs, f"{stream.name}: no entry in tools/generate_schemas.py"
        entry = specs[stream.name]
        assert stream.api_version == entry.version, stream.name
        assert stream.path in entry.paths, f"{stream.name}: {stream.path} not in {entry.paths}"
        assert list(stream.primary_keys) == list(entry.primary_keys), stream.name


def _spec_path(version: str, path: str) -> str | None:
    """The spec path template a concrete request path matches (``/deals/7/flow`` ...).

    Literal segments win over parameters: ``/deals/products`` is not ``/deals/{id}``.
    """
    matches = []
    for template, operations in load_spec(version)["paths"].items():
        parts = template.split("/")
        pattern = "/".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        if "get" in operations and re.fullmatch(pattern, path):
            matches.append((template.count("{"), template))
    return min(matches)[1] if matches else None


def test_every_request_the_tap_sends_is_in_the_spec() -> None:
    from pipedrive_sandbox import Sandbox
    from tests.support.tap_runner import run_tap

    streams = {stream.name for stream in _registered_streams()}
    with Sandbox(seed=11, scale=0.05, burst_limit=None) as sandbox:
        config = {
            "api_token": sandbox.api_token,
            "api_url": sandbox.url,
            "include_mail_messages": True,
            "start_date": "2023-01-01T00:00:00Z",
        }
        first = run_tap(config, streams=streams)
        # A second run sends the incremental parameters (updated_since, newest-first sorts).
        run_tap(config, state=first.last_state, streams=streams)
        # Field history from the flow feeds instead of the changelogs (a setting).
        flows = {name for name in streams if name.endswith("_flow")}
        run_tap({**config, "field_history": "flow"}, streams=flows)
        requests = list(sandbox.requests)
    assert len({r.path for r in requests}) > 60
    problems = set()
    sent_streams = set()
    for request in requests:
        match = re.match(r"^/api/(v1|v2)(/.*)$", request.path)
        assert match, f"request outside the API: {request.path}"
        version, path = match.groups()
        template = _spec_path(version, path)
        if template is None:
            problems.add(f"GET {request.path}: no such path in the {version} spec")
            continue
        sent_streams.add(template)
        unknown = set(request.query) - spec_query_params(version, template)
        if unknown:
            problems.add(f"GET /{version}{template}: unknown parameters {sorted(unknown)}")
        assert request.status < 400, f"{request.path} {request.query} -> {request.status}"
    assert not problems, sorted(problems)
    for stream in _registered_streams():
        assert stream.path in sent_streams, f"{stream.name} sent no request"
