"""Pages are fetched one request ahead: the next page is in flight while this one is written.

Assertions are about behaviour seen by the sandbox (which requests arrived, and when in
the stream's processing), never about absolute durations.
"""

from __future__ import annotations

import gc
import math
import threading
import time

import pytest
import requests

from pipedrive_sandbox import Sandbox
from tap_pipedrive.errors import DailyBudgetExhausted
from tap_pipedrive.http import fetch_ahead as prefetch
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import sync_capturing
from tests.support.waiting import wait_until

PAGE_SIZE = 50


@pytest.fixture
def sandbox():
    """Enough deals for several pages at PAGE_SIZE, whatever the suite's default scale."""
    with Sandbox(seed=1, scale=0.2, burst_limit=None) as sb:
        yield sb


def _list_requests(sandbox, path: str) -> list:
    return [r for r in list(sandbox.requests) if r.path == path]


def _split_deals(sandbox) -> tuple[int, int]:
    deals = sandbox.dataset["deals"]
    archived = sum(1 for deal in deals if deal.get("is_archived"))
    return len(deals) - archived, archived


@pytest.fixture
def config(api_config) -> dict:
    return {**api_config, "page_size": PAGE_SIZE}


def test_next_page_is_requested_while_the_current_page_is_processed(sandbox, config):
    active, archived = _split_deals(sandbox)
    assert active > 3 * PAGE_SIZE
    sandbox.clear_requests()
    seen_ahead: list[bool] = []
    in_flight_at_start: list[int] = []

    def hook(tap):
        stream = tap.streams["deals"]
        original = stream.post_process
        processed = {"count": 0}
        active_partition = stream.partitions[0]

        def post_process(row, context=None):
            if context == active_partition:
                index = processed["count"]
                processed["count"] += 1
                page = index // PAGE_SIZE + 1
                if index % PAGE_SIZE == 0 and page < math.ceil(active / PAGE_SIZE):
                    # First row of page N: page N+1 must arrive while we are still here.
                    ahead = wait_until(
                        lambda: len(_list_requests(sandbox, "/api/v2/deals")) >= page + 1
                    )
                    seen_ahead.append(ahead)
                    # ...but not page N+2: one page ahead bounds the memory in use.
                    time.sleep(0.05)
                    in_flight_at_start.append(len(_list_requests(sandbox, "/api/v2/deals")) - page)
            return original(row, context)

        stream.post_process = post_process

    _, messages, error = sync_capturing(config, streams={"deals"}, hook=hook)
    assert error is None
    assert seen_ahead and all(seen_ahead)
    assert max(in_flight_at_start) == 1
    records = [m for m in messages if m["type"] == "RECORD"]
    assert len(records) == active + archived
    assert len({r["record"]["id"] for r in records}) == active + archived


def test_prefetching_makes_no_extra_calls(sandbox, config):
    active, archived = _split_deals(sandbox)
    sandbox.clear_requests()
    _, messages, error = sync_capturing(config, streams={"deals"})
    assert error is None
    assert len(_list_requests(sandbox, "/api/v2/deals")) == math.ceil(active / PAGE_SIZE)
    assert len(_list_requests(sandbox, "/api/v2/deals/archived")) == math.ceil(archived / PAGE_SIZE)
    assert sum(1 for m in messages if m["type"] == "RECORD") == active + archived


def test_a_failed_prefetch_surfaces_after_the_pages_before_it(sandbox, config):
    """Records of pages 1-2 are written and their bookmark kept; page 3 fails the run."""
    sandbox.faults.add("daily_429", path=r"^/api/v2/deals$", after=2, count=None)
    _, messages, error = sync_capturing({**config, "max_parallel_streams": 1}, streams={"deals"})
    assert isinstance(error, DailyBudgetExhausted)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(records) == 2 * PAGE_SIZE
    last_state = next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
    partitions = last_state["bookmarks"]["deals"]["partitions"]
    active_partition = TapPipedrive(config=config).streams["deals"].partitions[0]
    active = next(p for p in partitions if p["context"] == active_partition)
    assert active["replication_key_value"] == max(r["update_time"] for r in records)


def test_a_stream_stopped_early_cancels_its_prefetch(sandbox, config):
    """Stopping a stream early (here: an error while writing) leaves no thread fetching."""

    def hook(tap):
        stream = tap.streams["deals"]

        def post_process(row, context=None):
            raise RuntimeError("downstream failure")

        stream.post_process = post_process

    sandbox.clear_requests()
    _, _, error = sync_capturing(
        {**config, "max_parallel_streams": 1}, streams={"deals"}, hook=hook
    )
    assert isinstance(error, RuntimeError)
    # Dropping the traceback closes the abandoned record generator, as a real run's exit does.
    error.__traceback__ = None
    del error
    gc.collect()
    # The page in hand plus at most the one fetched ahead; nothing after that.
    time.sleep(0.3)
    settled = len(sandbox.requests)
    time.sleep(0.3)
    assert len(sandbox.requests) == settled
    assert len(_list_requests(sandbox, "/api/v2/deals")) <= 1 + prefetch.PAGES_AHEAD
    assert wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("fetch-")], 2.0
    )


def test_pages_are_freed_as_soon_as_they_are_written(sandbox, config):
    """Memory stays flat: a written page is released at once, not at the next GC pass."""
    live_pages: list[int] = []

    def hook(tap):
        stream = tap.streams["deals"]
        original = stream.post_process
        seen = {"count": 0}

        def post_process(row, context=None):
            if seen["count"] % PAGE_SIZE == 0:
                live_pages.append(
                    sum(1 for o in gc.get_objects() if isinstance(o, requests.Response))
                )
            seen["count"] += 1
            return original(row, context)

        stream.post_process = post_process

    gc.collect()
    gc.disable()
    try:
        _, _, error = sync_capturing(
            {**config, "max_parallel_streams": 1}, streams={"deals"}, hook=hook
        )
    finally:
        gc.enable()
    assert error is None
    assert len(live_pages) > 4
    # The page being written and the one fetched ahead; nothing piling up.
    assert max(live_pages) <= 1 + prefetch.PAGES_AHEAD + 1
