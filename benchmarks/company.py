"""The "company" scenario: a first sync that does not fit in one day's API budget.

The sandbox plays a company shaped like the cost model (``pipedrive_sandbox.company``), on a
plan with a daily token budget. The tap runs once a day with every stream selected and
default settings, and each run starts from the last STATE the previous one wrote, whatever
its exit code (Meltano keeps the state of a failed run and resumes from it). Between runs
the sandbox starts a new day: a fresh budget, the clock a day later. The days go on until
every record of a clean sync (same data, no budget, no burst limit) has been delivered, or
``max_days`` have passed.

Per day: tokens (the sandbox's own count), share of the day's budget, 429 answers (daily
budget and burst), exit code and wall time. Then the total, and the comparison with the
clean sync by primary key: records lost (in the clean sync, delivered on no day) must be 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipedrive_sandbox.company import DEFAULT_PLAN, DEFAULT_SEATS, DEFAULT_SIZE, company_preset

TOKEN = "sandbox-api-token"
REPO = Path(__file__).resolve().parent.parent
# Query parameters that make a list call one parent's (or a batch of parents') children.
PARENT_FILTERS = ("org_id", "deal_id", "deal_ids", "person_id", "product_id")


class Printer(Protocol):
    def print(self, text: str = "") -> None: ...

    def table(self, header: list[str], rows: list[list[str]]) -> None: ...


@dataclass
class Delivery:
    """What one tap run wrote: records per stream, their primary keys, the last STATE."""

    records: int = 0
    keys: set[tuple[str, str]] = field(default_factory=set)
    state: Any = None


@dataclass
class Day:
    number: int
    tokens: int
    budget: int | None
    daily_429s: int
    burst_429s: int
    exit_code: int
    wall: float
    records: int
    requests: int
    new_keys: int
    streams_complete: int
    streams: int

    @property
    def share(self) -> float | None:
        return self.tokens / self.budget if self.budget else None


@dataclass
class CompanyResult:
    size: float
    seats: int
    plan: str
    budget: int | None
    days: list[Day]
    clean_tokens: int
    clean_requests: int
    clean_keys: set[tuple[str, str]]
    delivered: set[tuple[str, str]]
    clean_endpoint_tokens: dict[str, int]
    clean_per_parent_tokens: int

    @property
    def lost(self) -> int:
        return len(self.clean_keys - self.delivered)

    @property
    def extra(self) -> int:
        return len(self.delivered - self.clean_keys)

    @property
    def complete(self) -> bool:
        return self.lost == 0

    @property
    def total_tokens(self) -> int:
        return sum(day.tokens for day in self.days)


class CompanySandbox:
    """``python -m pipedrive_sandbox --company-size ...`` in its own process."""

    def __init__(self, arguments: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipedrive_sandbox", "--port", "0", "--seed", "1", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise SystemExit(f"the sandbox did not start: {' '.join(arguments)}")

    def control(self, method: str, name: str) -> Any:
        request = urllib.request.Request(f"{self.url}/_sandbox/{name}", method=method)
        with urllib.request.urlopen(request, timeout=600) as answer:  # loopback only
            return json.loads(answer.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _messages(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as lines:
        for line in lines:
            if line.startswith(b"{"):
                yield json.loads(line)


def read_delivery(path: Path) -> Delivery:
    """Records, primary keys (stream, key) and the last STATE of a tap's stdout."""
    delivery = Delivery()
    key_properties: dict[str, list[str]] = {}
    for message in _messages(path):
        kind = message.get("type")
        if kind == "SCHEMA":
            key_properties[message["stream"]] = list(message.get("key_properties") or [])
        elif kind == "RECORD":
            stream, record = message["stream"], message["record"]
            names = key_properties.get(stream) or []
            key = [record.get(name) for name in names] if names else record
            delivery.keys.add((stream, json.dumps(key, sort_keys=True, default=str)))
            delivery.records += 1
        elif kind == "STATE":
            delivery.state = message.get("value")
    return delivery


def run_tap(
    workdir: Path,
    label: str,
    api_url: str,
    state: Any,
    env: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> tuple[int, float, Path]:
    """One run of the tap, every stream selected, default settings unless ``settings`` says
    otherwise; (exit code, wall seconds, stdout file)."""
    config = workdir / f"{label}.config.json"
    config.write_text(json.dumps({**(settings or {}), "api_token": TOKEN, "api_url": api_url}))
    command = [sys.executable, "-m", "tap_pipedrive", "--config", str(config)]
    if state is not None:
        state_file = workdir / f"{label}.state.json"
        state_file.write_text(json.dumps(state))
        command += ["--state", str(state_file)]
    output = workdir / f"{label}.out.jsonl"
    started = time.perf_counter()
    with output.open("wb") as stdout, (workdir / f"{label}.err.log").open("wb") as stderr:
        done = subprocess.run(command, stdout=stdout, stderr=stderr, env=env, cwd=workdir)
    return done.returncode, time.perf_counter() - started, output


def _tokens_by_endpoint(requests_made: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    by_endpoint: dict[str, int] = {}
    per_parent = 0
    for request in requests_made:
        cost = int(request.get("token_cost") or 0)
        endpoint = request.get("endpoint") or request["path"]
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + cost
        query = request.get("query") or {}
        if "{id}" in endpoint or any(name in query for name in PARENT_FILTERS):
            per_parent += cost
    return by_endpoint, per_parent


def run_company(
    workdir: Path,
    size: float = DEFAULT_SIZE,
    seats: int = DEFAULT_SEATS,
    plan: str = DEFAULT_PLAN,
    daily_budget: int | None = None,
    latency_ms: float = 0.0,
    max_days: int = 10,
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompanyResult:
    """The clean sync, then one run a day until every one of its records was delivered."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(env if env is not None else os.environ)
    preset = company_preset(size, seats, plan)
    shape = ["--company-size", str(size), "--seats", str(seats)]
    clean = CompanySandbox([*shape, "--plan", "none", "--burst-limit", "0"], env)
    try:
        code, _, output = run_tap(workdir, "clean", clean.url, None, env, settings)
        if code != 0:
            raise SystemExit(f"the clean sync failed (exit {code}); see {workdir}/clean.err.log")
        clean_keys = read_delivery(output).keys
        requests_made = clean.control("GET", "requests")
        clean_tokens = int(clean.control("GET", "stats")["tokens_spent"])
    finally:
        clean.stop()
    by_endpoint, per_parent = _tokens_by_endpoint(requests_made)
    clean_streams = {stream for stream, _ in clean_keys}
    arguments = [*shape, "--plan", preset.plan, "--latency-ms", str(latency_ms)]
    if daily_budget is not None:
        arguments += ["--daily-budget", str(daily_budget)]
    company = CompanySandbox(arguments, env)
    days: list[Day] = []
    delivered: set[tuple[str, str]] = set()
    state: Any = None
    try:
        budget = company.control("GET", "stats")["daily_budget"]
        for number in range(1, max_days + 1):
            if number > 1:
                company.control("POST", "new_day")
            before = company.control("GET", "stats")
            code, wall, output = run_tap(workdir, f"day{number}", company.url, state, env, settings)
            after = company.control("GET", "stats")
            delivery = read_delivery(output)
            if delivery.state is not None:
                state = delivery.state
            new_keys = len(delivery.keys - delivered)
            delivered |= delivery.keys
            missing_streams = {stream for stream, _ in clean_keys - delivered}
            daily_429s = after["daily_budget_429s"] - before["daily_budget_429s"]
            day = Day(
                number=number,
                tokens=int(after["daily_tokens_spent"]),
                budget=budget,
                daily_429s=daily_429s,
                burst_429s=after["rate_limited"] - before["rate_limited"] - daily_429s,
                exit_code=code,
                wall=wall,
                records=delivery.records,
                requests=after["requests"] - before["requests"],
                new_keys=new_keys,
                streams_complete=len(clean_streams - missing_streams),
                streams=len(clean_streams),
            )
            days.append(day)
            if progress is not None:
                progress(
                    f"(day {number}: {day.tokens:,} tokens, exit {code}, {wall:.0f} s, "
                    f"{len(clean_keys - delivered):,} records still to come)"
                )
            if not clean_keys - delivered:
                break
    finally:
        company.stop()
    return CompanyResult(
        size=size,
        seats=seats,
        plan=preset.plan,
        budget=budget,
        days=days,
        clean_tokens=clean_tokens,
        clean_requests=len(requests_made),
        clean_keys=clean_keys,
        delivered=delivered,
        clean_endpoint_tokens=by_endpoint,
        clean_per_parent_tokens=per_parent,
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def report(results: Printer, result: CompanyResult) -> None:
    counts = company_preset(result.size, result.seats, result.plan).counts
    results.print(
        f"Company: {', '.join(f'{count:,} {name}' for name, count in counts.items())}; "
        f"{result.seats} seats on {result.plan}, "
        + (f"{result.budget:,} tokens a day." if result.budget else "no daily budget.")
    )
    results.print()
    rows = []
    for day in result.days:
        rows.append(
            [
                str(day.number),
                f"{day.tokens:,}",
                _share(day.share),
                str(day.daily_429s),
                str(day.burst_429s),
                str(day.exit_code),
                f"{day.wall:.0f}",
                f"{day.records:,}",
                f"{day.new_keys:,}",
                f"{day.streams_complete}/{day.streams}",
            ]
        )
    total_wall = sum(day.wall for day in result.days)
    rows.append(
        [
            "total",
            f"{result.total_tokens:,}",
            _share(result.total_tokens / result.budget if result.budget else None),
            str(sum(day.daily_429s for day in result.days)),
            str(sum(day.burst_429s for day in result.days)),
            "",
            f"{total_wall:.0f}",
            f"{sum(day.records for day in result.days):,}",
            f"{len(result.delivered):,}",
            "",
        ]
    )
    results.table(
        [
            "day",
            "tokens",
            "share of budget",
            "daily-budget 429s",
            "burst 429s",
            "exit code",
            "wall s",
            "records written",
            "new records",
            "streams complete",
        ],
        rows,
    )
    results.print()
    results.print(
        "Tokens are the sandbox's count of the day; new records are those no earlier day "
        "delivered; streams complete counts the streams with records in the clean sync whose "
        "records have all been delivered by the end of the day."
    )
    results.print(
        f"Clean sync (no budget, no burst limit): {result.clean_tokens:,} tokens in "
        f"{result.clean_requests:,} calls, {len(result.clean_keys):,} records; "
        f"{result.clean_per_parent_tokens / max(1, result.clean_tokens):.0%} of the tokens on "
        "per-parent calls."
    )
    top = sorted(result.clean_endpoint_tokens.items(), key=lambda item: -item[1])[:6]
    results.print(
        "Largest: "
        + ", ".join(
            f"{endpoint} {tokens / max(1, result.clean_tokens):.0%}" for endpoint, tokens in top
        )
        + "."
    )
    results.print(
        f"Days' union vs the clean sync by primary key: {len(result.delivered):,} delivered, "
        f"{result.lost:,} lost, {result.extra:,} not in the clean sync. "
        + (
            f"The first sync took {len(result.days)} day(s), "
            f"{result.total_tokens / max(1, result.clean_tokens):.2f}x the clean sync's tokens."
            if result.complete
            else f"Not complete after {len(result.days)} day(s)."
        )
    )
    results.print()


def company_section(
    results: Printer,
    size: float,
    seats: int,
    plan: str,
    daily_budget: int | None,
    latency_ms: float,
    max_days: int,
    workdir: Path,
    env: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> CompanyResult:
    results.print(
        "## Company: a first sync over several days' budgets "
        f"(every stream, {'settings ' + json.dumps(settings) if settings else 'default settings'}"
        f", {latency_ms:g} ms per answer)"
    )
    results.print()
    result = run_company(
        workdir,
        size=size,
        seats=seats,
        plan=plan,
        daily_budget=daily_budget,
        latency_ms=latency_ms,
        max_days=max_days,
        env=env,
        settings=settings,
        progress=lambda line: print(line, flush=True),
    )
    report(results, result)
    return result
