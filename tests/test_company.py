"""The sandbox's company preset: counts shaped like the cost model, plans, seats, the daily budget."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from pipedrive_sandbox import Sandbox
from pipedrive_sandbox.company import MODEL_COUNTS, PLANS, company_preset

TOKEN_HEADERS = {"x-api-token": "sandbox-api-token"}


def _access_token(sb: Sandbox) -> str:
    answer = requests.post(
        sb.url + "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": sb.issue_refresh_token()},
        auth=(sb.client_id, sb.client_secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_default_preset_is_the_scaled_down_company():
    preset = company_preset()
    assert preset.counts == {
        "deals": 400,
        "persons": 800,
        "organizations": 160,
        "activities": 2400,
        "notes": 400,
    }
    assert (preset.plan, preset.seats, preset.daily_budget) == ("lite", 2, 60_000)
    with Sandbox.for_company(preset, seed=1) as sb:
        counts = sb.expected_counts(["deals", "persons", "notes", "users"])
        tables = sb.world.tables
        assert [len(tables[name]) for name in MODEL_COUNTS] == [400, 800, 160, 2400, 400]
        # Deals are listed with their deleted ones; notes have none; a few persons are deleted.
        assert counts["deals"] == 400 and counts["notes"] == 400
        assert 0 < 800 - counts["persons"] < 40
        users = sb.dataset["users"]
        assert sum(1 for user in users if user["active_flag"]) == 2
        assert counts["users"] == 3  # one deactivated user is listed too
        assert sb.stats()["daily_budget"] == 60_000


def test_preset_scales_and_the_model_itself_is_a_professional_company():
    tiny = company_preset(0.0005)
    assert tiny.counts == {
        "deals": 25,
        "persons": 50,
        "organizations": 10,
        "activities": 150,
        "notes": 25,
    }
    model = company_preset(1.0, seats=20, plan="professional")
    assert model.counts == MODEL_COUNTS
    assert model.daily_budget == 1_800_000
    with pytest.raises(ValueError, match="plan"):
        company_preset(plan="gold")
    with pytest.raises(ValueError, match="size"):
        company_preset(0)


@pytest.mark.parametrize(
    ("plan", "api_token", "oauth", "per_seat"),
    [
        ("lite", 20, 80, 30_000),
        ("growth", 40, 160, 60_000),
        ("premium", 100, 400, 150_000),
        ("ultimate", 120, 480, 210_000),
        ("professional", 100, 400, 90_000),
    ],
)
def test_rate_limit_header_shows_the_plan_and_the_kind_of_token(plan, api_token, oauth, per_seat):
    assert PLANS[plan].tokens_per_seat == per_seat
    with Sandbox(seed=1, scale=0.02, plan=plan, seats=3) as sb, requests.Session() as http:
        assert sb.daily_budget == per_seat * 3
        by_token = http.get(sb.url + "/api/v2/pipelines", headers=TOKEN_HEADERS, timeout=10)
        assert by_token.headers["x-ratelimit-limit"] == str(api_token)
        bearer = {"Authorization": "Bearer " + _access_token(sb)}
        by_oauth = http.get(sb.url + "/api/v2/pipelines", headers=bearer, timeout=10)
        assert by_oauth.headers["x-ratelimit-limit"] == str(oauth)


def test_plan_burst_limit_applies_per_kind_of_token():
    with (
        Sandbox(seed=1, scale=0.02, plan="lite", burst_window=30) as sb,
        requests.Session() as http,
    ):
        codes = [
            http.get(sb.url + "/api/v2/pipelines", headers=TOKEN_HEADERS, timeout=10).status_code
            for _ in range(21)
        ]
        assert codes == [200] * 20 + [429]
        # OAuth traffic has its own, larger window.
        bearer = {"Authorization": "Bearer " + _access_token(sb)}
        assert http.get(sb.url + "/api/v2/pipelines", headers=bearer, timeout=10).status_code == 200
        assert sb.stats()["daily_budget_429s"] == 0


def test_spent_budget_answers_like_pipedrive_until_a_new_day():
    # 2 seats on Lite, but a budget small enough to spend in a few calls.
    preset = company_preset(0.0005)
    with Sandbox.for_company(preset, seed=1, daily_budget=35) as sb, requests.Session() as http:
        http.headers.update(TOKEN_HEADERS)
        codes = [
            http.get(sb.url + "/api/v2/deals", timeout=10).status_code for _ in range(3)
        ]  # 10 tokens each
        assert codes == [200, 200, 200]
        refused = http.get(sb.url + "/v1/users", timeout=10)  # 20 tokens: over the budget
        assert refused.status_code == 429
        assert refused.json() == {
            "success": False,
            "error": "Daily API token budget exceeded",
            "errorCode": 429,
        }
        # Room in the burst window: that is how a daily-budget 429 differs from a burst one.
        assert int(refused.headers["x-ratelimit-remaining"]) > 0
        assert refused.headers["x-ratelimit-limit"] == "20"
        assert http.get(sb.url + "/api/v2/stages", timeout=10).status_code == 200  # 5 tokens fit
        assert http.get(sb.url + "/api/v2/stages", timeout=10).status_code == 429
        stats = sb.stats()
        assert (stats["daily_tokens_spent"], stats["daily_budget_429s"], stats["day"]) == (35, 2, 1)
        before = sb.now()
        day = http.post(sb.url + "/_sandbox/new_day", timeout=10).json()
        assert day["day"] == 2 and day["daily_budget"] == 35
        assert (sb.now() - before).total_seconds() >= 86400
        assert http.get(sb.url + "/v1/users", timeout=10).status_code == 200
        stats = sb.stats()
        assert (stats["daily_tokens_spent"], stats["tokens_spent"]) == (20, 55)


def test_cli_serves_the_company_preset():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipedrive_sandbox",
            "--company-size",
            "0.0005",
            "--seats",
            "4",
            "--plan",
            "growth",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        with requests.Session() as http:
            stats = http.get(url + "/_sandbox/stats", timeout=10).json()
            assert (stats["plan"], stats["seats"], stats["daily_budget"]) == ("Growth", 4, 240_000)
            counts = http.get(url + "/_sandbox/counts?streams=deals,users", timeout=10).json()
            assert counts == {"deals": 25, "users": 5}
            answer = http.get(url + "/api/v2/pipelines", headers=TOKEN_HEADERS, timeout=10)
            assert answer.headers["x-ratelimit-limit"] == "40"
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_quick_company_scenario_loses_nothing_across_days(tmp_path):
    """``python -m benchmarks --sections company --quick``: a tiny company whose first sync
    needs more than one day's budget, run day after day with the state carried over."""
    from benchmarks.__main__ import (
        QUICK_COMPANY_BUDGET,
        QUICK_COMPANY_PLAN,
        QUICK_COMPANY_SIZE,
    )
    from benchmarks.company import run_company

    result = run_company(
        tmp_path,
        size=QUICK_COMPANY_SIZE,
        plan=QUICK_COMPANY_PLAN,
        daily_budget=QUICK_COMPANY_BUDGET,
        max_days=6,
    )
    assert result.budget == QUICK_COMPANY_BUDGET
    # The clean sync costs more than a day: one day cannot have delivered everything.
    assert result.clean_tokens > QUICK_COMPANY_BUDGET
    assert len(result.days) >= 2
    assert result.days[0].new_keys < len(result.clean_keys)
    assert all(0 < day.tokens <= QUICK_COMPANY_BUDGET for day in result.days)
    # Every record of the clean sync was delivered on some day, and nothing else.
    assert result.complete and result.lost == 0 and result.extra == 0
    assert sum(day.new_keys for day in result.days) == len(result.clean_keys)
    assert result.days[-1].exit_code == 0
    last = result.days[-1]
    assert last.streams_complete == last.streams > result.days[0].streams_complete
