"""Errors lead with their cause, in one line per problem, without Python internals.

A wrong token names the setting that holds it (whichever request met the 401 first);
bad ``--config=ENV`` values get one line per setting, not a traceback; a secret of the
wrong type is not echoed (nor shown as a Python repr); a host that refuses connections
fails after a few quick attempts, naming the host.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipedrive_sandbox import Sandbox
from tap_pipedrive.errors import PipedriveAPIError, ServerUnreachable
from tests.support.tap_runner import run_cli, sync_capturing

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = {"retry_base_seconds": 0.01}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=3, scale=0.02, burst_limit=None) as sb:
        yield sb


def _error_lines(stderr: str) -> list[str]:
    return [line.split("|", 3)[-1].strip() for line in stderr.splitlines() if "| ERROR" in line]


def _tap(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_PIPEDRIVE_")}
    return subprocess.run(
        [sys.executable, "-X", "dev", "-m", "tap_pipedrive", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_wrong_api_token_says_so_first(sandbox):
    # The first request reads custom field definitions; its 401 is about the token.
    config = {"api_url": sandbox.url, "api_token": "0123456789abcdef-wrong", **FAST}
    result = run_cli(config, "--discover")
    assert result.returncode == 1
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("Pipedrive rejected the API token: check the api_token setting")
    assert "0123456789abcdef-wrong" not in result.stderr


def test_env_config_errors_one_line_per_setting(sandbox, tmp_path):
    env = {
        "TAP_PIPEDRIVE_API_URL": sandbox.url,
        "TAP_PIPEDRIVE_API_TOKEN": sandbox.api_token,
        "TAP_PIPEDRIVE_PAGE_SIZE": "abc",
        "TAP_PIPEDRIVE_MAX_RETRIES": "1.5",
        "TAP_PIPEDRIVE_RETRY_BASE_SECONDS": "soon",
    }
    result = _tap("--config=ENV", "--discover", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert _error_lines(result.stderr) == [
        'TAP_PIPEDRIVE_PAGE_SIZE (setting page_size) must be a whole number, got "abc"',
        'TAP_PIPEDRIVE_MAX_RETRIES (setting max_retries) must be a whole number, got "1.5"',
        'TAP_PIPEDRIVE_RETRY_BASE_SECONDS (setting retry_base_seconds) must be a number, got "soon"',
    ]


def test_env_config_reads_number_settings(sandbox, tmp_path):
    # A number setting given through the environment is a number, not text to refuse.
    env = {
        "TAP_PIPEDRIVE_API_URL": sandbox.url,
        "TAP_PIPEDRIVE_API_TOKEN": sandbox.api_token,
        "TAP_PIPEDRIVE_RETRY_BASE_SECONDS": "0.5",
    }
    result = _tap("--config=ENV", "--discover", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["streams"]


def test_mistyped_secret_is_neither_echoed_nor_a_python_repr(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_token": 1.5, "page_size": 0, "oauth_mode": "sometimes"}))
    result = _tap("--config", str(config), "--discover", cwd=tmp_path)
    assert result.returncode == 1
    assert "Decimal" not in result.stderr and "1.5" not in result.stderr
    assert _error_lines(result.stderr) == [
        "Setting api_token must be text, got a value that is not shown (the setting is secret)",
        'Setting oauth_mode must be one of get_and_refresh, refresh, off, got "sometimes"',
        "Setting page_size must be at least 1, got 0",
    ]


def test_gave_up_after_one_attempt_is_singular(sandbox):
    sandbox.faults.add("http_error", path=r"^/api/v2/deals$", status=500, count=None)
    try:
        config = {"api_url": sandbox.url, "api_token": sandbox.api_token, "max_retries": 1}
        _, _, error = sync_capturing(config, streams={"deals"})
    finally:
        sandbox.faults.clear()
    assert isinstance(error, PipedriveAPIError)
    assert str(error).startswith("Gave up after 1 attempt: 500 from Pipedrive")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refused_connection_fails_fast_naming_the_host(caplog):
    port = _closed_port()
    config = {"api_url": f"http://127.0.0.1:{port}", "api_token": "a-token-of-some-length", **FAST}
    # The first request (custom field definitions, while the catalog is built) meets it.
    with pytest.raises(ServerUnreachable) as error:
        sync_capturing(config, streams={"deals"})
    assert str(error.value).startswith(f"Cannot connect to 127.0.0.1:{port}: connection refused")
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying in")]
    # max_retries is 8: a refusal is tried three times, not eight.
    assert len(retries) == 2


def test_dropped_connections_keep_the_patient_retries(sandbox, caplog):
    # A reset is not a refusal: the server is there, so every attempt is used.
    sandbox.faults.add("reset", path=r"^/api/v2/deals$", count=None)
    try:
        config = {"api_url": sandbox.url, "api_token": sandbox.api_token, "max_retries": 5, **FAST}
        _, _, error = sync_capturing(config, streams={"deals"})
    finally:
        sandbox.faults.clear()
    assert isinstance(error, PipedriveAPIError) and not isinstance(error, ServerUnreachable)
    assert str(error).startswith("Gave up after 5 attempts on stream deals")
    retries = [r for r in caplog.records if r.getMessage().startswith("Retrying in")]
    assert len(retries) == 4
