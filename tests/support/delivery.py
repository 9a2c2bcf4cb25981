"""Run the tap against the sandbox and account for every record it delivers.

Used by the fault, hostile-input, interruption and secrets tests and by
``tests/fault_matrix.py``. A :class:`TapSession` owns one sandbox, one catalog and the
history of the tap runs made against it; it runs the tap exactly as a scheduler would
(``python -m tap_pipedrive`` with config, catalog and state files), checks that nothing
it printed holds a secret, and resumes failed runs from the last STATE they emitted.
Records are counted by primary key, so a record delivered twice (at-least-once) counts
once, and one never delivered shows up as missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.secrets import SecretLedger
from tests.support.tap_runner import catalog_for

REPO_ROOT = Path(__file__).resolve().parents[2]

# Streams covering every read pattern of the tap: v2 cursor lists with update_time
# bookmarks (deals also with archived partitions and custom fields), v1 offset lists
# (notes, leads), unpaged v1 lists, v2 lists read whole, and a child stream read in
# batches of parents (deal_products).
RELIABILITY_STREAMS = frozenset(
    {
        "deals",
        "persons",
        "organizations",
        "activities",
        "products",
        "notes",
        "leads",
        "users",
        "currencies",
        "pipelines",
        "stages",
        "deal_products",
    }
)
# Settings that keep retry waits short in tests. A 429 still waits for x-ratelimit-reset.
FAST_RETRIES = {"retry_base_seconds": 0.01, "max_retries": 6, "request_timeout": 1}
# The SDK logs this at ERROR before the tap's own line; it only names the stream.
SDK_CONTEXT_LINE = "An unhandled error occurred while syncing"


@dataclasses.dataclass
class TapRun:
    """One tap process: what it printed and how it ended."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict]
    seconds: float
    killed_by: int | None = None

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m.get("type") == "STATE"]

    @property
    def last_state(self) -> dict | None:
        states = self.states
        return states[-1] if states else None

    def error_lines(self) -> list[str]:
        """The ERROR lines the tap wrote, minus the SDK's 'which stream' line."""
        return [
            line
            for line in self.stderr.splitlines()
            if "| ERROR" in line and SDK_CONTEXT_LINE not in line
        ]

    def record_count(self) -> int:
        return sum(1 for m in self.messages if m.get("type") == "RECORD")


def parse_lines(text: str) -> list[dict]:
    """Singer messages from tap output; a line cut short by a killed process is dropped."""
    messages = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
    return messages


def record_key(record: dict, key_properties: list[str]) -> str:
    return json.dumps([record.get(name) for name in key_properties], sort_keys=True)


def tap_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a tap subprocess: no inherited tap settings or Meltano context."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TAP_PIPEDRIVE_", "MELTANO_"))
    }
    env.update(extra or {})
    return env


def write_private_json(path: Path, data: Any) -> Path:
    """Config files hold secrets: create them 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


class TapSession:
    """One sandbox, one catalog, and every tap run made against them."""

    def __init__(
        self,
        sandbox: Any,
        config: dict[str, Any],
        streams: frozenset[str] | set[str] = RELIABILITY_STREAMS,
        ledger: SecretLedger | None = None,
        workdir: Path | None = None,
        catalog: dict | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.config = dict(config)
        self.streams = frozenset(streams)
        # Sandboxes built from the same seed and scale can share one catalog.
        if catalog is None:
            catalog = catalog_for(sandbox, self.streams)
            unknown = self.streams - {entry["tap_stream_id"] for entry in catalog["streams"]}
            assert not unknown, f"not streams of the tap: {sorted(unknown)}"
        self.catalog = catalog
        self.key_properties = {
            entry["tap_stream_id"]: list(entry.get("key_properties") or [])
            for entry in self.catalog["streams"]
        }
        self.ledger = ledger or SecretLedger(sandbox.api_token, sandbox.client_secret)
        for value in (config.get("refresh_token"), config.get("access_token")):
            self.ledger.add(value)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="tap-pipedrive-delivery-")
            workdir = Path(self._tempdir.name)
        self.workdir = workdir
        self.runs: list[TapRun] = []

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> TapSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- running -----------------------------------------------------------------------
    def command(self, state: dict | None = None) -> list[str]:
        index = len(self.runs)
        config_path = write_private_json(self.workdir / f"config-{index}.json", self.config)
        catalog_path = self.workdir / f"catalog-{index}.json"
        catalog_path.write_text(json.dumps(self.catalog), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "tap_pipedrive",
            "--config",
            str(config_path),
            "--catalog",
            str(catalog_path),
        ]
        if state is not None:
            state_path = self.workdir / f"state-{index}.json"
            state_path.write_text(json.dumps(state), encoding="utf-8")
            command += ["--state", str(state_path)]
        return command

    def environment(self) -> dict[str, str]:
        # OAuth runs keep their token store in the session's own directory.
        return tap_environment({"XDG_DATA_HOME": str(self.workdir / "xdg")})

    def run(self, state: dict | None = None, timeout: float = 240) -> TapRun:
        """Run the tap to its end; its whole output is checked for secrets."""
        started = time.monotonic()
        completed = subprocess.run(
            self.command(state),
            capture_output=True,
            text=True,
            env=self.environment(),
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )
        run = TapRun(
            returncode=completed.returncode,
            stdout=completed.stdout,
            stderr=completed.stderr,
            messages=parse_lines(completed.stdout),
            seconds=time.monotonic() - started,
        )
        self.record(run)
        return run

    def record(self, run: TapRun) -> None:
        self.ledger.assert_absent(run.stdout, where=f"the stdout of tap run {len(self.runs) + 1}")
        self.ledger.assert_absent(run.stderr, where=f"the stderr of tap run {len(self.runs) + 1}")
        self.runs.append(run)

    def run_until_complete(
        self,
        max_runs: int = 8,
        before_rerun: Callable[[TapSession, TapRun], None] | None = None,
        state: dict | None = None,
    ) -> list[TapRun]:
        """Run, and after a failure rerun from the last STATE the failed run emitted.

        Every failed run must end with exactly one clear error line and no traceback.
        ``before_rerun`` plays the operator (clear a fault, log in again) between runs.
        """
        runs = []
        for _ in range(max_runs):
            run = self.run(state=state)
            runs.append(run)
            if run.returncode == 0:
                return runs
            assert_one_clear_error(run)
            if run.last_state is not None:
                state = run.last_state
            if before_rerun is not None:
                before_rerun(self, run)
        raise AssertionError(
            f"no complete run in {max_runs} attempts; last error: {runs[-1].error_lines()[-1:]}"
        )

    # --- accounting ----------------------------------------------------------------------
    def delivered_keys(self, runs: list[TapRun] | None = None) -> dict[str, set[str]]:
        """Primary keys per stream over ``runs`` (default: every run of the session)."""
        keys: dict[str, set[str]] = {name: set() for name in self.streams}
        for run in self.runs if runs is None else runs:
            for message in run.messages:
                if message.get("type") == "RECORD" and message["stream"] in keys:
                    stream = message["stream"]
                    keys[stream].add(record_key(message["record"], self.key_properties[stream]))
        return keys


def assert_one_clear_error(run: TapRun) -> str:
    """A failed run ends with exactly one error line of its own and no traceback."""
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = run.error_lines()
    assert len(lines) == 1, "\n".join(lines) or run.stderr[-3000:]
    message = lines[0].split("| ERROR", 1)[1].split("|", 1)[1].strip()
    assert 20 <= len(message) <= 400, message
    return message


def missing(expected: dict[str, set[str]], delivered: dict[str, set[str]]) -> dict[str, int]:
    """Per stream, how many expected keys were never delivered (only streams missing some)."""
    return {
        stream: len(keys - delivered.get(stream, set()))
        for stream, keys in expected.items()
        if keys - delivered.get(stream, set())
    }


def unexpected(expected: dict[str, set[str]], delivered: dict[str, set[str]]) -> dict[str, int]:
    """Per stream, keys delivered that the sandbox does not hold."""
    return {
        stream: len(keys - expected.get(stream, set()))
        for stream, keys in delivered.items()
        if keys - expected.get(stream, set())
    }
