"""tap-pipedrive piped into target-postgres, the way Meltano runs them, without Meltano.

The tap's stdout is relayed line by line into the target's stdin; the target's stdout
holds the STATE messages it emitted, each one only after the records before it were
committed. That is "the last state the target committed": what a scheduler resumes
from. The relay can kill the tap after a given number of lines (SIGTERM or SIGKILL), to
interrupt it at any point of a sync.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.support.delivery import TapRun, TapSession, parse_lines, write_private_json
from tests.support.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET = REPO_ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"


def target_postgres() -> Path:
    """The target Meltano installed (the ``meltano`` fixture installs it); skip without it."""
    if not TARGET.is_file():
        pytest.skip("target-postgres is not installed (run `meltano install`)")
    return TARGET


@dataclass(frozen=True)
class Kill:
    """Send ``signum`` to the tap once ``after_lines`` lines of its output were relayed."""

    after_lines: int
    signum: int = signal.SIGTERM


@dataclass
class Loaded:
    tap: TapRun
    target_returncode: int
    target_stdout: str
    target_stderr: str
    server: PostgresServer
    schema: str
    relayed_lines: int
    killed: bool = False
    states: list[dict] = field(default_factory=list)

    @property
    def committed_state(self) -> dict | None:
        """The last STATE the target emitted (it emits one only after committing)."""
        return self.states[-1] if self.states else None

    def row_counts(self) -> dict[str, int]:
        return row_counts(self.server, self.schema)


def row_counts(server: PostgresServer, schema: str) -> dict[str, int]:
    with psycopg.connect(server.dsn) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        counts: dict[str, int] = {}
        for table in tables:
            row = connection.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


def table_keys(
    server: PostgresServer, schema: str, table: str, key_properties: list[str]
) -> set[str]:
    """The primary keys of a table, spelled like ``delivery.record_key``."""
    columns = ", ".join(f'"{name}"' for name in key_properties)
    with psycopg.connect(server.dsn) as connection:
        rows = connection.execute(f'SELECT {columns} FROM "{schema}"."{table}"').fetchall()
    return {json.dumps(list(row), sort_keys=True) for row in rows}


def target_config(server: PostgresServer, schema: str, batch_size_rows: int) -> dict:
    return {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": server.database,
        "default_target_schema": schema,
        "load_method": "upsert",
        "add_record_metadata": True,
        "batch_size_rows": batch_size_rows,
    }


def load_with_target_postgres(
    session: TapSession,
    server: PostgresServer,
    schema: str,
    state: dict | None = None,
    kill: Kill | None = None,
    batch_size_rows: int = 200,
    timeout: float = 300,
) -> Loaded:
    """Run the tap into target-postgres; optionally kill the tap part-way."""
    target = target_postgres()
    index = len(session.runs)
    workdir = session.workdir
    config_path = write_private_json(
        workdir / f"target-{index}.json", target_config(server, schema, batch_size_rows)
    )
    tap_err = workdir / f"tap-{index}.err"
    target_out = workdir / f"target-{index}.out"
    target_err = workdir / f"target-{index}.err"
    started = time.monotonic()
    with (
        tap_err.open("wb") as tap_stderr,
        target_out.open("wb") as target_stdout,
        target_err.open("wb") as target_stderr,
    ):
        target_process = subprocess.Popen(
            [str(target), "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=target_stdout,
            stderr=target_stderr,
            cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        tap_process = subprocess.Popen(
            session.command(state),
            stdout=subprocess.PIPE,
            stderr=tap_stderr,
            cwd=REPO_ROOT,
            env=session.environment(),
        )
        assert tap_process.stdout is not None and target_process.stdin is not None
        relayed: list[bytes] = []
        killed = False
        try:
            # Everything the tap wrote reaches the target, even after the kill: the bytes
            # already in the pipe are what Meltano would pass on too.
            for line in tap_process.stdout:
                target_process.stdin.write(line)
                relayed.append(line)
                if kill is not None and not killed and len(relayed) >= kill.after_lines:
                    tap_process.send_signal(kill.signum)
                    killed = True
                if time.monotonic() - started > timeout:
                    raise TimeoutError("the tap ran too long")
        finally:
            tap_process.stdout.close()
            tap_returncode = tap_process.wait(timeout=60)
            with contextlib.suppress(BrokenPipeError):
                target_process.stdin.close()
            target_returncode = target_process.wait(timeout=timeout)
    stdout = b"".join(relayed).decode("utf-8", errors="replace")
    run = TapRun(
        returncode=tap_returncode,
        stdout=stdout,
        stderr=tap_err.read_text(encoding="utf-8", errors="replace"),
        messages=parse_lines(stdout),
        seconds=time.monotonic() - started,
        killed_by=kill.signum if killed and kill is not None else None,
    )
    session.ledger.add(server.password)
    session.record(run)
    target_output = target_out.read_text(encoding="utf-8", errors="replace")
    target_errors = target_err.read_text(encoding="utf-8", errors="replace")
    session.ledger.assert_absent(target_output + target_errors, where="the target's output")
    # A target writes each state it has committed to stdout as a bare JSON object.
    states = [
        m["value"] if m.get("type") == "STATE" else m
        for m in parse_lines(target_output)
        if "bookmarks" in m or m.get("type") == "STATE"
    ]
    return Loaded(
        tap=run,
        target_returncode=target_returncode,
        target_stdout=target_output,
        target_stderr=target_errors,
        server=server,
        schema=schema,
        relayed_lines=len(relayed),
        killed=killed,
        states=states,
    )
