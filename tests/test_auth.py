"""Authentication modes against the sandbox: header not URL, refresh, rotation, 401, invalid_grant."""

from __future__ import annotations

import time

import pytest

from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.auth.modes import resolve_auth_mode
from tap_pipedrive.auth.tokens import TokenSet
from tap_pipedrive.errors import ConfigError, ReauthorizationRequired
from tap_pipedrive.tap import TapPipedrive
from tests.support.tap_runner import run_cli, run_tap

SMALL = {"currencies", "activity_types", "pipelines"}


def api_requests(sandbox):
    return [r for r in sandbox.requests if "/api/" in r.path]


def refresh_calls(sandbox):
    return [c for c in sandbox.token_calls if c["grant_type"] == "refresh_token"]


def test_api_token_goes_in_header_never_in_url(sandbox, api_config):
    result = run_tap(api_config, streams=SMALL)
    assert result.record_counts()["currencies"] > 0
    calls = api_requests(sandbox)
    assert calls
    assert {r.auth_kind for r in calls} == {"api_token"}
    assert all("api_token" not in r.query for r in calls)


def test_oauth_refreshes_once_and_uses_api_domain(sandbox, oauth_config):
    result = run_tap(oauth_config, streams=SMALL)
    assert result.record_counts()["pipelines"] > 0
    # One authenticator for all streams: one refresh for the whole run.
    assert len(refresh_calls(sandbox)) == 1
    assert {r.auth_kind for r in api_requests(sandbox)} == {"bearer"}
    # No api_url configured: the tap followed api_domain from the token response.
    assert result.tap.api_root == sandbox.url


def bare_authenticator(sandbox, refresh_token):
    """An authenticator without a token store: only its own memory carries tokens."""
    return PipedriveOAuthAuthenticator(
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        tokens=TokenSet(refresh_token=refresh_token),
        oauth_url=sandbox.url,
    )


def test_rotated_refresh_token_is_kept_and_used(sandbox):
    original = sandbox.issue_refresh_token()
    auth = bare_authenticator(sandbox, original)
    auth.ensure_token()
    rotated = auth.tokens.refresh_token
    assert rotated != original  # the sandbox rotates; the old one is now dead
    auth.invalidate()
    auth.ensure_token()  # works only if the rotated token was kept
    assert auth.refresh_count == 2
    assert auth.tokens.refresh_token not in (original, rotated)
    assert [c["status"] for c in refresh_calls(sandbox)] == [200, 200]


def test_refreshes_early_before_expiry(sandbox):
    auth = bare_authenticator(sandbox, sandbox.issue_refresh_token())
    token = auth.ensure_token()
    # An hour-long token with 60 s left is inside the safety margin: refresh now,
    # not in the middle of a request.
    auth.tokens.obtained_at = time.time() - 3540
    auth.tokens.expires_at = time.time() + 60
    assert auth.ensure_token() != token
    assert auth.refresh_count == 2
    # A token with plenty of life left is reused.
    auth.ensure_token()
    assert auth.refresh_count == 2


def test_401_mid_sync_refreshes_and_retries_once(sandbox, oauth_config):
    sandbox.faults.add("expire_token", path=r"/api/v2/pipelines", count=1)
    result = run_tap(oauth_config, streams=SMALL)
    assert result.record_counts()["pipelines"] == sandbox.expected_counts()["pipelines"]
    assert len(refresh_calls(sandbox)) == 2
    statuses = [r.status for r in api_requests(sandbox) if "/pipelines" in r.path]
    assert statuses.count(401) == 1


def test_repeated_401_fails_after_one_retry(sandbox, oauth_config):
    sandbox.faults.add("expire_token", path=r"/api/v2/pipelines", count=None)
    result = run_cli(oauth_config, streams={"pipelines"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "401 from Pipedrive for GET /api/v2/pipelines" in result.stderr
    statuses = [r.status for r in api_requests(sandbox) if "/pipelines" in r.path]
    assert statuses == [401, 401]


def test_invalid_grant_says_to_login(sandbox, oauth_config):
    sandbox.faults.add("invalid_grant", path=r"/oauth/token", count=1)
    result = run_cli(oauth_config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(error_lines) == 1
    assert "tap-pipedrive --login" in error_lines[0]
    assert oauth_config["refresh_token"] not in result.stderr + result.stdout


def test_bare_access_token_is_used_as_is(sandbox, oauth_config):
    tap = TapPipedrive(config=oauth_config)
    access_token = tap.authenticator.ensure_token()
    sandbox.token_calls.clear()
    result = run_tap({"access_token": access_token, "api_url": sandbox.url}, streams={"pipelines"})
    assert result.record_counts()["pipelines"] > 0
    assert refresh_calls(sandbox) == []


def test_expired_bare_access_token_fails_clearly(sandbox, oauth_config):
    access_token = TapPipedrive(config=oauth_config).authenticator.ensure_token()
    sandbox.expire_access_tokens()
    result = run_cli({"access_token": access_token, "api_url": sandbox.url})
    assert result.returncode == 1
    assert "access_token has expired or was revoked" in result.stderr
    assert access_token not in result.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "No credentials configured"),
        (
            {"api_token": "abcdefgh", "refresh_token": "r"},
            "Ambiguous credentials: api_token is set together with refresh_token",
        ),
        ({"refresh_token": "r", "client_id": "c"}, "OAuth refresh needs client_secret"),
        ({"client_id": "c"}, "OAuth needs both client_id and client_secret: set client_secret"),
    ],
)
def test_config_mode_errors(config, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_auth_mode(config)


def test_config_error_is_one_line_before_any_request(sandbox):
    result = run_cli({"api_token": "abcdefgh", "access_token": "zzzzzzzz", "api_url": sandbox.url})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Ambiguous credentials" in result.stderr
    assert "abcdefgh" not in result.stderr and "zzzzzzzz" not in result.stderr
    assert sandbox.requests == []


def test_token_set_repr_hides_tokens():
    tokens = TokenSet(access_token="secret-access", refresh_token="secret-refresh")
    assert "secret" not in repr(tokens)


def test_reauthorization_message_names_the_command(monkeypatch):
    message = str(ReauthorizationRequired("invalid_grant"))
    assert "`tap-pipedrive --login`" in message
    # With an argument: invoked without any, Meltano runs a discovery before the login.
    assert "`meltano invoke tap-pipedrive:login --login-timeout 300`" in message
    # Under Meltano, the extractor that runs, which may be one inherited per company.
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", "/srv/project")
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAME", "tap-pipedrive--acme")
    message = str(ReauthorizationRequired("invalid_grant"))
    assert "`meltano invoke tap-pipedrive--acme:login --login-timeout 300`" in message
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAME", "name with `backticks` and spaces")
    message = str(ReauthorizationRequired("invalid_grant"))
    assert "`meltano invoke tap-pipedrive:login --login-timeout 300`" in message


def test_no_refresh_token_message_names_a_login_that_works(monkeypatch, tmp_path):
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAME", "tap-pipedrive--globex")
    with pytest.raises(ConfigError) as caught:
        TapPipedrive(config={"client_id": "an-app", "client_secret": "its-secret"})
    message = str(caught.value)
    assert "`meltano invoke tap-pipedrive--globex:login --login-timeout 300`" in message
    assert "\n" not in message
