"""The company's daily API token budget: what each request costs, and where a run stops.

Pipedrive bills every API call against one daily token budget for the whole company
(30,000 tokens x plan multiplier x seats); when it is spent, every integration of the
company gets 429 until the reset. The tap therefore:

- counts each answered request at its endpoint's ``x-token-cost`` (schemas/_endpoints.json);
  a refused request (429, 4xx, 5xx) is not served and not billed, so it costs nothing;
- estimates the daily budget from what the API tells: the burst limit in
  ``x-ratelimit-limit`` reveals the plan tier (it differs for API-token and OAuth traffic),
  and the seats are the company's active users; ``daily_token_budget`` overrides it;
- spends at most ``max_budget_share`` of it per day (default 0.4: at least 60 % stays with
  the company's other integrations, with room for the last checkpoint's requests and
  purchased top-ups the estimate cannot see), and at most ``max_tokens_per_run`` per run;
- remembers in the state what it spent today (the UTC day of the server's Date header, or
  of the local clock without one), so several runs a day share one allowance. No header
  tells what the company's other integrations spent.

At the cap a run finishes what it has in hand up to the next STATE message, then stops
with exit code 0 (``BudgetReached``); the next run resumes from that state.
"""

from __future__ import annotations

import math
import threading
import typing as t
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tap_pipedrive.endpoints import facts_for_url
from tap_pipedrive.errors import PipedriveError

TOKENS_PER_SEAT = 30_000
DEFAULT_MAX_BUDGET_SHARE = 0.4
# Burst limit per 2-second window -> the plan's budget multiplier (PIPEDRIVE_API.md §7:
# Lite 1, Growth 2, Premium 5, Ultimate 7). OAuth apps get four times the API-token limit.
API_TOKEN_TIERS = ((20, 1, "Lite"), (40, 2, "Growth"), (100, 5, "Premium"), (120, 7, "Ultimate"))
OAUTH_TIERS = ((80, 1, "Lite"), (160, 2, "Growth"), (400, 5, "Premium"), (480, 7, "Ultimate"))
# What a list call costs where the specs name no cost for the path (§7: v1 lists 20, v2 10).
DEFAULT_COST = {"v1": 20, "v2": 10}
STATE_KEY = "budget"


def request_cost(url: str, status_code: int) -> int:
    """Tokens Pipedrive bills for one answered request (0 for a refused one)."""
    if not 200 <= status_code < 300:
        return 0
    return endpoint_cost(url)


def endpoint_cost(url: str) -> int:
    facts = facts_for_url(url)
    cost = (facts or {}).get("token_cost")
    if isinstance(cost, int) and cost >= 0:
        return cost
    return DEFAULT_COST["v1" if "/v1/" in url else "v2"]


def plan_tier(burst_limit: float, *, oauth: bool) -> tuple[int, str]:
    """(budget multiplier, plan name) of the highest plan whose burst limit is reached.

    A limit between two plans (a legacy plan, a proxy) counts as the lower plan: the
    estimate errs on the side of spending less.
    """
    tiers = OAUTH_TIERS if oauth else API_TOKEN_TIERS
    found = tiers[0]
    for tier in tiers:
        if burst_limit >= tier[0]:
            found = tier
    return found[1], found[2]


class BudgetReached(PipedriveError):
    """This run's share of the daily budget is spent: stop cleanly, the next run resumes."""

    exit_code = 0


def today() -> str:
    return datetime.now(UTC).date().isoformat()


class Budget:
    """Tokens spent by this run, the daily budget and the run's cap; shared by all threads."""

    def __init__(
        self,
        *,
        oauth: bool,
        daily_token_budget: int | None = None,
        max_budget_share: float = DEFAULT_MAX_BUDGET_SHARE,
        max_tokens_per_run: int | None = None,
        spent_earlier_today: int = 0,
        day: str | None = None,
    ) -> None:
        self.oauth = oauth
        self.daily_override = daily_token_budget
        self.max_share = max_budget_share
        self.max_tokens_per_run = max_tokens_per_run
        self._earlier: tuple[str, int] | None = (
            (day or today(), spent_earlier_today) if spent_earlier_today else None
        )
        self.day = day or today()
        # Set once the server's clock is known (its Date header): the day follows the
        # server, and a test server can move it on.
        self._day_from_server = day is not None
        self.spent = 0
        self.calls = 0
        # Tokens of the pages written so far (main thread): what the STATE messages carry.
        # Unlike ``spent`` it does not depend on how far threads fetched ahead, so the
        # state is the same however many streams fetch in parallel.
        self.written = 0
        self.burst_limit: float | None = None
        self.seats: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, config: t.Mapping[str, t.Any], *, oauth: bool) -> Budget:
        share = config.get("max_budget_share")
        return cls(
            oauth=oauth,
            daily_token_budget=config.get("daily_token_budget") or None,
            max_budget_share=DEFAULT_MAX_BUDGET_SHARE if share is None else float(share),
            max_tokens_per_run=config.get("max_tokens_per_run") or None,
        )

    def resume(self, state: t.Mapping[str, t.Any]) -> None:
        """Take over what earlier runs spent (kept in the state); counts on their day only."""
        earlier = state.get(STATE_KEY)
        if isinstance(earlier, dict) and isinstance(earlier.get("day"), str):
            value = earlier.get("tokens")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                self._earlier = (earlier["day"], value)

    @property
    def spent_earlier_today(self) -> int:
        earlier = self._earlier
        return earlier[1] if earlier is not None and earlier[0] == self.day else 0

    def observe_date(self, value: str | None) -> None:
        """The server's clock (a response's Date header) sets the day, once per run."""
        if self._day_from_server or not value:
            return
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        if moment.tzinfo is None:
            return
        self.day = moment.astimezone(UTC).date().isoformat()
        self._day_from_server = True

    # --- what the API tells ----------------------------------------------------------------
    def charge(self, tokens: int) -> None:
        with self._lock:
            self.spent += tokens
            self.calls += 1

    def page_written(self, tokens: int) -> None:
        self.written += tokens

    def observe_limit(self, limit: float | None) -> None:
        if limit is not None and limit >= 1:
            self.burst_limit = limit

    def set_seats(self, seats: int) -> None:
        """The active users; none counted (users not readable) counts as one seat."""
        self.seats = max(1, seats)

    # --- the numbers -----------------------------------------------------------------------
    @property
    def daily(self) -> int | None:
        """The company's daily budget: the setting, else the estimate (None: not known yet)."""
        if self.daily_override:
            return int(self.daily_override)
        if self.burst_limit is None or self.seats is None:
            return None
        multiplier, _ = plan_tier(self.burst_limit, oauth=self.oauth)
        return TOKENS_PER_SEAT * multiplier * self.seats

    def describe_daily(self) -> str:
        if self.daily_override:
            return f"{self.daily:,} tokens a day (daily_token_budget)"
        if self.daily is None:
            return "unknown daily budget"
        _, plan = plan_tier(t.cast("float", self.burst_limit), oauth=self.oauth)
        return (
            f"{self.daily:,} tokens a day (estimated: {plan} plan from x-ratelimit-limit "
            f"{self.burst_limit:g}, {self.seats} active users)"
        )

    @property
    def cap(self) -> int | None:
        """The most this run may spend (None: no limit known yet)."""
        caps = []
        if self.max_tokens_per_run:
            caps.append(int(self.max_tokens_per_run))
        daily = self.daily
        if daily is not None:
            caps.append(max(0, math.floor(daily * self.max_share) - self.spent_earlier_today))
        return min(caps) if caps else None

    def fits(self, tokens: int) -> bool:
        """Whether ``tokens`` more can be spent by this run."""
        cap = self.cap
        return cap is None or self.spent + tokens <= cap

    @property
    def spent_today(self) -> int:
        return self.spent_earlier_today + self.spent

    def state_entry(self) -> dict[str, t.Any]:
        return {"day": self.day, "tokens": self.spent_earlier_today + self.written}

    def summary_lines(self) -> list[str]:
        """What the run's spend means for the company's day (after the summary table)."""
        daily = self.daily
        if daily is None:
            return [f"Tokens: {self.spent:,} this run; the daily budget is not known"]
        cap = self.cap
        line = (
            f"Tokens: {self.spent:,} this run = {self.spent / daily:.1%} of the "
            f"{self.describe_daily()}; {self.spent_today:,} today "
            f"({self.spent_today / daily:.1%})"
        )
        if cap is not None:
            line += f"; this run's cap {cap:,}"
        return [line]
