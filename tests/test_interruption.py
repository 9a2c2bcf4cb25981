"""Interruption: the tap is killed at random points of a large sync, then resumed.

The tap feeds target-postgres (as under Meltano); it is killed with SIGTERM or SIGKILL
after a random number of output lines, and the next run starts from the last STATE the
target committed. Whatever the kill point, the database must end up with every record of
the sandbox: the rows are counted per table against the sandbox's own counts (the target
upserts on the primary key, so a row delivered twice is still one row).

One more case does the same through ``meltano run``, killing the tap process Meltano
started, and lets Meltano's own state backend carry the resume.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from pipedrive_sandbox import Sandbox
from tests.support.delivery import TapSession
from tests.support.meltano import MeltanoProject, sandbox_tap_environment
from tests.support.pipeline import Kill, load_with_target_postgres, row_counts
from tests.support.postgres import PostgresServer
from tests.support.secrets import SecretLedger

SEED = 20240601
SCALE = 0.2
PAGE_SIZE = 100
STREAMS = frozenset({"deals", "persons", "activities", "notes", "deal_products", "users"})
# Kill points, drawn once from SEED: (signal, fraction of the sync's output lines).
_rng = random.Random(SEED)
KILLS = [
    (signal.SIGTERM, round(_rng.uniform(0.05, 0.9), 3)),
    (signal.SIGKILL, round(_rng.uniform(0.05, 0.9), 3)),
    (signal.SIGTERM, round(_rng.uniform(0.05, 0.9), 3)),
    (signal.SIGKILL, round(_rng.uniform(0.05, 0.9), 3)),
]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def big_sandbox():
    with Sandbox(seed=4, scale=SCALE, burst_limit=None) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def expected(big_sandbox) -> dict[str, int]:
    return big_sandbox.expected_counts(sorted(STREAMS))


@pytest.mark.parametrize(
    ("signum", "fraction"),
    KILLS,
    ids=[f"{signal.Signals(s).name}-at-{f:.0%}" for s, f in KILLS],
)
def test_a_killed_tap_resumes_with_no_record_missing(
    signum, fraction, big_sandbox, expected, meltano, postgres_database: PostgresServer, capsys
):
    sandbox = big_sandbox
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url, "page_size": PAGE_SIZE}
    total_records = sum(expected.values())
    schema = f"killed_{signum}_{int(fraction * 1000)}"
    with TapSession(sandbox, config, streams=STREAMS) as session:
        kill = Kill(after_lines=max(20, int(total_records * fraction)), signum=signum)
        first = load_with_target_postgres(session, postgres_database, schema, kill=kill)
        assert first.killed, "the sync ended before the kill point"
        assert first.tap.returncode in (-signal.SIGKILL, 128 + signal.SIGTERM)
        if signum == signal.SIGTERM:
            # Stopped, not finished: a failing exit code and one line saying so.
            assert [line for line in first.tap.error_lines()] == [
                line for line in first.tap.stderr.splitlines() if "Stopped by SIGTERM" in line
            ]
            assert "Traceback" not in first.tap.stderr
        committed = first.committed_state
        if signum == signal.SIGTERM:
            # The target got a clean end of input and committed the tap's last state.
            assert committed == first.tap.last_state
        loaded_before = sum(row_counts(postgres_database, schema).values())
        assert loaded_before < total_records, "nothing left to resume"

        second = load_with_target_postgres(session, postgres_database, schema, state=committed)
        assert second.tap.returncode == 0, second.tap.stderr[-3000:]
        assert second.target_returncode == 0, second.target_stderr[-3000:]

    final = row_counts(postgres_database, schema)
    with capsys.disabled():  # a row for the closing note's table
        print(
            f"\n| {signal.Signals(signum).name} after {kill.after_lines} lines "
            f"({fraction:.0%}) | 2 | {total_records} | {sum(final.values())} | "
            f"killed: exit {first.tap.returncode}, {loaded_before} rows committed; resumed from "
            f"{'the committed state' if committed else 'scratch'} with "
            f"{second.tap.record_count()} records; {'complete' if final == expected else 'MISSING'} |"
        )
    assert final == expected
    if committed and any(
        (entry or {}).get("replication_key_value")
        or any(p.get("replication_key_value") for p in (entry or {}).get("partitions", []))
        for entry in committed.get("bookmarks", {}).values()
    ):
        # Resumed from the bookmarks, not restarted: fewer records than a full sync.
        assert second.tap.record_count() < total_records


# --- through Meltano -----------------------------------------------------------------------------
def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def _tap_process(meltano_pid: int) -> int | None:
    for pid in _descendants(meltano_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"/bin/tap-pipedrive") for part in command):
            return pid
    return None


def _loaded_rows(server: PostgresServer, schema: str) -> int:
    try:
        return sum(row_counts(server, schema).values())
    except psycopg.Error:
        return 0


@pytest.fixture
def slow_sandbox():
    # Latency stretches the sync over several seconds, so the kill lands mid-sync even when
    # pages of later streams are fetched ahead in parallel and the machine is fast.
    with Sandbox(seed=4, scale=SCALE, burst_limit=None, latency=0.15) as sandbox:
        yield sandbox


def test_a_tap_killed_under_meltano_resumes_from_meltanos_state(
    slow_sandbox, expected, meltano: MeltanoProject, postgres_database: PostgresServer
):
    sandbox = slow_sandbox
    schema = "meltano_killed"
    env = {
        **sandbox_tap_environment(sandbox.url),
        **postgres_database.target_postgres_env(schema=schema),
        "TAP_PIPEDRIVE__SELECT": json.dumps([f"{name}.*" for name in sorted(STREAMS)]),
        "TAP_PIPEDRIVE_PAGE_SIZE": str(PAGE_SIZE),
    }
    state_id = f"kill-{postgres_database.database}"
    run = ("run", "--state-id-suffix", state_id)
    ledger = SecretLedger(sandbox.api_token, postgres_database.password)
    process = subprocess.Popen(
        [str(meltano.executable), *run, "tap-pipedrive", "target-postgres"],
        cwd=meltano.environment()["MELTANO_PROJECT_ROOT"],
        env=meltano.environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_after_requests = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            tap = _tap_process(process.pid)
            listed = sum(1 for record in sandbox.requests if record.path == "/api/v2/activities")
            # A few pages of the second stream are in: kill the tap there.
            if tap is not None and listed >= 3:
                os.kill(tap, signal.SIGKILL)
                killed_after_requests = len(sandbox.requests)
                break
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert killed_after_requests is not None, "the tap finished before it could be killed"
    assert process.returncode != 0
    ledger.assert_absent(stdout + stderr, where="Meltano's output")
    loaded_before = _loaded_rows(postgres_database, schema)
    # Meltano kept the state the target committed before the kill: the rerun resumes there.
    saved = meltano.run("state", "get", f"dev:tap-pipedrive-to-target-postgres:{state_id}", env=env)
    assert saved.returncode == 0, saved.stderr[-2000:]
    bookmarks = json.loads(saved.stdout.strip().splitlines()[0])["singer_state"]["bookmarks"]
    assert bookmarks, "Meltano saved no state for the interrupted run"
    assert loaded_before > 0

    again = meltano.run(*run, "tap-pipedrive", "target-postgres", env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    ledger.assert_absent(again.stdout + again.stderr, where="Meltano's output")
    assert row_counts(postgres_database, schema) == expected
