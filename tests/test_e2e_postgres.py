"""Production path end to end: sandbox -> tap-pipedrive -> Meltano -> target-postgres."""

from __future__ import annotations

import psycopg
import pytest

from tests.sandbox import Sandbox
from tests.support.meltano import (
    SANDBOX_API_TOKEN,
    MeltanoProject,
    count_differences,
    sandbox_tap_environment,
)
from tests.support.postgres import PostgresServer

SCHEMA = "pipedrive"


def _row_counts(server: PostgresServer) -> dict[str, int]:
    with psycopg.connect(server.dsn) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (SCHEMA,),
            )
        ]
        return {
            table: connection.execute(f'SELECT count(*) FROM {SCHEMA}."{table}"').fetchone()[0]
            for table in tables
        }


@pytest.fixture
def running_sandbox():
    with Sandbox(seed=3, scale=0.1) as sandbox:
        yield sandbox


def test_full_then_incremental_sync_into_postgres(
    meltano: MeltanoProject, postgres_database: PostgresServer, running_sandbox: Sandbox
):
    env = {
        **sandbox_tap_environment(running_sandbox.url),
        **postgres_database.target_postgres_env(schema=SCHEMA),
    }
    # The suffix keeps this test's bookmarks apart from any other run in the session.
    run = ("run", "--state-id-suffix", postgres_database.database)
    first = meltano.run(*run, "tap-pipedrive", "target-postgres", env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    for secret in (postgres_database.password, SANDBOX_API_TOKEN):
        assert secret not in first.stdout + first.stderr
    assert (
        count_differences(_row_counts(postgres_database), running_sandbox.expected_counts()) == {}
    )

    deal_id = running_sandbox.dataset["deals"][0]["id"]
    running_sandbox.update_record("deals", deal_id, title="Renamed between syncs ✓")
    second = meltano.run(*run, "tap-pipedrive", "target-postgres", env=env)
    assert second.returncode == 0, second.stderr[-4000:]

    # Upserts keep one row per key: counts are unchanged, the edited deal is updated.
    assert (
        count_differences(_row_counts(postgres_database), running_sandbox.expected_counts()) == {}
    )
    with psycopg.connect(postgres_database.dsn) as connection:
        title = connection.execute(
            f"SELECT title FROM {SCHEMA}.deals WHERE id = %s", (deal_id,)
        ).fetchone()
    assert title == ("Renamed between syncs ✓",)
