"""Streams fetched in parallel, written one after the other.

With ``max_parallel_streams`` > 1 the streams still to come fetch pages in background
threads while the main thread writes the current one. The output must not change: same
messages in the same order, the same state, the same calls.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.errors import DailyBudgetExhausted
from tap_pipedrive.http import fetch_ahead as prefetch
from tap_pipedrive.tap import CONFIG_SCHEMA
from tests.support.messages import comparable
from tests.support.tap_runner import CORE_STREAM_NAMES, run_cli, sync_capturing
from tests.support.waiting import wait_until

# Independent top-level streams (child streams interleave with their parent by design).
CORE = set(CORE_STREAM_NAMES)
# Requests a sync makes before the streams start (custom field definitions).
FIELD_PATHS = ("Fields",)


@pytest.fixture
def sandbox():
    """Several pages per stream at the sizes used here, whatever the suite's default scale."""
    with Sandbox(seed=1, scale=0.2, burst_limit=None) as sb:
        yield sb


def _list_calls(sandbox) -> list[tuple[str, tuple]]:
    return sorted(
        (r.path, tuple(sorted(r.query.items())))
        for r in list(sandbox.requests)
        if not r.path.endswith(FIELD_PATHS)
    )


def test_setting_is_declared_with_a_default_above_one():
    setting = CONFIG_SCHEMA["properties"]["max_parallel_streams"]
    assert setting["default"] > 1
    assert setting["minimum"] == 1


def test_parallel_fetching_changes_nothing_in_the_output(sandbox, api_config):
    sandbox.clear_requests()
    _, sequential, error = sync_capturing({**api_config, "max_parallel_streams": 1}, streams=CORE)
    assert error is None
    sequential_calls = _list_calls(sandbox)
    sandbox.clear_requests()
    tap, parallel, error = sync_capturing({**api_config, "max_parallel_streams": 4}, streams=CORE)
    assert error is None
    assert tap.run.fetcher.jobs_started_ahead > 0
    assert comparable(parallel) == comparable(sequential)
    assert _list_calls(sandbox) == sequential_calls
    assert sandbox.stats()["rate_limited"] == 0


def test_streams_are_written_one_after_the_other(sandbox, api_config):
    _, messages, error = sync_capturing({**api_config, "max_parallel_streams": 4}, streams=CORE)
    assert error is None
    finished: set[str] = set()
    current = None
    schemas: set[str] = set()
    for message in messages:
        if message["type"] == "SCHEMA":
            schemas.add(message["stream"])
        if message["type"] != "RECORD":
            continue
        stream = message["stream"]
        assert stream in schemas, f"RECORD of {stream} before its SCHEMA"
        if stream != current:
            assert stream not in finished, f"records of {stream} interleaved with another stream"
            if current is not None:
                finished.add(current)
            current = stream
    counts = sandbox.expected_counts()
    incremental = {"deals", "persons", "organizations", "activities", "products"}
    for stream in incremental:
        records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]
        assert len(records) == counts[stream]
    # Every STATE covers the records before it: the bookmark never runs ahead of them.
    high_water: dict[str, str] = {}
    checked: set[str] = set()
    for message in messages:
        if message["type"] == "RECORD" and "update_time" in message["record"]:
            stream = message["stream"]
            value = message["record"]["update_time"]
            if value and value > high_water.get(stream, ""):
                high_water[stream] = value
        elif message["type"] == "STATE":
            for stream, bookmark in message["value"].get("bookmarks", {}).items():
                # A partitioned stream keeps its bookmarks in its partitions only; a stream
                # not started yet, or read whole, has no replication key in its entry.
                for entry in bookmark.get("partitions") or [bookmark]:
                    if "replication_key" not in entry:
                        continue
                    value = entry.get("replication_key_value")
                    assert value is not None, (stream, entry)
                    assert value <= high_water.get(stream, ""), (stream, value)
                    checked.add(stream)
    # Each incremental stream's bookmark was checked at least once.
    assert checked == incremental


def test_later_streams_are_fetched_while_the_first_is_written(sandbox, api_config):
    arrived: list[bool] = []

    def hook(tap):
        stream = tap.streams["deals"]
        original = stream.post_process

        def post_process(row, context=None):
            if not arrived:
                arrived.append(
                    wait_until(lambda: any(r.path == "/api/v2/persons" for r in sandbox.requests))
                )
            return original(row, context)

        stream.post_process = post_process

    _, _, error = sync_capturing({**api_config, "max_parallel_streams": 4}, streams=CORE, hook=hook)
    assert error is None
    assert arrived == [True]


def test_one_stream_at_a_time_when_set_to_one(sandbox, api_config):
    sandbox.clear_requests()
    _, _, error = sync_capturing({**api_config, "max_parallel_streams": 1}, streams=CORE)
    assert error is None
    order = [r.path for r in sandbox.requests if not r.path.endswith(FIELD_PATHS)]
    last_deals = max(i for i, path in enumerate(order) if path.startswith("/api/v2/deals"))
    first_persons = order.index("/api/v2/persons")
    assert last_deals < first_persons


def test_streams_waiting_their_turn_stop_at_the_memory_budget(sandbox, api_config, monkeypatch):
    """With no budget, the waiting streams hold one page each at most, and nothing is lost."""
    monkeypatch.setattr(prefetch, "AHEAD_BUDGET_BYTES", 1)
    parallel = 4
    pages_ahead: list[int] = []

    def hook(tap):
        names = list(tap.streams)
        later = {"/api/v2/deals/archived"}
        for name in names[names.index("deals") + 1 :]:
            stream = tap.streams[name]
            if not stream.parent_stream_type and "{" not in getattr(stream, "path", "{"):
                later.add(urlparse(stream.get_url(None)).path)
        # Custom field definitions are read when a stream starts, not fetched ahead.
        later = {path for path in later if not path.endswith(FIELD_PATHS)}
        deals = tap.streams["deals"]
        original = deals.post_process
        active_partition = deals.partitions[0]

        def post_process(row, context=None):
            if context == active_partition:
                pages_ahead.append(sum(1 for r in list(sandbox.requests) if r.path in later))
            return original(row, context)

        deals.post_process = post_process

    sandbox.clear_requests()
    _, messages, error = sync_capturing(
        {**api_config, "max_parallel_streams": parallel, "page_size": 50}, streams=CORE, hook=hook
    )
    assert error is None
    # Streams after deals have been fetched ahead (so the test sees the budget at work)...
    assert pages_ahead and max(pages_ahead) >= 1
    # ...but no more than one page for each of the other parallel slots.
    assert max(pages_ahead) <= parallel - 1
    counts = sandbox.expected_counts()
    for stream in ("deals", "persons", "activities"):
        assert (
            sum(1 for m in messages if m["type"] == "RECORD" and m["stream"] == stream)
            == (counts[stream])
        )


def test_a_fatal_error_stops_every_background_fetch(sandbox, api_config):
    sandbox.faults.add("daily_429", path=r"^/api/v2/deals$", count=None)
    tap, messages, error = sync_capturing(
        {**api_config, "max_parallel_streams": 4, "page_size": 50}, streams=CORE
    )
    assert isinstance(error, DailyBudgetExhausted)
    names = [name for name in tap.streams if name in CORE]
    written = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert written <= set(names[: names.index("deals")])
    # Every background thread ends, and no request goes out any more.
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("fetch-")], 5.0
    )
    settled = len(sandbox.requests)
    time.sleep(0.3)
    assert len(sandbox.requests) == settled


@pytest.mark.parametrize("value", [0, "two"])
def test_bad_setting_is_one_clear_line(api_config, value):
    result = run_cli({**api_config, "max_parallel_streams": value}, timeout=120)
    assert result.returncode != 0
    assert "max_parallel_streams" in result.stderr
    assert "Traceback" not in result.stderr
