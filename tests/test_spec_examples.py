"""The official spec's own response examples, put through the tap's record path, validate
against the stream schemas at every depth (types and date/date-time formats).

Needs the specs at ../shared/pipedrive-openapi; skipped without them.
"""

from __future__ import annotations

import copy
import functools
from datetime import UTC, datetime
from typing import Any

import pytest

from tap_pipedrive.streams.bases import ChangedParentsStream, Parent
from tests.support.specs import SPEC_DIR, SPECS_MISSING, SPECS_PRESENT, generator
from tests.test_records import format_violations

if not SPECS_PRESENT:
    pytest.skip(SPECS_MISSING, allow_module_level=True)

jsonschema = pytest.importorskip("jsonschema")


@functools.cache
def specs() -> dict[str, Any]:
    return generator().load_specs(SPEC_DIR)


@pytest.fixture(scope="module")
def tap():
    from pipedrive_sandbox import Sandbox
    from tap_pipedrive.tap import TapPipedrive

    with Sandbox(seed=3, scale=0.01, burst_limit=None) as sandbox:
        config = {
            "api_token": sandbox.api_token,
            "api_url": sandbox.url,
            "include_mail_messages": True,
        }
        # Field history comes from the changelogs or, by a setting, from the flow feeds:
        # one tap of each has every stream.
        taps = [
            TapPipedrive(config={**config, "field_history": source})
            for source in ("changelog", "flow")
        ]
        streams = {}
        for each in taps:
            for stream in each.streams.values():
                _ = stream.schema  # custom field definitions are read while the sandbox runs
                streams.setdefault(stream.name, stream)
        yield streams


def _context(path: str) -> dict[str, Any] | None:
    if "{id}" in path:
        return {"id": 7}  # children of parents read by a parent stream
    if path.endswith("/archived"):
        return {"is_archived": True}
    if path == "/mailbox/mailThreads":
        return {"folder": "inbox"}
    return None


PARENT = Parent(7, datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00Z")
STREAMS = [stream for stream in generator().STREAMS]


@pytest.mark.parametrize("entry", STREAMS, ids=[stream.name for stream in STREAMS])
def test_spec_examples_validate_after_the_record_path(tap, entry) -> None:
    stream = tap[entry.name]
    validator = jsonschema.Draft7Validator(stream.schema)
    checked = 0
    problems: list[str] = []
    for path in entry.paths:
        rows = generator().response_example_rows(specs()[entry.version], path)
        for row in rows:
            record = copy.deepcopy(row)
            if isinstance(stream, ChangedParentsStream):
                # What the tap adds to each child row: its parent's id and update time.
                record = stream._with_parent(record, PARENT)
            record = stream.post_process(record, _context(path))
            if record is None:
                continue
            record = stream._conformer(record)
            problems.extend(error.message for error in validator.iter_errors(record))
            problems.extend(format_violations(stream.schema, record, f"{entry.name}{path}"))
            checked += 1
    if not checked:
        pytest.skip(f"the spec has no response example for {entry.paths}")
    assert not problems, problems[:5]
