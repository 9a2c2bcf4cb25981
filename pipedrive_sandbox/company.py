"""A company's subscription as the API budget sees it, and a preset shaped like a real company.

Pipedrive bills every API call against one daily token budget per company:
30,000 x the plan's multiplier x seats (legacy plans: a fixed number of tokens per seat),
plus purchased top-ups. The burst limit (requests per rolling 2 s, per token) depends on the
plan too, and is four times higher for OAuth traffic than for API-token traffic; it shows in
every answer's ``x-ratelimit-limit``. Seats are the company's active users.

:func:`company_preset` shapes the sandbox like the mid-size company of the cost model
(50,000 deals, 100,000 persons, 20,000 organizations, 300,000 activities, 50,000 notes,
20 seats on a legacy Professional plan = 1.8 M tokens a day), scaled down by ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    """What a plan means for the API: tokens per seat and day, burst limits per 2 s."""

    name: str
    tokens_per_seat: int
    burst_api_token: int
    burst_oauth: int

    def daily_budget(self, seats: int) -> int:
        return self.tokens_per_seat * seats

    def burst_limit(self, auth_kind: str) -> int:
        """``auth_kind`` is the sandbox's limiter key: "oauth" or "api_token"."""
        return self.burst_oauth if auth_kind == "oauth" else self.burst_api_token


_BASE_TOKENS = 30_000
# Current plans: multipliers 1, 2, 5, 7 and the burst limits of PIPEDRIVE_API.md section 7.
# Legacy plans bill a fixed number of tokens per seat; the documentation gives them no burst
# limits of their own, so each one answers with the limits of the current plan it maps to
# (Essential -> Lite, Advanced -> Growth, Professional and Power -> Premium,
# Enterprise -> Ultimate).
PLANS: dict[str, Plan] = {
    "lite": Plan("Lite", _BASE_TOKENS * 1, 20, 80),
    "growth": Plan("Growth", _BASE_TOKENS * 2, 40, 160),
    "premium": Plan("Premium", _BASE_TOKENS * 5, 100, 400),
    "ultimate": Plan("Ultimate", _BASE_TOKENS * 7, 120, 480),
    "essential": Plan("Essential (legacy)", 30_000, 20, 80),
    "advanced": Plan("Advanced (legacy)", 60_000, 40, 160),
    "professional": Plan("Professional (legacy)", 90_000, 100, 400),
    "power": Plan("Power (legacy)", 150_000, 100, 400),
    "enterprise": Plan("Enterprise (legacy)", 210_000, 120, 480),
}


def plan_named(name: str) -> Plan:
    found = PLANS.get(name.lower())
    if found is None:
        raise ValueError(f"unknown plan {name!r}; choose one of {', '.join(PLANS)}")
    return found


# The cost model's company.
MODEL_COUNTS: dict[str, int] = {
    "deals": 50_000,
    "persons": 100_000,
    "organizations": 20_000,
    "activities": 300_000,
    "notes": 50_000,
}
MODEL_SEATS = 20
MODEL_PLAN = "professional"
# The default scaled-down company: 400 deals, 800 persons, 160 organizations,
# 2,400 activities, 400 notes; 2 seats on the lowest plan = 60,000 tokens a day.
DEFAULT_SIZE = 0.008
DEFAULT_SEATS = 2
DEFAULT_PLAN = "lite"
# Deals of the default sandbox world at scale 1 (data.py); the entities the model does not
# name (products, leads, files, mail threads, projects ...) scale with the deals.
_WORLD_DEALS = 2000


@dataclass(frozen=True)
class CompanyPreset:
    """Sandbox arguments for a company: entity counts, world scale, plan and seats."""

    size: float
    counts: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0
    plan: str = DEFAULT_PLAN
    seats: int = DEFAULT_SEATS

    @property
    def daily_budget(self) -> int:
        return plan_named(self.plan).daily_budget(self.seats)


def company_preset(
    size: float = DEFAULT_SIZE, seats: int = DEFAULT_SEATS, plan: str = DEFAULT_PLAN
) -> CompanyPreset:
    """The model company scaled by ``size`` (1.0 = the model itself), on ``plan`` with ``seats``."""
    if size <= 0:
        raise ValueError(f"company size must be > 0, got {size}")
    if seats < 1:
        raise ValueError(f"seats must be >= 1, got {seats}")
    plan_named(plan)
    counts = {name: max(1, round(count * size)) for name, count in MODEL_COUNTS.items()}
    return CompanyPreset(
        size=size,
        counts=counts,
        scale=counts["deals"] / _WORLD_DEALS,
        plan=plan.lower(),
        seats=seats,
    )
