"""One OAuth app, several companies: each config reads its own company, always.

The sandbox serves two companies behind one OAuth server: the default one
(company id 7001) and "globex" (7002), each on its own loopback port (its
``api_domain``) with its own records. Webhook records carry the company id, so every
sync below proves which company it read.
"""

from __future__ import annotations

import json
import re
import subprocess
import webbrowser
from pathlib import Path

import pytest

from tap_pipedrive.auth.modes import build_authenticator
from tap_pipedrive.auth.store import refresh_token_fingerprint, store_path_from_config
from tap_pipedrive.errors import ConfigError
from tap_pipedrive.tap import TapPipedrive
from tests.support.oauth import (
    REPO_ROOT,
    ScriptedBrowser,
    consent,
    expire_stored_access_token,
    free_port,
    refresh_calls,
    stored_entry,
    tap_command,
    tap_env,
    written_secrets,
)
from tests.support.tap_runner import catalog_for, run_tap

STREAMS = {"webhooks", "users"}


@pytest.fixture
def globex(sandbox):
    return sandbox.add_company("globex")


@pytest.fixture
def catalog_file(sandbox, tmp_path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_for(sandbox, STREAMS)))
    return path


def app_settings(sandbox) -> dict:
    """The one OAuth app both companies authorize (no api_url: api_domain decides)."""
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "oauth_url": sandbox.url,
        "redirect_uri": "http://localhost:33333/callback",
    }


def login(config_file: Path, settings: dict, company: str | None) -> dict:
    """`tap-pipedrive --login --no-browser --config FILE`, consenting for ``company``."""
    config_file.write_text(json.dumps(settings))
    with subprocess.Popen(
        tap_command("--login", "--no-browser", "--config", str(config_file)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tap_env(),
        cwd=REPO_ROOT,
    ) as process:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        _, err = process.communicate(consent(url, "allow", company) + "\n", timeout=120)
    assert process.returncode == 0, err[-2000:]
    return json.loads(config_file.read_text())


def company_of(messages: list[dict]) -> set[int]:
    """The company ids of the webhook records a sync delivered."""
    return {
        m["record"]["company_id"]
        for m in messages
        if m.get("type") == "RECORD" and m["stream"] == "webhooks"
    }


def user_names(messages: list[dict]) -> set[str]:
    return {
        m["record"]["name"]
        for m in messages
        if m.get("type") == "RECORD" and m["stream"] == "users"
    }


def names_of(company) -> set[str]:
    return {user["name"] for user in company.dataset["users"]}


def run_sync(config_file: Path, catalog_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        tap_command("--config", str(config_file), "--catalog", str(catalog_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tap_env(),
        cwd=REPO_ROOT,
    )


def finish(process: subprocess.Popen[str]) -> list[dict]:
    with process:
        out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_login_to_b_never_hands_company_b_to_the_config_of_company_a(
    sandbox, globex, tmp_path, catalog_file
):
    """The reproduction: login a.json to A, b.json to B (same app), sync a.json."""
    settings = app_settings(sandbox)
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    a_config = login(a_file, settings, "sandbox-company")
    b_config = login(b_file, settings, "globex")
    assert a_config["api_domain"] == sandbox.url and b_config["api_domain"] == globex.url
    a_messages = finish(run_sync(a_file, catalog_file))
    assert company_of(a_messages) == {sandbox.company.id}
    assert user_names(a_messages) == names_of(sandbox)
    b_messages = finish(run_sync(b_file, catalog_file))
    assert company_of(b_messages) == {globex.company.id}
    assert user_names(b_messages) == names_of(globex)
    # Both authorizations are alive and kept side by side in the one store.
    store = store_path_from_config(settings)
    assert stored_entry(store, sandbox.url)["refresh_token"] == a_config["refresh_token"]
    assert stored_entry(store, globex.url)["refresh_token"] == b_config["refresh_token"]
    assert {a_config["refresh_token"], b_config["refresh_token"]} <= set(
        sandbox.oauth.refresh_tokens
    )


def test_interleaved_logins_and_syncs_in_parallel_processes_keep_companies_apart(
    sandbox, globex, tmp_path, catalog_file, secret_ledger
):
    settings = app_settings(sandbox)
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    login(a_file, settings, "sandbox-company")
    first_a = finish(run_sync(a_file, catalog_file))
    login(b_file, settings, "globex")
    store = store_path_from_config(settings)
    outputs = [first_a]
    for hour in range(3):
        # Three processes start at once, two of them for company A. From the second
        # round on, an hour has passed and both access tokens have expired; the token
        # endpoint is slow then, so the processes overlap inside their refreshes.
        before = len(refresh_calls(sandbox))
        if hour:
            sandbox.advance_clock(3600)
            expire_stored_access_token(store, sandbox.url)
            expire_stored_access_token(store, globex.url)
            sandbox.faults.add("slow", path=r"/oauth/token", count=1, delay=1.0)
        processes = [run_sync(path, catalog_file) for path in (a_file, b_file, a_file)]
        results = [finish(process) for process in processes]
        outputs += results
        assert [company_of(result) for result in results] == [
            {sandbox.company.id},
            {globex.company.id},
            {sandbox.company.id},
        ]
        assert user_names(results[1]) == names_of(globex)
        # One refresh per company, whatever the number of processes (none while the
        # login's access tokens are valid): the lock holds within each company, and
        # rotation is kept for each.
        statuses = [call["status"] for call in refresh_calls(sandbox)[before:]]
        assert statuses == ([200, 200] if hour else [])
    live = set(sandbox.oauth.refresh_tokens)
    assert live == {
        stored_entry(store, sandbox.url)["refresh_token"],
        stored_entry(store, globex.url)["refresh_token"],
    }
    # The configs' original refresh tokens were rotated away, each within its company.
    for path, domain in ((a_file, sandbox.url), (b_file, globex.url)):
        original = json.loads(path.read_text())["refresh_token"]
        assert original not in live
        assert (
            refresh_token_fingerprint(original)
            in stored_entry(store, domain)["replaced_refresh_tokens"]
        )
    secret_ledger.add(*written_secrets([store, a_file, b_file]))
    secret_ledger.assert_absent(json.dumps(outputs))


def test_without_refresh_token_several_companies_need_api_domain(sandbox, globex, tmp_path):
    """The Meltano pattern: client id and secret only, the store supplies the tokens."""
    settings = app_settings(sandbox)
    login(tmp_path / "a.json", settings, "sandbox-company")
    login(tmp_path / "b.json", settings, "globex")
    with pytest.raises(ConfigError) as caught:
        TapPipedrive(config=settings)
    message = str(caught.value)
    assert "several companies" in message and "set api_domain" in message
    assert sandbox.url in message and globex.url in message
    assert "\n" not in message
    catalog = catalog_for(sandbox, STREAMS)
    messages = run_tap({**settings, "api_domain": f"{globex.url}/"}, catalog=catalog).messages
    assert company_of(messages) == {globex.company.id}
    messages = run_tap({**settings, "api_domain": sandbox.url}, catalog=catalog).messages
    assert company_of(messages) == {sandbox.company.id}
    with pytest.raises(
        ConfigError, match=re.escape("holds none for https://elsewhere.pipedrive.com")
    ):
        TapPipedrive(config={**settings, "api_domain": "https://elsewhere.pipedrive.com"})


def test_a_single_company_needs_no_api_domain(sandbox, globex, tmp_path):
    settings = app_settings(sandbox)
    login(tmp_path / "b.json", settings, "globex")
    messages = run_tap(settings, catalog=catalog_for(sandbox, STREAMS)).messages
    assert company_of(messages) == {globex.company.id}


def test_a_refresh_token_of_another_company_than_api_domain_ends_the_run(sandbox, globex, tmp_path):
    settings = app_settings(sandbox)
    a_config = login(tmp_path / "a.json", settings, "sandbox-company")
    # Company B's refresh token pasted into the config of company A.
    pasted = globex.issue_refresh_token()
    config = {**settings, "refresh_token": pasted, "api_domain": a_config["api_domain"]}
    with pytest.raises(ConfigError) as caught:
        run_tap(config, catalog=catalog_for(sandbox, STREAMS))
    message = str(caught.value)
    assert f"belongs to the company {globex.url}" in message and "api_domain" in message
    assert "\n" not in message
    assert globex.requests == []
    # Not one request, in any thread, carried company B's tokens to company A.
    assert [r.status for r in sandbox.requests if r.status == 401] == []
    # Within a run the refusal stays: no second refresh, no token taken.
    authenticator = build_authenticator({**config, "refresh_token": globex.issue_refresh_token()})
    with pytest.raises(ConfigError, match="belongs to the company"):
        authenticator.ensure_token()
    with pytest.raises(ConfigError, match="belongs to the company"):
        authenticator.ensure_token()
    assert authenticator.tokens.access_token is None
    assert len(refresh_calls(sandbox)) == 2
    # The refresh rotated company B's token: the new one is kept, in B's entry.
    store = store_path_from_config(settings)
    assert stored_entry(store, globex.url)["refresh_token"] in sandbox.oauth.refresh_tokens
    assert stored_entry(store, sandbox.url)["refresh_token"] == a_config["refresh_token"]


def test_a_store_written_for_another_oauth_url_is_not_adopted(sandbox, tmp_path):
    from pipedrive_sandbox import Sandbox

    settings = app_settings(sandbox)
    login(tmp_path / "a.json", settings, None)
    with Sandbox(seed=2, scale=0.05, burst_limit=None) as other:
        elsewhere = {**settings, "oauth_url": other.url}
        assert store_path_from_config(elsewhere) == store_path_from_config(settings)
        with pytest.raises(ConfigError, match="holds none"):
            TapPipedrive(config=elsewhere)
        assert other.token_calls == []
    assert sandbox.requests == []


def test_a_browser_login_during_a_run_for_another_company_is_refused(sandbox, globex, monkeypatch):
    """oauth_mode get_and_refresh: the config names company A, the user picks B."""
    browser = ScriptedBrowser(company="globex")
    monkeypatch.setattr(webbrowser, "open", browser)
    config = {
        **app_settings(sandbox),
        "redirect_uri": f"http://localhost:{free_port()}/callback",
        "oauth_mode": "get_and_refresh",
        "api_domain": sandbox.url,
    }
    with pytest.raises(ConfigError, match=f"belongs to the company {re.escape(globex.url)}"):
        run_tap(config, catalog=catalog_for(sandbox, STREAMS))
    browser.join()
    assert globex.requests == []
    assert [r for r in sandbox.requests if r.auth_kind == "bearer"] == []
    # The login is kept for company B, where a config for B will find it.
    store = store_path_from_config(config)
    assert stored_entry(store, globex.url)["refresh_token"] in sandbox.oauth.refresh_tokens
