"""Incremental reads of notes, leads (open and archived) and files.

Notes and open leads filter on ``updated_since``. Files and archived leads cannot be filtered,
but sort: after the first sync they are read newest first, only down to the bookmark.
"""

from __future__ import annotations

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.streams.bookmarks import future_starting_value
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import run_tap

STREAMS = {"notes", "leads", "files"}


@pytest.fixture
def sandbox():
    with Sandbox(seed=9, scale=0.5, burst_limit=None) as sb:
        yield sb


def calls(sandbox, path):
    return [request for request in sandbox.requests if request.path == path]


def ids(result, stream):
    return sorted(record["id"] for record in result.records(stream))


def test_only_changes_are_read_and_emitted(sandbox):
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url, "page_size": 50}
    first = run_tap(config, streams=STREAMS)
    expected = sandbox.expected_counts()
    for stream in STREAMS:
        assert len(set(ids(first, stream))) == expected[stream] == len(first.records(stream))
    # The first read of a newest-first list goes oldest first, every page of it.
    file_pages = calls(sandbox, "/api/v1/files")
    assert len(file_pages) >= expected["files"] // 50
    assert {r.query["sort"] for r in file_pages} == {"update_time ASC"}

    sandbox.clear_requests()
    quiet = run_tap(config, state=first.last_state, streams=STREAMS)
    assert quiet.record_counts() == {}
    (files_call,) = calls(sandbox, "/api/v1/files")
    assert files_call.query["sort"] == "update_time DESC"
    (archived_call,) = calls(sandbox, "/api/v1/leads/archived")
    assert archived_call.query["sort"] == "update_time DESC"
    assert "updated_since" not in archived_call.query  # /leads/archived has no such filter
    assert "updated_since" in calls(sandbox, "/api/v1/leads")[0].query
    assert "updated_since" in calls(sandbox, "/api/v1/notes")[0].query

    files = sandbox.dataset["files"]
    leads = sandbox.dataset["leads"]
    archived = [lead["id"] for lead in leads if lead["is_archived"]]
    open_lead = next(lead["id"] for lead in leads if not lead["is_archived"])
    changed_files = [files[0]["id"], files[-1]["id"], files[len(files) // 2]["id"]]
    for file_id in changed_files:
        sandbox.update_record("files", file_id, name="renamed.pdf")
    sandbox.update_record("leads", archived[0], title="Archived, then edited")
    sandbox.update_record("leads", open_lead, title="Edited")
    note = sandbox.dataset["notes"][10]["id"]
    sandbox.update_record("notes", note, content="Edited note")

    sandbox.clear_requests()
    second = run_tap(config, state=quiet.last_state, streams=STREAMS)
    assert ids(second, "files") == sorted(changed_files)
    assert ids(second, "leads") == sorted([archived[0], open_lead])
    assert ids(second, "notes") == [note]
    # Three changed files fit in the first page, newest first: one request.
    assert len(calls(sandbox, "/api/v1/files")) == 1
    assert len(calls(sandbox, "/api/v1/leads/archived")) == 1
    renamed = second.records("files")
    assert all(record["name"] == "renamed.pdf" for record in renamed)
    # Emitted oldest first, so the bookmark ends at the newest change.
    times = [record["update_time"] for record in renamed]
    assert times == sorted(times)
    bookmark = second.last_state["bookmarks"]["files"]["replication_key_value"]
    assert bookmark == times[-1]


def test_a_newest_first_read_never_asks_for_a_page_past_the_bookmark():
    """Whoever drains the pages (a thread fetching ahead does), the page past the bookmark
    is never asked for: the paginator stops on the page reaching back past it."""
    with Sandbox(seed=9, scale=0.5, burst_limit=None) as sandbox:
        files = sorted(sandbox.dataset["files"], key=lambda row: row["update_time"])
        assert len(files) > 3 * 20
        bookmark = files[-30]["update_time"]  # 30 rows from the newest: inside page 1 of 50
        state = {
            "bookmarks": {
                "files": {"replication_key": "update_time", "replication_key_value": bookmark}
            }
        }
        config = {"api_token": sandbox.api_token, "api_url": sandbox.url, "page_size": 20}
        tap = TapPipedrive(config=config, state=state, setup_mapper=False)
        stream = tap.streams["files"]
        # The spec fetch-ahead plans with, before the SDK has settled the bookmark.
        spec = stream.request_spec(None, future_starting_value(stream, None))
        assert spec == stream.request_spec(None, bookmark)  # a planned job is reused if equal
        pages = list(tap.client.pages(spec))
        asked = [r.query["start"] for r in sandbox.requests if r.path == "/api/v1/files"]
    # 20 rows a page, 30 rows newer than the bookmark: the second page reaches past it.
    assert asked == ["0", "20"]
    assert len(pages) == 2
    assert pages[-1].next_token is None
