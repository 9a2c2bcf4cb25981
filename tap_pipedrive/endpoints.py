"""Facts about the endpoints the tap reads, from ``schemas/_endpoints.json``.

The file is generated from Pipedrive's OpenAPI specs (tools/generate_schemas.py): token cost,
OAuth scopes and allowed query parameters of every list endpoint behind a stream. The tap uses
it to say which scope a refused request needs; tools/stream_table.py builds the README's stream
table from it.
"""

from __future__ import annotations

import json
import re
import typing as t
from functools import cache
from importlib import resources
from urllib.parse import urlparse

from tap_pipedrive import schemas

ENDPOINTS_FILE = "_endpoints.json"
_API_PREFIX = re.compile(r"^(?:/api)?/(v1|v2)(/.*)$")


@cache
def endpoint_entries() -> tuple[dict[str, t.Any], ...]:
    """One entry per stream, in the generator's order."""
    text = resources.files(schemas).joinpath(ENDPOINTS_FILE).read_text(encoding="utf-8")
    return tuple(json.loads(text))


@cache
def _path_patterns() -> tuple[tuple[str, re.Pattern[str], dict[str, t.Any]], ...]:
    patterns = []
    for entry in endpoint_entries():
        for path, facts in entry["by_path"].items():
            regex = re.escape(path).replace(re.escape("{id}"), "[^/]+")
            patterns.append((entry["version"], re.compile(f"^{regex}$"), facts))
    return tuple(patterns)


def facts_for_url(url: str) -> dict[str, t.Any] | None:
    """Facts of the spec endpoint a request URL addresses (``/api/v2/deals/7/followers``...)."""
    match = _API_PREFIX.match(urlparse(url).path)
    if match is None:
        return None
    version, path = match.groups()
    for entry_version, pattern, facts in _path_patterns():
        if entry_version == version and pattern.match(path):
            return facts
    return None


def scope_hint(url: str) -> str:
    """A clause naming the OAuth scopes that allow the endpoint of ``url`` (or nothing)."""
    facts = facts_for_url(url)
    scopes = (facts or {}).get("scopes") or ()
    if not scopes:
        return ""
    return (
        f" (the endpoint needs OAuth scope {' or '.join(scopes)}, and a user and plan "
        "allowed to see it)"
    )
