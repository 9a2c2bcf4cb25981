"""Pacing: no 429 from the burst window, and a clean stop when the daily budget is spent."""

from __future__ import annotations

import json

import pytest
import requests

from pipedrive_sandbox import Sandbox
from tap_pipedrive.http import pacer as ratelimit
from tap_pipedrive.http.pacer import ASSUMED_LIMIT, RESERVE, RateLimiter
from tests.support.tap_runner import CORE_STREAM_NAMES, run_cli, run_tap

CORE = set(CORE_STREAM_NAMES)
INCREMENTAL = ("deals", "persons", "organizations", "activities", "products")


@pytest.fixture
def sandbox():
    """Pipedrive's burst window switched on (80 per 2 s, the sandbox default)."""
    with Sandbox(seed=1, scale=0.2) as sb:
        yield sb


class FakeClock:
    """Stands in for the time module: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", fake)
    return fake


def _response(status: int = 200, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update({f"x-ratelimit-{k}": v for k, v in headers.items()})
    return response


def _max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for other in times if start <= other < start + window) for start in times)


def test_requests_stay_inside_the_learned_window(clock):
    limiter = RateLimiter()
    limiter.observe(_response(limit="10", remaining="9", reset="2"))
    sent = []
    for _ in range(60):
        limiter.before_request()
        sent.append(clock.now)
    assert _max_in_window(sent, 2.0) == 10 - RESERVE
    assert limiter.pauses > 0
    assert limiter.requests == 60


def test_the_smallest_documented_limit_holds_until_an_answer_says_more(clock):
    limiter = RateLimiter()
    sent = []
    for _ in range(3 * ASSUMED_LIMIT):
        limiter.before_request()
        sent.append(clock.now)
    assert _max_in_window(sent, 2.0) == ASSUMED_LIMIT - RESERVE
    limiter.observe(_response(limit="80", remaining="70", reset="1"))
    assert limiter.limit == 80


def test_someone_else_using_the_window_pauses_everyone_until_it_resets(clock):
    limiter = RateLimiter()
    limiter.before_request()
    start = clock.now
    limiter.observe(_response(limit="80", remaining="0", reset="2"))
    limiter.before_request()
    assert clock.now - start >= 2.0


def test_own_traffic_down_to_the_reserve_does_not_pause(clock):
    limiter = RateLimiter()
    limiter.observe(_response(limit="80", remaining=str(RESERVE), reset="2"))
    limiter.before_request()
    assert clock.slept == []


def test_consecutive_429s_are_counted_until_a_success(clock):
    limiter = RateLimiter()
    assert limiter.note_429() == 1
    assert limiter.note_429() == 2
    limiter.observe(_response(200, limit="80", remaining="50", reset="1"))
    assert limiter.note_429() == 1


def test_parallel_streams_against_a_tight_burst_limit_get_no_429():
    """A Lite-plan window (20 per 2 s), four streams fetching at once, small pages."""
    with Sandbox(seed=2, scale=0.1, burst_limit=20) as sandbox:
        config = {
            "api_token": sandbox.api_token,
            "api_url": sandbox.url,
            "page_size": 25,
            "max_parallel_streams": 4,
        }
        result = run_tap(config, streams=CORE)
        stats = sandbox.stats()
        assert stats["requests"] > 3 * 20  # enough calls to need pacing
        assert stats["rate_limited"] == 0
        assert result.tap is not None and result.tap.client.pacer.pauses > 0
        counts = sandbox.expected_counts()
        assert {s: result.record_counts().get(s, 0) for s in INCREMENTAL} == {
            s: counts[s] for s in INCREMENTAL
        }


def test_default_settings_get_no_429_from_the_default_window(sandbox, api_config):
    result = run_tap(api_config, streams=CORE)
    assert sandbox.stats()["rate_limited"] == 0
    assert result.record_counts()["deals"] == sandbox.expected_counts()["deals"]


def _ids(result, stream: str) -> set:
    return {record["id"] for record in result.records(stream)}


def test_spent_daily_budget_stops_cleanly_and_the_state_resumes(sandbox, api_config):
    config = {**api_config, "page_size": 50}
    full = run_tap(config, streams=CORE)
    total_tokens = sandbox.stats()["tokens_spent"]
    sandbox.reset_daily_budget()
    sandbox.daily_budget = total_tokens // 2

    first = run_cli(config, streams=CORE)
    assert first.returncode != 0
    assert "Traceback" not in first.stderr
    # One error line about it (the run's INFO summary names the budget too).
    budget_lines = [
        line for line in first.stderr.splitlines() if "budget" in line.lower() and "| ERROR" in line
    ]
    assert len(budget_lines) == 1
    assert "resets" in budget_lines[0]
    assert first.last_state is not None
    assert 0 < sum(first.record_counts().values()) < sum(full.record_counts().values())

    sandbox.reset_daily_budget()
    sandbox.daily_budget = None
    second = run_cli(config, streams=CORE, state=first.last_state)
    assert second.returncode == 0, second.stderr[-2000:]
    for stream in INCREMENTAL:
        # Nothing lost across the stop: the resumed run delivers the rest.
        assert _ids(first, stream) | _ids(second, stream) == _ids(full, stream), stream
    json.dumps(second.last_state)  # a valid state to carry on from


@pytest.mark.parametrize("reset", ["inf", "-inf", "nan", "-5", "1e400", "soon", ""])
def test_a_reset_that_is_no_usable_number_waits_the_window(clock, reset):
    limiter = RateLimiter()
    limiter.observe(_response(limit="80", remaining="0", reset=reset))
    start = clock.now
    limiter.before_request()
    assert clock.now - start == pytest.approx(ratelimit.WINDOW_SECONDS)


@pytest.mark.parametrize("remaining", ["inf", "-inf", "nan", "-1", "1e400"])
def test_a_remaining_count_that_is_no_usable_number_is_ignored(clock, remaining):
    limiter = RateLimiter()
    limiter.observe(_response(limit="80", remaining=remaining, reset="1e9"))
    limiter.before_request()
    assert clock.slept == []


@pytest.mark.parametrize(("limit", "learned"), [("inf", ASSUMED_LIMIT), ("1e12", 1000)])
def test_an_absurd_limit_is_ignored_or_capped(clock, limit, learned):
    # inf raised OverflowError; 1e12 switched pacing off.
    limiter = RateLimiter()
    limiter.observe(_response(limit=limit, remaining="50", reset="2"))
    assert limiter.limit == learned


def test_a_reset_longer_than_the_maximum_ends_the_run_without_waiting(clock):
    limiter = RateLimiter()
    with pytest.raises(ratelimit.RateLimitWaitTooLong, match="x-ratelimit-reset") as raised:
        limiter.observe(_response(limit="80", remaining="0", reset="1e9"))
    assert "1e+09 seconds" in str(raised.value)
    limiter.before_request()
    assert clock.slept == []


def test_a_reset_up_to_the_maximum_is_waited(clock):
    limiter = RateLimiter()
    limiter.observe(_response(limit="80", remaining="0", reset=str(ratelimit.MAX_RESET_SECONDS)))
    start = clock.now
    limiter.before_request()
    assert clock.now - start == pytest.approx(ratelimit.MAX_RESET_SECONDS)


@pytest.mark.parametrize("reset", ["inf", "-5", "nan", "1e400"])
def test_a_429_with_an_unusable_reset_is_retried_after_the_window(reset):
    from tap_pipedrive.streams.base import PipedriveStream
    from tap_pipedrive.tap import TapPipedrive

    tap = TapPipedrive(
        config={"api_token": "abcdefgh", "api_url": "http://127.0.0.1:9"}, setup_mapper=False
    )
    stream = tap.streams["pipelines"]
    assert isinstance(stream, PipedriveStream)
    response = _response(429, limit="80", remaining="0", reset=reset)
    error = type("Throttled", (Exception,), {"response": response})()
    wait = stream.run.client._seconds_before_retry(error, 1)
    assert 2.0 <= wait <= 2.25
