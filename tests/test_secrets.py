"""Secrets: nothing the tap prints holds one, and every file holding one is 0600.

Every tap run of the reliability tests already goes through a ``SecretLedger`` check
(tests/support/delivery.py: stdout with every Singer message, and stderr). This module
adds a battery that visits each way the tap can talk: each auth mode, token rotation,
a 401 mid-stream, refused refresh tokens, expired access tokens, wrong tokens, retried
and fatal API faults, mistyped secret settings, discovery, --about and the OAuth helper.
Everything they print is scanned for every secret the sandbox knows or issued, and every
file they leave behind that holds a secret must be readable by its owner only.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pipedrive_sandbox import Sandbox
from tests.support.delivery import (
    FAST_RETRIES,
    TapRun,
    TapSession,
    tap_environment,
    write_private_json,
)
from tests.support.secrets import SecretLedger, recording_issued_tokens

REPO_ROOT = Path(__file__).resolve().parents[1]
STREAMS = frozenset({"deals", "persons", "users", "deal_products"})
DEALS = r"^/api/v2/deals$"

pytestmark = pytest.mark.timeout(600)


class Printed:
    """Everything printed in this module, with the ledger of secrets it must not hold."""

    def __init__(self, ledger: SecretLedger) -> None:
        self.ledger = ledger
        self.outputs: list[tuple[str, str]] = []

    def add(self, where: str, *texts: str) -> None:
        self.outputs.append((where, "\n".join(texts)))


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=6, scale=0.05, burst_limit=None) as sb:
        yield sb


@pytest.fixture(scope="module")
def printed(sandbox, tmp_path_factory) -> Printed:
    """Run the battery once; tests then look at what it printed and left on disk."""
    ledger = SecretLedger(sandbox.api_token, sandbox.client_secret)
    record = Printed(ledger)
    workdir = tmp_path_factory.mktemp("secrets")
    with recording_issued_tokens(ledger):
        _api_token_runs(sandbox, ledger, record, workdir / "api")
        _oauth_runs(sandbox, ledger, record, workdir / "oauth")
        _access_token_runs(sandbox, ledger, record, workdir / "access")
        _cli_only_runs(sandbox, ledger, record, workdir / "cli")
    record.workdir = workdir  # type: ignore[attr-defined]
    return record


def _session(sandbox, config, ledger, workdir: Path) -> TapSession:
    workdir.mkdir(parents=True, exist_ok=True)
    return TapSession(sandbox, config, streams=STREAMS, ledger=ledger, workdir=workdir)


def _keep(record: Printed, where: str, run: TapRun) -> TapRun:
    record.add(where, run.stdout, run.stderr)
    return run


def _api_token_runs(sandbox, ledger, record, workdir):
    config = {"api_token": sandbox.api_token, "api_url": sandbox.url, **FAST_RETRIES}
    session = _session(sandbox, config, ledger, workdir)
    for kind, params in (
        ("http_error", {"status": 500}),
        ("malformed_json", {}),
        ("html_403", {}),
        ("reset", {}),
        ("burst_429", {"reset": 1}),
    ):
        sandbox.faults.add(kind, path=DEALS, **params)
    run = _keep(record, "api token sync with retried faults", session.run())
    assert run.returncode == 0, run.stderr[-3000:]
    sandbox.faults.add("daily_429", path=DEALS)
    run = _keep(record, "api token, daily budget", session.run(state=run.last_state))
    assert run.returncode == 1
    sandbox.faults.clear()
    wrong = {**config, "api_token": "0123456789abcdef0123456789abcdef01234567"}
    ledger.add(wrong["api_token"])
    session.config = wrong
    run = _keep(record, "wrong api token", session.run())
    assert run.returncode == 1
    assert "check the api_token setting" in run.error_lines()[0]


def _oauth_runs(sandbox, ledger, record, workdir):
    store = workdir / "tokens" / "store.json"
    config = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
        "api_url": sandbox.url,
        "oauth_settings_location": str(store),
        **FAST_RETRIES,
    }
    session = _session(sandbox, config, ledger, workdir)
    sandbox.faults.add("expire_token", path=DEALS, after=1)
    first = _keep(record, "oauth sync with a 401 mid-stream", session.run())
    assert first.returncode == 0, first.stderr[-3000:]
    # The config still holds the first refresh token, long rotated: the store carries on.
    second = _keep(record, "oauth sync from the token store", session.run())
    assert second.returncode == 0, second.stderr[-3000:]
    sandbox.expire_access_tokens()
    sandbox.faults.add("invalid_grant", path="/oauth/token")
    refused = _keep(record, "oauth refused refresh token", session.run())
    assert refused.returncode == 1
    assert "--login" in refused.error_lines()[0]
    record.store = store  # type: ignore[attr-defined]


def _access_token_runs(sandbox, ledger, record, workdir):
    # An access token handed over by hand, then expired.
    credentials = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode())
    request = urllib.request.Request(
        f"{sandbox.url}/oauth/token",
        data=urllib.parse.urlencode(
            {"grant_type": "refresh_token", "refresh_token": sandbox.issue_refresh_token()}
        ).encode(),
        headers={"Authorization": f"Basic {credentials.decode()}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    ledger.add(body["access_token"], body["refresh_token"])
    config = {"access_token": body["access_token"], "api_url": sandbox.url, **FAST_RETRIES}
    session = _session(sandbox, config, ledger, workdir)
    run = _keep(record, "access token sync", session.run())
    assert run.returncode == 0, run.stderr[-3000:]
    sandbox.expire_access_tokens()
    run = _keep(record, "expired access token", session.run())
    assert run.returncode == 1
    assert "expired" in run.error_lines()[0]


def _cli(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = write_private_json(
        workdir / f"config-{len(list(workdir.iterdir()))}.json", config
    )
    return subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        env=tap_environment({"XDG_DATA_HOME": str(workdir / "xdg")}),
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _cli_only_runs(sandbox, ledger, record, workdir):
    oauth = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
        "api_url": sandbox.url,
        "oauth_settings_location": str(workdir / "helper-store.json"),
    }
    for args in (("--discover",), ("--about", "--format", "json"), ("--oauth-refresh",)):
        result = _cli(workdir, oauth, *args)
        record.add(f"tap {' '.join(args)}", result.stdout, result.stderr)
        assert result.returncode == 0, result.stderr[-3000:]
    # Secrets given with the wrong type: the validation error must not quote them.
    mistyped = {
        "client_id": sandbox.client_id,
        "client_secret": ["typed-as-a-list-secret-value"],
        "refresh_token": 98765432109876543210,
        "api_url": "http://127.0.0.1:9",
    }
    ledger.add("typed-as-a-list-secret-value", "98765432109876543210")
    result = _cli(workdir, mistyped, "--discover")
    record.add("mistyped secrets", result.stdout, result.stderr)
    assert result.returncode == 1
    assert "Setting client_secret must be text" in result.stderr


def test_nothing_printed_holds_a_secret(printed):
    assert len(printed.outputs) >= 12
    issued = [value for value in printed.ledger.values if value.startswith(("v1u:", "r1:"))]
    assert len(issued) >= 6, "the battery should have handled several issued tokens"
    for where, text in printed.outputs:
        printed.ledger.assert_absent(text, where=where)


def test_singer_messages_hold_no_secret(printed):
    """Every RECORD, SCHEMA and STATE message, decoded, holds no secret in any value."""
    checked = 0
    for where, text in printed.outputs:
        for line in text.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a log line, or a line of pretty-printed JSON (scanned as text)
            if isinstance(message, dict) and "type" in message:
                decoded = json.dumps(message, ensure_ascii=False)
                printed.ledger.assert_absent(decoded, where=f"a Singer message of {where}")
                checked += 1
    assert checked > 1000


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_every_file_holding_a_secret_is_private(printed):
    holding = []
    for path in _files(printed.workdir):
        text = path.read_text(encoding="utf-8", errors="replace")
        if printed.ledger.leaks(text):
            holding.append(path)
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == 0o600, f"{path.name} holds a secret with mode {oct(mode)}"
    names = {path.name for path in holding}
    # The token stores and the configs with credentials, at least.
    assert "store.json" in names and "helper-store.json" in names
    assert any(name.startswith("config-") for name in names)


def test_the_token_store_keeps_only_the_newest_tokens_and_its_directory_is_private(printed):
    store: Path = printed.store
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) & 0o077 == 0
    lock = store.with_name(store.name + ".lock")
    assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0
    data = json.loads(store.read_text(encoding="utf-8"))
    # Replaced refresh tokens are remembered by digest only.
    for entry in data["authorizations"]:
        for digest in entry.get("replaced_refresh_tokens") or []:
            assert len(digest) == 64 and digest not in printed.ledger.values
    assert os.path.getsize(store) < 20_000
