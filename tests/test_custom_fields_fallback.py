"""A field set whose v2 endpoint is refused falls back to its v1 endpoint, where one exists.

v2 ``/activityFields`` accepts only the ``admin`` OAuth scope, v1 ``/activityFields``
takes ``activities:read``. With v2 refused (JSON 403), a full sync still types the activity
custom columns from the v1 items, skips the ``activity_fields`` stream with a warning, and
exits 0. A refused field set without a fallback still ends the run with one line.

Run as the CLI, so the exit code and the log lines are what a user sees. The two full syncs
(v2 refused, v2 allowed) read identical sandboxes and are shared by the tests of this module.
"""

from __future__ import annotations

import pytest

from pipedrive_sandbox import Sandbox
from pipedrive_sandbox.fields import CUSTOM_TYPES
from tests.support.tap_runner import SyncResult, run_cli

V2_ACTIVITY_FIELDS = "/api/v2/activityFields"
V1_ACTIVITY_FIELDS = ("/api/v1/activityFields", "/v1/activityFields")
FALLBACK_WARNING = "custom field definitions: GET /api/v2/activityFields was refused"


def activity_sandbox() -> Sandbox:
    """A small world whose activities carry a custom field of every type.

    The default sandbox gives activities none (the v2 item schema lists no
    ``custom_fields``); without them the columns compared below would be empty.
    """
    sandbox = Sandbox(seed=2, scale=0.05, burst_limit=None)
    sandbox.start()
    for kind in CUSTOM_TYPES:
        sandbox.add_custom_field("activities", f"Visit {kind}", kind)
    return sandbox


def full_sync(sandbox: Sandbox) -> SyncResult:
    return run_cli({"api_token": sandbox.api_token, "api_url": sandbox.url})


def paths(sandbox: Sandbox, wanted: tuple[str, ...] | str) -> list[str]:
    wanted = (wanted,) if isinstance(wanted, str) else wanted
    return [request.path for request in sandbox.requests if request.path in wanted]


@pytest.fixture(scope="module")
def refused():
    sandbox = activity_sandbox()
    try:
        sandbox.faults.add("http_error", path=r"^/api/v2/activityFields$", status=403, count=None)
        yield sandbox, full_sync(sandbox)
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def granted():
    sandbox = activity_sandbox()
    try:
        yield sandbox, full_sync(sandbox)
    finally:
        sandbox.stop()


def activity_columns(result: SyncResult) -> dict[str, dict]:
    """The custom columns of the activities stream, as the custom_fields stream lists them."""
    properties = result.schemas()["activities"]["properties"]
    return {
        row["column"]: properties[row["column"]]
        for row in result.records("custom_fields")
        if row["stream"] == "activities"
    }


def test_a_refused_v2_activity_field_set_is_read_from_v1_once_and_the_sync_succeeds(refused):
    sandbox, result = refused
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert paths(sandbox, V1_ACTIVITY_FIELDS) == ["/api/v1/activityFields"]
    warnings = [line for line in result.stderr.splitlines() if FALLBACK_WARNING in line]
    assert len(warnings) == 1, warnings
    assert "403" in warnings[0] and "/api/v1/activityFields instead" in warnings[0]
    assert len(result.records("activities")) == sandbox.expected_counts()["activities"]
    assert sandbox.api_token not in result.stderr + result.stdout


def test_activities_keep_their_typed_custom_columns_and_values(refused, granted):
    _, fallback = refused
    _, normal = granted
    columns = activity_columns(normal)
    assert len(columns) == len(CUSTOM_TYPES)
    assert activity_columns(fallback) == columns
    assert fallback.schemas()["activities"] == normal.schemas()["activities"]
    # The values are converted the same way (enum option ids to labels, dates, objects).
    assert fallback.records("activities") == normal.records("activities")
    enum_column = next(
        row["column"]
        for row in fallback.records("custom_fields")
        if row["stream"] == "activities" and row["field_type"] == "enum"
    )
    labels = {record.get(enum_column) for record in fallback.records("activities")} - {None}
    assert labels and all(isinstance(label, str) for label in labels)
    assert [row for row in fallback.records("custom_fields") if row["stream"] == "activities"] == [
        row for row in normal.records("custom_fields") if row["stream"] == "activities"
    ]


def test_the_activity_fields_stream_is_skipped_with_a_warning_naming_the_admin_scope(refused):
    sandbox, result = refused
    assert result.records("activity_fields") == []
    skipped = [
        line for line in result.stderr.splitlines() if "Skipping stream activity_fields:" in line
    ]
    assert len(skipped) == 1, skipped
    assert "403" in skipped[0] and "OAuth scope admin" in skipped[0]
    # One refusal for the field catalog, one for the stream's own read: no retries of a 403.
    assert paths(sandbox, V2_ACTIVITY_FIELDS) == [V2_ACTIVITY_FIELDS] * 2


def test_an_allowed_v2_activity_field_set_never_calls_v1(granted):
    sandbox, result = granted
    assert result.returncode == 0, result.stderr[-2000:]
    assert paths(sandbox, V1_ACTIVITY_FIELDS) == []
    assert paths(sandbox, V2_ACTIVITY_FIELDS) == [V2_ACTIVITY_FIELDS]
    assert FALLBACK_WARNING not in result.stderr
    expected = sandbox.expected_counts()["activity_fields"]
    assert len(result.records("activity_fields")) == expected


def test_a_refused_field_set_without_fallback_ends_the_run_with_one_line(sandbox):
    sandbox.faults.add("http_error", path=r"^/api/v2/dealFields$", status=403, count=None)
    result = full_sync(sandbox)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "deal custom field definitions" in last_line
    assert "/api/v2/dealFields" in last_line and "403" in last_line
    assert [m for m in result.messages if m["type"] == "RECORD"] == []
    assert not [r for r in sandbox.requests if r.path.endswith("/v1/dealFields")]
