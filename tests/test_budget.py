"""The daily token budget: costs per request, the cap per run, resuming, the sync order."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
import requests

from pipedrive_sandbox import Sandbox
from tap_pipedrive.budget import Budget, plan_tier, request_cost
from tap_pipedrive.streams.bases import ChangedParentsStream
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import discover, run_cli, sync_capturing

# Streams that exercise every kind of read: list streams (v1, v2, incremental, full),
# a batch child stream and per-parent streams at three costs.
STREAMS = {
    "users",
    "deals",
    "persons",
    "pipelines",
    "notes",
    "deal_products",
    "deal_followers",
    "person_flow",
    "note_comments",
}
STOP_LINE = "Token budget for this run reached"


@pytest.fixture(scope="module")
def clean_sync():
    """Records and spend of an unlimited sync of STREAMS (a sandbox of its own)."""
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb:
        # Field history from the flow feeds: the dearest per-parent stream, 40 tokens a parent.
        config = {
            "api_url": sb.url,
            "api_token": sb.api_token,
            "progress_interval_seconds": 0,
            "field_history": "flow",
        }
        # sync_capturing builds one tap for the catalog, then the one that syncs: both read
        # the custom field definitions. The first one's spend is measured here.
        TapPipedrive(config=config, validate_config=False)
        catalog_cost = sb.tokens_spent
        sb.clear_requests()
        tap, messages, error = sync_capturing(config, streams=STREAMS)
        assert error is None
        answered = list(sb.requests)
        return tap, messages, answered, sb.tokens_spent - 2 * catalog_cost


def _keys(messages: list[dict], tap: TapPipedrive) -> dict[str, set]:
    found: dict[str, set] = {}
    for message in messages:
        if message["type"] == "RECORD":
            stream = tap.streams[message["stream"]]
            key = tuple(message["record"].get(name) for name in stream.primary_keys)
            found.setdefault(message["stream"], set()).add(key)
    return found


def test_the_run_counts_what_the_sandbox_bills(clean_sync):
    tap, _, _, tokens_spent = clean_sync
    # Every request of the run, definitions read for the catalog included.
    assert tap.budget.spent == tokens_spent > 0
    summary = tap.progress.summary()
    assert summary[0].split()[-1] == "tokens"
    total = next(line for line in summary if line.startswith("total"))
    assert total.split()[-1] == f"{tokens_spent:,}"
    (share,) = tap.budget.summary_lines()
    daily = tap.budget.daily
    assert daily is not None
    assert share.startswith(f"Tokens: {tokens_spent:,} this run = {tokens_spent / daily:.1%} of")


@pytest.mark.parametrize(
    "stream",
    [
        "deal_followers",
        "person_flow",
        "person_changelog",
        "note_comments",
        "deal_products",
        "deals",
    ],
)
def test_tokens_per_stream_equal_the_sandbox_accounting(stream):
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb:
        config = {
            "api_url": sb.url,
            "api_token": sb.api_token,
            "progress_interval_seconds": 0,
            # person_flow exists only with field history from the flow feeds.
            "field_history": "flow" if stream.endswith("_flow") else "changelog",
        }
        seen = {}

        def note_start(tap: TapPipedrive) -> None:
            seen["before"] = len(sb.requests)

        tap, _, error = sync_capturing(
            {**config, "daily_token_budget": 10**9}, streams={stream}, hook=note_start
        )
        assert error is None
        answered = sb.requests[seen["before"] :]
    # Alone in the run, the stream made every request but the field definitions'.
    billed = sum(r.token_cost for r in answered if not r.path.endswith("Fields"))
    assert tap.progress.stream(stream).tokens == billed > 0


def test_list_streams_are_complete_before_any_per_parent_stream_starts(clean_sync):
    tap, messages, _, _ = clean_sync
    order = [m["stream"] for m in messages if m["type"] == "RECORD"]
    per_parent = {n for n in STREAMS if isinstance(tap.streams[n], ChangedParentsStream)}
    first_child = min(order.index(name) for name in per_parent)
    last_list = max(len(order) - 1 - order[::-1].index(n) for n in STREAMS - per_parent)
    assert last_list < first_child
    # users first (it sizes the budget); the flow at 40 tokens a parent last.
    assert order[0] == "users" and order[-1] == "person_flow"


def test_a_run_stops_at_its_cap_and_the_next_resumes_with_nothing_lost_or_read_twice(
    clean_sync,
):
    tap, clean_messages, clean_requests, clean_tokens = clean_sync
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb:
        config = {
            "api_url": sb.url,
            "api_token": sb.api_token,
            "progress_interval_seconds": 0,
            "field_history": "flow",  # as the clean sync
        }
        cap = clean_tokens // 3
        # run_cli builds a tap for the catalog first: its definitions are not the run's.
        TapPipedrive(config=config, validate_config=False)
        catalog_cost = sb.tokens_spent
        first = run_cli({**config, "max_tokens_per_run": cap}, streams=STREAMS)
        assert first.returncode == 0, first.stderr[-2000:]
        stops = [line for line in first.stderr.splitlines() if STOP_LINE in line]
        assert len(stops) == 1, first.stderr[-3000:]
        assert "next run continues" in stops[0] and "left: " in stops[0]
        first_requests = list(sb.requests)
        first_spent = sb.tokens_spent - 2 * catalog_cost
        # Stopped at the cap: near it, per-parent streams checkpoint after every parent,
        # so at most one request's cost stays unspent and one parent's extra pages (a
        # long changelog) may go over.
        assert cap - 40 < first_spent <= cap + 20
        assert first.last_state is not None
        sb.clear_requests()
        second = run_cli(config, streams=STREAMS, state=first.last_state)
        assert second.returncode == 0, second.stderr[-2000:]
        assert not any(STOP_LINE in line for line in second.stderr.splitlines())
        second_requests = list(sb.requests)
    union = _keys(first.messages, tap)
    for stream, keys in _keys(second.messages, tap).items():
        union.setdefault(stream, set()).update(keys)
    assert union == _keys(clean_messages, tap)

    # Each parent's children were asked for as often as in one clean sync (a long
    # changelog takes two pages): none twice, none skipped.
    def per_parent(answered: list) -> Counter:
        return Counter(r.path for r in answered if re.search(r"/\d+/", r.path))

    assert per_parent(first_requests + second_requests) == per_parent(clean_requests)
    assert per_parent(first_requests) and per_parent(second_requests)
    # The state carries what the tap spent today.
    assert first.last_state["budget"]["tokens"] >= first_spent - 200


def test_the_daily_budget_is_estimated_from_the_burst_limit_and_the_active_users():
    assert plan_tier(20, oauth=False) == (1, "Lite")
    assert plan_tier(100, oauth=False) == (5, "Premium")
    assert plan_tier(160, oauth=True) == (2, "Growth")
    assert plan_tier(50, oauth=False) == (2, "Growth")  # between plans: the lower one
    with Sandbox(seed=3, scale=0.05, burst_limit=40) as sb:
        config = {"api_url": sb.url, "api_token": sb.api_token, "progress_interval_seconds": 0}
        # users is not selected: the tap reads it once for the seats.
        tap, _, error = sync_capturing(config, streams={"pipelines"})
        assert error is None
        listed = requests.get(
            f"{sb.url}/api/v1/users", headers={"x-api-token": sb.api_token}, timeout=10
        ).json()["data"]
    active = [user for user in listed if user.get("active_flag") is True]
    seats = tap.budget.seats
    assert seats == len(active) >= 1
    assert tap.budget.daily == 30_000 * 2 * seats
    # The override wins; the share caps what the run may spend.
    budget = Budget(oauth=False, daily_token_budget=100_000, max_budget_share=0.4)
    assert budget.cap == 40_000
    budget.resume({"budget": {"day": budget.day, "tokens": 15_000}})
    assert budget.cap == 25_000
    other_day = Budget(oauth=False, daily_token_budget=100_000, max_budget_share=0.4)
    other_day.resume({"budget": {"day": "2000-01-01", "tokens": 99_000}})
    assert other_day.cap == 40_000  # another day's spend is not today's


def test_the_day_follows_the_servers_clock():
    budget = Budget(oauth=True, daily_token_budget=100_000, max_budget_share=0.5)
    budget.resume({"budget": {"day": "2026-12-06", "tokens": 30_000}})
    budget.observe_date("Sun, 06 Dec 2026 23:59:00 GMT")
    assert budget.cap == 20_000
    budget.observe_date("Mon, 07 Dec 2026 00:01:00 GMT")  # once per run: the first one holds
    assert budget.cap == 20_000
    next_day = Budget(oauth=True, daily_token_budget=100_000, max_budget_share=0.5)
    next_day.resume({"budget": {"day": "2026-12-06", "tokens": 30_000}})
    next_day.observe_date("Mon, 07 Dec 2026 00:01:00 GMT")
    assert next_day.cap == 50_000
    assert next_day.state_entry() == {"day": "2026-12-07", "tokens": 0}


def test_refused_requests_cost_nothing():
    url = "https://x.pipedrive.com/api/v1/deals/7/flow"
    assert request_cost(url, 200) == 40
    assert request_cost(url, 429) == 0
    assert request_cost("https://x.pipedrive.com/api/v2/deals/archived", 200) == 20


ESTIMATE_COMMAND = "tap-pipedrive --config config.json --estimate"


def test_the_documented_estimate_is_within_ten_percent_of_the_first_sync():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"\n{ESTIMATE_COMMAND}\n" in readme
    args = shlex.split(ESTIMATE_COMMAND)[3:]  # the config file is run_cli's
    # Growth plan (burst limit 40 per API token): 60,000 tokens per active user.
    with Sandbox(seed=3, scale=0.05, burst_limit=40) as sb:
        config = {"api_url": sb.url, "api_token": sb.api_token}
        estimated = run_cli(config, *args)
        estimate_cost = sb.tokens_spent
    assert estimated.returncode == 0, estimated.stderr[-2000:]
    lines = estimated.stdout.splitlines()
    total = next(line for line in lines if line.startswith("total"))
    estimated_tokens = int(total.split()[2].replace(",", ""))
    assert f"This estimate cost {estimate_cost:,} tokens" in estimated.stdout
    assert "Growth plan from x-ratelimit-limit 40" in estimated.stdout
    assert re.search(r"this sync takes 1 run\.", estimated.stdout)
    # A per-parent row: one page of the persons list (10 tokens), then 20 per person.
    changelogs = next(line for line in lines if line.startswith("person_changelog"))
    calls, tokens = (int(word.replace(",", "")) for word in changelogs.split()[1:3])
    assert tokens == 10 + 20 * (calls - 1) and calls > 10
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb:
        config = {"api_url": sb.url, "api_token": sb.api_token, "progress_interval_seconds": 0}
        TapPipedrive(config=config, validate_config=False)
        catalog_cost = sb.tokens_spent
        synced = run_cli(config)
        sync_cost = sb.tokens_spent - catalog_cost
    assert synced.returncode == 0, synced.stderr[-2000:]
    assert abs(estimated_tokens - sync_cost) <= 0.10 * sync_cost, (estimated_tokens, sync_cost)
    # The estimate reads far less than the sync.
    assert estimate_cost < 0.1 * sync_cost


def test_fetching_ahead_plans_the_streams_in_the_sync_order():
    with Sandbox(seed=3, scale=0.05, burst_limit=None) as sb:
        config = {"api_url": sb.url, "api_token": sb.api_token, "max_parallel_streams": 4}
        catalog = discover(config, STREAMS)
        tap = TapPipedrive(config=config, catalog=catalog)
        fetcher = tap.run.fetcher
        fetcher.begin_sync(tap._fetch_plan())
        try:
            planned = list(dict.fromkeys(job.spec.stream for job in fetcher._plan))
        finally:
            fetcher.stop()
    # The list streams fetched ahead, in the sync's order (not the catalog's alphabetical
    # one); users is read when its turn comes, first; per-parent streams are never planned.
    assert planned == ["deals", "persons", "pipelines", "notes"]
    synced = [name for name in tap.streams if name in planned]
    assert synced == planned
