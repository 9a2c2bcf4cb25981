"""Per-parent calls run in parallel under the one shared pacer; the output does not change.

A child stream queues the parents it will read; up to ``max_parallel_parents`` of them are
fetched at once in background threads, and the main thread writes their records in parent
order. Messages and state must be exactly those of a run that reads one parent at a time,
and the shared pacer must keep every thread inside the burst window.
"""

from __future__ import annotations

import threading
import time

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.http.client import PipedriveClient
from tap_pipedrive.http.pacer import WINDOW_MARGIN_SECONDS, WINDOW_SECONDS
from tests.support.messages import comparable
from tests.support.tap_runner import discover, run_tap

PER_PARENT = {
    "deal_followers",
    "deal_participants",
    "deal_changelog",
    "person_followers",
    "organization_relationships",
    "note_comments",
    "product_variations",
}


@pytest.fixture
def in_flight(monkeypatch):
    """The most requests that were on their way at the same moment."""
    lock = threading.Lock()
    seen = {"now": 0, "max": 0}
    original = PipedriveClient._fetch_once

    def counting(self, *args):
        with lock:
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        try:
            return original(self, *args)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(PipedriveClient, "_fetch_once", counting)
    return seen


def _run(
    sandbox, parallel: int, state: dict | None = None, *, alone: bool = False, streams=PER_PARENT
):
    config = {
        "api_token": sandbox.api_token,
        "api_url": sandbox.url,
        "max_parallel_streams": 1,
        "max_parallel_parents": parallel,
    }
    catalog = discover(config, streams)
    if alone:
        # The catalog above was built by another client of the same token; its requests
        # must leave the burst window first (the tap reacts to another client's requests
        # only through the headers, with its own requests already on their way).
        time.sleep(WINDOW_SECONDS + WINDOW_MARGIN_SECONDS)
    sandbox.clear_requests()
    messages = run_tap(config, state=state, catalog=catalog).messages
    calls = sorted((r.path, tuple(sorted(r.query.items()))) for r in sandbox.requests)
    return messages, calls


def test_parallel_parents_write_exactly_what_a_sequential_run_writes(in_flight):
    with Sandbox(seed=5, scale=0.05, burst_limit=None, latency=0.01) as sandbox:
        sequential, sequential_calls = _run(sandbox, 1)
        assert in_flight["max"] == 1
        in_flight["max"] = 0
        parallel, parallel_calls = _run(sandbox, 8)
        assert in_flight["max"] > 2, "per-parent requests did not overlap"
        assert comparable(parallel) == comparable(sequential)
        assert parallel_calls == sequential_calls
        states = [m for m in parallel if m["type"] == "STATE"]
        assert len(states) > len(PER_PARENT)  # checkpoints along the way, not one at the end

        # The same on an incremental run that reads a few changed parents.
        for deal in sandbox.dataset["deals"][:30:3]:
            sandbox.update_record("deals", deal["id"], title="changed")
        for person in sandbox.dataset["persons"][:20:4]:
            sandbox.update_record("persons", person["id"], name="changed")
        state = states[-1]["value"]
        again_sequential, _ = _run(sandbox, 1, state)
        again_parallel, _ = _run(sandbox, 8, state)
        assert comparable(again_parallel) == comparable(again_sequential)
        assert [m for m in again_parallel if m["type"] == "RECORD"]


def test_parallel_parents_stay_inside_a_tight_burst_limit():
    # The smallest plan's window (20 requests in 2 s) and eight threads asking at once.
    with Sandbox(seed=5, scale=0.05, burst_limit=20, latency=0.005) as sandbox:
        streams = {"deal_followers", "person_followers"}
        messages, _ = _run(sandbox, 8, alone=True, streams=streams)
        assert sandbox.stats()["rate_limited"] == 0
        expected = sandbox.expected_counts(sorted(streams))
        records: dict[str, int] = {}
        for message in messages:
            if message["type"] == "RECORD":
                records[message["stream"]] = records.get(message["stream"], 0) + 1
        assert records == {stream: count for stream, count in expected.items() if count}
