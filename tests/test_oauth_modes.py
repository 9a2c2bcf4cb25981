"""oauth_mode and the token store across runs: reuse, rotation, precedence, discovery."""

from __future__ import annotations

import json
import stat
import webbrowser

import pytest

from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.auth.modes import LoginRequired, build_authenticator
from tap_pipedrive.auth.store import refresh_token_fingerprint, store_path_from_config
from tap_pipedrive.errors import ConfigError
from tap_pipedrive.tap import TapPipedrive
from tests.support.oauth import (
    ScriptedBrowser,
    code_calls,
    expire_stored_access_token,
    free_port,
    record_count,
    refresh_calls,
    stored_entry,
)
from tests.support.tap_runner import catalog_for, run_tap

STREAMS = {"currencies", "pipelines"}


@pytest.fixture
def catalog(sandbox):
    return catalog_for(sandbox, STREAMS)


@pytest.fixture
def config(sandbox, secret_ledger):
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.issue_refresh_token(),
        "oauth_url": sandbox.url,
    }


@pytest.fixture
def no_browser(monkeypatch):
    """Fail the test if anything tries to open a browser."""

    def refuse(url, *args, **kwargs):
        raise AssertionError("a browser was opened")

    monkeypatch.setattr(webbrowser, "open", refuse)


def stored(config) -> dict:
    return stored_entry(store_path_from_config(config))


def time_passes(sandbox, config, seconds=3600):
    """An hour goes by between scheduled runs: the stored access token has expired."""
    sandbox.advance_clock(seconds)
    expire_stored_access_token(store_path_from_config(config))


def live_refresh_tokens(sandbox) -> set[str]:
    return set(sandbox.oauth.refresh_tokens)


def test_next_run_reuses_the_stored_access_token(sandbox, config, catalog, secret_ledger, capsys):
    first = run_tap(config, catalog=catalog).messages
    assert record_count(first, "pipelines") == sandbox.expected_counts()["pipelines"]
    assert len(refresh_calls(sandbox)) == 1
    path = store_path_from_config(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = run_tap(config, catalog=catalog).messages
    assert record_count(second, "pipelines") == record_count(first, "pipelines")
    assert len(refresh_calls(sandbox)) == 1  # no second refresh
    out = capsys.readouterr()
    secret_ledger.assert_absent(json.dumps(first), json.dumps(second), out.out, out.err)


def test_rotation_three_scheduled_runs_keep_the_newest_refresh_token(
    sandbox, config, catalog, secret_ledger, no_browser, capsys
):
    original = config["refresh_token"]
    for run in range(3):
        if run:
            time_passes(sandbox, config)
        messages = run_tap(config, catalog=catalog).messages
        assert record_count(messages, "currencies") == sandbox.expected_counts()["currencies"]
        secret_ledger.assert_absent(json.dumps(messages))
    assert [call["status"] for call in refresh_calls(sandbox)] == [200, 200, 200]
    # The sandbox rotated three times: only the newest refresh token still works, the
    # store holds it, and the config's (never updated) original is long dead.
    data = stored(config)
    assert live_refresh_tokens(sandbox) == {data["refresh_token"]}
    assert original not in live_refresh_tokens(sandbox)
    assert refresh_token_fingerprint(original) in data["replaced_refresh_tokens"]
    out = capsys.readouterr()
    secret_ledger.assert_absent(out.out, out.err, json.dumps(data["replaced_refresh_tokens"]))


def test_a_new_refresh_token_in_the_config_beats_an_older_store(sandbox, config, catalog):
    run_tap(config, catalog=catalog)
    old_chain = stored(config)["refresh_token"]
    # The user authorized again elsewhere and pasted the new refresh token into the
    # config; the store's authorization is revoked, so only the new token can work.
    sandbox.oauth.revoke({"token": old_chain})
    config = {**config, "refresh_token": sandbox.issue_refresh_token()}
    time_passes(sandbox, config)
    messages = run_tap(config, catalog=catalog).messages
    assert record_count(messages, "currencies") > 0
    data = stored(config)
    assert data["refresh_token"] in live_refresh_tokens(sandbox)
    assert refresh_token_fingerprint(config["refresh_token"]) in data["replaced_refresh_tokens"]


def test_config_without_refresh_token_runs_from_the_store(sandbox, config, catalog, no_browser):
    run_tap(config, catalog=catalog)
    from_store_only = {key: value for key, value in config.items() if key != "refresh_token"}
    time_passes(sandbox, config)
    messages = run_tap(from_store_only, catalog=catalog).messages
    assert record_count(messages, "currencies") > 0
    assert len(refresh_calls(sandbox)) == 2


def test_discovery_does_not_refresh_while_the_stored_token_is_valid(sandbox, config, catalog):
    run_tap(config, catalog=catalog)
    before = len(sandbox.token_calls)
    tap = TapPipedrive(config=config)
    assert tap.catalog_dict["streams"]
    assert len(sandbox.token_calls) == before


def test_refresh_mode_without_any_token_says_to_login(sandbox, no_browser):
    config = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "oauth_url": sandbox.url,
    }
    with pytest.raises(ConfigError) as caught:
        TapPipedrive(config=config)
    message = str(caught.value)
    assert "tap-pipedrive --login" in message
    assert str(store_path_from_config(config)) in message
    assert "\n" not in message
    assert sandbox.token_calls == []


def test_off_mode_uses_the_access_token_as_given_and_never_refreshes(
    sandbox, config, catalog, no_browser
):
    access_token = build_authenticator(config).ensure_token()
    calls = len(sandbox.token_calls)
    store_file = store_path_from_config(config)
    store_file.unlink()
    off = {**config, "access_token": access_token, "oauth_mode": "off", "api_url": sandbox.url}
    messages = run_tap(off, catalog=catalog).messages
    assert record_count(messages, "currencies") > 0
    assert len(sandbox.token_calls) == calls
    assert not store_file.exists()


def test_off_mode_with_an_expired_access_token_fails_before_any_request(sandbox, config):
    off = {
        **config,
        "access_token": "expired-access-token-value",
        "token_expires_at": "2020-01-01T00:00:00Z",
        "oauth_mode": "off",
        "api_url": sandbox.url,
    }
    with pytest.raises(ConfigError, match="oauth_mode is 'off'") as caught:
        build_authenticator(off)
    assert "expired-access-token-value" not in str(caught.value)
    assert sandbox.token_calls == []


def test_unknown_oauth_mode_is_one_clear_line(config):
    with pytest.raises(
        ConfigError, match="oauth_mode must be one of get_and_refresh, refresh, off"
    ):
        build_authenticator({**config, "oauth_mode": "sometimes"})


def login_config(sandbox) -> dict:
    """get_and_refresh with an OAuth app and nothing stored: a sync must log in first."""
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "oauth_url": sandbox.url,
        "oauth_mode": "get_and_refresh",
        "redirect_uri": f"http://localhost:{free_port()}/callback",
    }


def test_get_and_refresh_logs_in_when_nothing_is_stored_then_reuses(
    sandbox, catalog, monkeypatch, secret_ledger, capsys
):
    browser = ScriptedBrowser()
    monkeypatch.setattr(webbrowser, "open", browser)
    config = login_config(sandbox)
    first = run_tap(config, catalog=catalog).messages
    browser.join()
    assert len(browser.opened) == 1
    assert browser.pages[0][0] == 200 and "authorized" in browser.pages[0][1]
    assert record_count(first, "currencies") > 0
    assert [call["status"] for call in code_calls(sandbox)] == [200]
    assert stored(config)["refresh_token"] in live_refresh_tokens(sandbox)
    # The next run finds the stored tokens: no browser, no new authorization.
    second = run_tap(config, catalog=catalog).messages
    assert record_count(second, "currencies") > 0
    assert len(browser.opened) == 1
    assert len(code_calls(sandbox)) == 1
    out = capsys.readouterr()
    # Singer messages own stdout: the login spoke only through the log (stderr).
    assert all(line.startswith("{") for line in out.out.splitlines() if line.strip())
    secret_ledger.assert_absent(json.dumps(first), json.dumps(second), out.out, out.err)


def test_building_the_authenticator_never_starts_a_login(sandbox, monkeypatch):
    """get_and_refresh with nothing stored: the builder only says that a login is needed.

    Running it is the command layer's decision (auth.cli.authenticator_for_run, which
    the sync above goes through).
    """
    opened = []

    def browser(url, *args, **kwargs):
        opened.append(url)
        raise KeyboardInterrupt  # ends a login at once, should one start

    monkeypatch.setattr(webbrowser, "open", browser)
    config = login_config(sandbox)
    with pytest.raises(LoginRequired, match="get_and_refresh needs a login first") as raised:
        build_authenticator(config)
    # Uncaught, it is one clear line like any other config problem.
    assert isinstance(raised.value, ConfigError)
    assert raised.value.store.path == store_path_from_config(config)
    assert opened == []
    assert code_calls(sandbox) == []


def test_authenticator_in_refresh_mode_uses_the_real_store(config):
    authenticator = build_authenticator(config)
    assert isinstance(authenticator, PipedriveOAuthAuthenticator)
    assert authenticator.store is not None
    assert authenticator.store.path == store_path_from_config(config)
