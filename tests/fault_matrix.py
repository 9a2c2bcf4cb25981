"""The fault matrix: every fault alone, then seeded random mixes, each until every record is in.

Run ``python -m tests.fault_matrix`` (``--seeds N``, ``--workers N``) to print the table
of the closing note: fault, runs, records expected, records delivered, outcome. The tests
in ``tests/test_faults.py`` run the same scenarios and assert on them.

Every scenario gets a fresh sandbox (same data seed, so the same records) and runs the
tap as a scheduler would: a run that fails is rerun from the last STATE it emitted, after
the operator's obvious step (the fault is gone, or a new login for ``invalid_grant``).
"Delivered" counts distinct primary keys over all runs of the scenario that are in the
sandbox's expected set; the table also says when anything unexpected came through.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipedrive_sandbox import Sandbox
from tests.support.delivery import (
    FAST_RETRIES,
    RELIABILITY_STREAMS,
    TapRun,
    TapSession,
    missing,
    unexpected,
)
from tests.support.secrets import SecretLedger, recording_issued_tokens

DATA_SEED = 1
SCALE = 0.1
PAGE_SIZE = 50
DEFAULT_SEEDS = 20
MIX_RATE = 0.08
SLOW_DELAY = 2.5  # seconds; FAST_RETRIES sets request_timeout to 1
DEALS = r"^/api/v2/deals$"
NOTES = r"^/api/v1/notes$"
PERSONS = r"^/api/v2/persons$"
LISTS = r"^/api/v[12]/(deals|persons|activities|notes)$"

FaultSpec = tuple[str, dict[str, Any]]

# Every fault the tap is expected to ride out, for the random mixes.
RETRIABLE_KINDS: tuple[FaultSpec, ...] = (
    ("burst_429", {"reset": 1}),
    ("http_error", {"status": 500}),
    ("http_error", {"status": 502}),
    ("http_error", {"status": 503}),
    ("http_error", {"status": 524}),
    ("reset", {}),
    ("malformed_json", {}),
    ("html_403", {}),
    ("slow", {"delay": SLOW_DELAY}),
)


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: tuple[FaultSpec, ...] = ()
    auth: str = "api_token"
    # The first run is expected to end with one error line (and to be resumed).
    fatal: bool = False
    # Random mixes: the fault kinds and the mix seed come from the seed of the run.
    mix: tuple[FaultSpec, ...] = ()
    token_mix: tuple[FaultSpec, ...] = ()
    # What the retry warnings (retried faults) or the one error line (fatal ones) must say.
    says: str = ""


SINGLE_FAULTS: tuple[Scenario, ...] = (
    Scenario("429 burst, x-ratelimit-reset 1 s (x3)", (("burst_429", dict(path=DEALS, after=1, count=3, reset=1)),), says="429 from Pipedrive"),
    Scenario("429 daily budget exhausted", (("daily_429", dict(path=DEALS, after=2)),), fatal=True, says="daily API token budget is used up"),
    Scenario("500 internal error (x2)", (("http_error", dict(path=LISTS, after=3, count=2, status=500)),), says="500 from Pipedrive"),
    Scenario("502 bad gateway (HTML)", (("http_error", dict(path=LISTS, after=4, status=502)),), says="502 from Pipedrive"),
    Scenario("503 maintenance", (("http_error", dict(path=LISTS, after=5, status=503)),), says="503 from Pipedrive"),
    Scenario("524 Cloudflare timeout (HTML)", (("http_error", dict(path=LISTS, after=6, status=524)),), says="524 from Pipedrive"),
    Scenario("slow response past request_timeout", (("slow", dict(path=LISTS, after=2, delay=SLOW_DELAY)),), says="ReadTimeout"),
    Scenario("connection reset mid-body (x2)", (("reset", dict(path=LISTS, after=3, count=2)),), says="ChunkedEncodingError"),
    Scenario("truncated JSON (x2)", (("malformed_json", dict(path=LISTS, after=2, count=2)),), says="Malformed JSON"),
    Scenario("Cloudflare HTML 403", (("html_403", dict(path=LISTS, after=3)),), says="403 from Pipedrive"),
    Scenario("empty page pointing at itself (v2 + v1)", (("hostile", dict(path=DEALS, after=1, what="empty_page_with_cursor")), ("hostile", dict(path=NOTES, after=1, what="empty_page_with_cursor"))), says="Empty page pointing at itself"),
    Scenario("401 expired access token mid-stream", (("expire_token", dict(path=DEALS, after=2)),), auth="oauth", says="401 from Pipedrive"),
    Scenario("invalid_grant on refresh mid-stream", (("expire_token", dict(path=DEALS, after=2)), ("invalid_grant", dict(path="/oauth/token", after=1))), auth="oauth", fatal=True, says="tap-pipedrive --login"),
    Scenario("500 on every retry (retries exhausted)", (("http_error", dict(path=PERSONS, after=1, count=None, status=500)),), fatal=True, says="Gave up after 6 attempts"),
    Scenario("429 asking to wait 1e9 s", (("burst_429", dict(path=DEALS, after=1, reset="1e9")),), fatal=True, says="x-ratelimit-reset"),
    Scenario("v2 cursor cycle A, B, A", (("envelope", dict(path=PERSONS, after=1, count=None, what="cursor_cycle")),), fatal=True, says="sent a cursor it had sent before"),
    Scenario('v1 more_items_in_collection "true"', (("envelope", dict(path=NOTES, after=1, what="more_as_string")),), fatal=True, says="more_items_in_collection as a string"),
)  # fmt: skip

MIXES: tuple[Scenario, ...] = (
    Scenario(f"random retriable mix, rate {MIX_RATE}", mix=RETRIABLE_KINDS),
    Scenario(
        f"random mix incl. fatal, rate {MIX_RATE} (OAuth)",
        auth="oauth",
        mix=(*RETRIABLE_KINDS, ("daily_429", {}), ("expire_token", {}), ("expire_token", {})),
        token_mix=(("invalid_grant", {}),),
    ),
)


@dataclass
class Outcome:
    """What one scenario (or one seed of a mix) did."""

    scenario: str
    seed: int | None
    runs: list[TapRun]
    expected: int
    delivered: int
    missing: dict[str, int]
    unexpected: dict[str, int]
    faults_applied: int
    retries: int
    first_error: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected


# --- the expected records -------------------------------------------------------------------
_baseline_lock = threading.Lock()
_baseline: tuple[dict[str, set[str]], dict] | None = None


def baseline() -> tuple[dict[str, set[str]], dict]:
    """The primary keys of a clean full sync (checked against the sandbox's own counts),
    and the catalog every scenario uses (the same seed always builds the same data)."""
    global _baseline
    with _baseline_lock:
        if _baseline is None:
            with Sandbox(seed=DATA_SEED, scale=SCALE, burst_limit=None) as sandbox:
                config = _config(sandbox, "api_token")
                with TapSession(sandbox, config) as session:
                    run = session.run()
                    assert run.returncode == 0, run.stderr[-3000:]
                    keys = session.delivered_keys()
                    catalog = session.catalog
                counts = sandbox.expected_counts(sorted(RELIABILITY_STREAMS))
            got = {stream: len(found) for stream, found in keys.items()}
            assert got == counts, f"clean sync (distinct keys) {got} != sandbox {counts}"
            _baseline = (keys, catalog)
        return _baseline


def expected_keys() -> dict[str, set[str]]:
    return baseline()[0]


def _config(sandbox: Sandbox, auth: str) -> dict[str, Any]:
    common = {"api_url": sandbox.url, "page_size": PAGE_SIZE, **FAST_RETRIES}
    if auth == "oauth":
        return {
            **common,
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "refresh_token": sandbox.issue_refresh_token(),
            "oauth_url": sandbox.url,
        }
    return {**common, "api_token": sandbox.api_token}


# --- running a scenario ---------------------------------------------------------------------
def run_scenario(scenario: Scenario, seed: int | None = None) -> Outcome:
    expected, catalog = baseline()
    ledger = SecretLedger()
    with (
        recording_issued_tokens(ledger),
        Sandbox(seed=DATA_SEED, scale=SCALE, burst_limit=None) as sandbox,
    ):
        ledger.add(sandbox.api_token, sandbox.client_secret)
        config = _config(sandbox, scenario.auth)
        with TapSession(sandbox, config, ledger=ledger, catalog=catalog) as session:
            applied = _count_applied_faults(sandbox)
            _install(sandbox, scenario, seed)
            runs = session.run_until_complete(max_runs=10, before_rerun=_operator(scenario))
            delivered = session.delivered_keys()
    first = runs[0]
    return Outcome(
        scenario=scenario.name,
        seed=seed,
        runs=runs,
        expected=sum(len(keys) for keys in expected.values()),
        delivered=sum(
            len(keys & delivered.get(stream, set())) for stream, keys in expected.items()
        ),
        missing=missing(expected, delivered),
        unexpected=unexpected(expected, delivered),
        faults_applied=sum(applied.values()),
        retries=sum(run.stderr.count("Retrying in") for run in runs),
        first_error=first.error_lines()[0] if first.returncode != 0 else None,
    )


def _install(sandbox: Sandbox, scenario: Scenario, seed: int | None) -> None:
    for kind, params in scenario.faults:
        sandbox.faults.add(kind, **params)
    if scenario.mix:
        mix_seed = 1000 + (seed or 0)
        sandbox.faults.random_mix(mix_seed, MIX_RATE, kinds=scenario.mix)
        rng = random.Random(mix_seed)
        for kind, params in scenario.token_mix:
            # Refreshes are few (one per expired token), so a refused one is scripted at a
            # random refresh for about half of the seeds rather than mixed in by rate.
            if rng.random() < 0.5:
                sandbox.faults.add(kind, path="/oauth/token", after=rng.randint(1, 3), **params)


def _count_applied_faults(sandbox: Sandbox) -> Counter[str]:
    """Count, by kind, every fault the sandbox applies from now on (scripted or mixed)."""
    applied: Counter[str] = Counter()
    take = sandbox.faults.take

    def counting_take(path: str, *args: Any, **kwargs: Any) -> Any:
        fault = take(path, *args, **kwargs)
        if fault is not None:
            applied[fault.kind] += 1
        return fault

    sandbox.faults.take = counting_take  # type: ignore[method-assign]
    return applied


def _operator(scenario: Scenario) -> Callable[[TapSession, TapRun], None]:
    """What a person does between a failed run and the next one."""

    def between_runs(session: TapSession, failed: TapRun) -> None:
        sandbox = session.sandbox
        error = failed.error_lines()[0]
        if not scenario.mix:
            sandbox.faults.clear()  # the outage is over
        if "daily API token budget" in error:
            sandbox.reset_daily_budget()  # the next day
        if "--login" in error:
            # Authorize again: a fresh refresh token, as `tap-pipedrive --login` would write.
            session.config["refresh_token"] = sandbox.issue_refresh_token()

    return between_runs


def run_mix(scenario: Scenario, seeds: int, workers: int = 2) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda seed: run_scenario(scenario, seed), range(1, seeds + 1)))


# --- the table -----------------------------------------------------------------------------
@dataclass
class Row:
    fault: str
    runs: int
    expected: int
    delivered: int
    outcome: str


def describe(outcome: Outcome) -> str:
    first = outcome.runs[0]
    parts = []
    if first.returncode == 0:
        parts.append(f"exit 0 after {outcome.retries} retr{'y' if outcome.retries == 1 else 'ies'}")
    else:
        message = (outcome.first_error or "").split("|")[-1].strip()
        parts.append(f"exit {first.returncode}, one line: {message[:60]}...")
        parts.append(f"resumed from state ({len(outcome.runs)} runs)")
    parts.append(
        "complete" if outcome.complete else f"MISSING {outcome.missing} EXTRA {outcome.unexpected}"
    )
    return "; ".join(parts)


def row_for(outcome: Outcome) -> Row:
    return Row(
        outcome.scenario, len(outcome.runs), outcome.expected, outcome.delivered, describe(outcome)
    )


def row_for_mix(name: str, outcomes: list[Outcome]) -> Row:
    runs = sum(len(outcome.runs) for outcome in outcomes)
    failed_first = sum(1 for outcome in outcomes if outcome.runs[0].returncode != 0)
    incomplete = [outcome.seed for outcome in outcomes if not outcome.complete]
    faults = sum(outcome.faults_applied for outcome in outcomes)
    outcome = (
        f"{len(outcomes)} seeds, {faults} faulty answers, {sum(o.retries for o in outcomes)} retries; "
        f"{failed_first} seed(s) needed a resume; "
        + ("complete for every seed" if not incomplete else f"INCOMPLETE seeds {incomplete}")
    )
    return Row(
        name,
        runs,
        sum(o.expected for o in outcomes),
        sum(o.delivered for o in outcomes),
        outcome,
    )


def format_table(rows: list[Row]) -> str:
    header = ("fault", "runs", "records expected", "records delivered", "outcome")
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.fault} | {row.runs} | {row.expected} | {row.delivered} | {row.outcome} |"
        )
    return "\n".join(lines)


def run_matrix(seeds: int = DEFAULT_SEEDS, workers: int = 2) -> list[Row]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        singles = list(pool.map(run_scenario, SINGLE_FAULTS))
    rows = [row_for(outcome) for outcome in singles]
    for mix in MIXES:
        rows.append(row_for_mix(mix.name, run_mix(mix, seeds, workers)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="seeds per random mix")
    parser.add_argument("--workers", type=int, default=2, help="scenarios run at the same time")
    args = parser.parse_args(argv)
    rows = run_matrix(args.seeds, args.workers)
    print(format_table(rows))
    return (
        0
        if all(
            row.expected == row.delivered
            and "MISSING" not in row.outcome
            and "INCOMPLETE" not in row.outcome
            for row in rows
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
