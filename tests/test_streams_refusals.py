"""A stream Pipedrive refuses (403 scope, 402 plan) is skipped with one warning; the sync goes on.

Run as the CLI, so the exit code and the log lines are what a user sees.
"""

from __future__ import annotations

import pytest

from pipedrive_sandbox import Sandbox
from tests.support.tap_runner import run_cli


@pytest.fixture
def sandbox():
    with Sandbox(seed=5, scale=0.05, burst_limit=None) as sb:
        yield sb


def config_for(sandbox):
    return {"api_token": sandbox.api_token, "api_url": sandbox.url}


def skip_warnings(stderr: str, stream: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"Skipping stream {stream}:" in line]


def test_a_refused_stream_is_skipped_and_the_sync_exits_0(sandbox):
    sandbox.faults.add("http_error", path=r"^/api/v1/webhooks$", status=403, count=None)
    sandbox.faults.add("http_error", path=r"^/api/v1/callLogs$", status=402, count=None)
    result = run_cli(config_for(sandbox), streams={"webhooks", "call_logs", "filters", "goals"})
    assert result.returncode == 0, result.stderr[-2000:]
    expected = sandbox.expected_counts()
    assert len(result.records("filters")) == expected["filters"]
    assert len(result.records("goals")) == expected["goals"]
    assert result.records("webhooks") == []
    assert result.records("call_logs") == []
    (webhooks,) = skip_warnings(result.stderr, "webhooks")
    assert "403" in webhooks and "/api/v1/webhooks" in webhooks
    assert "OAuth scope admin" in webhooks  # named from the spec's security block
    (calls,) = skip_warnings(result.stderr, "call_logs")
    assert "402" in calls and "phone-integration" in calls
    assert "Traceback" not in result.stderr
    assert "sandbox-api-token" not in result.stderr + result.stdout


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_refused_child_stream_stops_after_the_first_refusal(sandbox, parallel):
    path = r"^/api/v1/deals/\d+/changelog$"
    sandbox.faults.add("http_error", path=path, status=403, count=None)
    config = {**config_for(sandbox), "max_parallel_parents": parallel}
    result = run_cli(config, streams={"deal_changelog", "deal_followers"})
    assert result.returncode == 0, result.stderr[-2000:]
    calls = [r for r in sandbox.requests if r.path.endswith("/changelog")]
    # Only the requests already on their way when the first refusal came back.
    assert 1 <= len(calls) <= parallel, "kept asking after the refusal"
    assert len(skip_warnings(result.stderr, "deal_changelog")) == 1
    assert "recents:read" in skip_warnings(result.stderr, "deal_changelog")[0]
    assert result.records("deal_changelog") == []
    followers = result.records("deal_followers")
    assert len(followers) == sandbox.expected_counts()["deal_followers"]


def test_a_refused_parent_list_skips_the_child_stream(sandbox):
    sandbox.faults.add("http_error", path=r"^/api/v2/persons$", status=403, count=None)
    result = run_cli(config_for(sandbox), streams={"person_followers", "product_followers"})
    assert result.returncode == 0, result.stderr[-2000:]
    (warning,) = skip_warnings(result.stderr, "person_followers")
    assert "/api/v2/persons" in warning and "contacts:read" in warning
    assert result.records("person_followers") == []
    assert not [r for r in sandbox.requests if "/followers" in r.path and "/persons/" in r.path]
    assert (
        len(result.records("product_followers")) == sandbox.expected_counts()["product_followers"]
    )
