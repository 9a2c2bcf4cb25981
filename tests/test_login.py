"""`tap-pipedrive --login` and the JSON helpers, run as the user runs them (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.parse

import pytest

from tap_pipedrive.auth.login import OAuthClient, new_state
from tap_pipedrive.auth.store import refresh_token_fingerprint, store_path_from_config
from tests.support.oauth import (
    REPO_ROOT,
    code_calls,
    consent,
    error_lines,
    free_port,
    occupied_port,
    refresh_calls,
    run_tap_cli,
    stored_entry,
    tap_command,
    tap_env,
    visit,
    written_secrets,
)

# Every output of every test here is scanned for every secret the sandbox issued.
_OUTPUTS: list[str] = []


@pytest.fixture(autouse=True)
def _no_secret_in_any_output(secret_ledger):
    _OUTPUTS.clear()
    yield
    secret_ledger.assert_absent(*_OUTPUTS)


def record(out: str, err: str) -> tuple[str, str]:
    _OUTPUTS.extend([out, err])
    return out, err


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    result = run_tap_cli(*args, **kwargs)
    record(result.stdout, result.stderr)
    return result


@pytest.fixture
def redirect_uri() -> str:
    return f"http://localhost:{free_port()}/callback"


@pytest.fixture
def base_config(sandbox, redirect_uri, secret_ledger) -> dict:
    return {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "oauth_url": sandbox.url,
        "api_url": sandbox.url,
        "redirect_uri": redirect_uri,
    }


@pytest.fixture
def config_file(tmp_path, base_config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base_config, "start_date": "2024-01-01T00:00:00Z"}))
    return path


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_one_clean_error(result, fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def authorization_url(config: dict) -> str:
    """A consent URL as the JSON helper makes it (that helper has its own test)."""
    return OAuthClient.from_config(config).authorization_url(new_state())


# --- no browser: URL out, redirect in -------------------------------------------------------
def start_no_browser_login(*args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        tap_command("--login", "--no-browser", *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or tap_env(),
        cwd=REPO_ROOT,
    )


def test_no_browser_login_through_stdin_writes_config_and_store(
    sandbox, config_file, base_config, secret_ledger
):
    with start_no_browser_login("--config", str(config_file)) as process:
        url = process.stdout.readline().strip()
        assert url.startswith(f"{sandbox.url}/oauth/authorize?")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert query["client_id"] == [sandbox.client_id]
        assert query["redirect_uri"] == [base_config["redirect_uri"]]
        redirect = consent(url)
        out, err = record(*process.communicate(redirect + "\n", timeout=60))
    assert process.returncode == 0, err
    written = json.loads(config_file.read_text())
    # Merged: the user's keys are all still there, the tokens were added.
    assert written["start_date"] == "2024-01-01T00:00:00Z"
    assert written["client_id"] == sandbox.client_id
    assert written["refresh_token"] in sandbox.oauth.refresh_tokens
    assert written["api_domain"] == sandbox.url
    assert written["token_expires_at"].endswith("Z")
    assert sandbox.oauth.access_valid(written["access_token"])
    assert mode(config_file) == 0o600
    store = store_path_from_config(base_config)
    assert stored_entry(store)["refresh_token"] == written["refresh_token"]
    assert mode(store) == 0o600
    # The summary names the company, the scopes and the files; never a secret.
    assert sandbox.url in out and "deals:read" in out
    assert str(config_file) in out and str(store) in out
    secret_ledger.assert_absent(out, err)
    assert [call["status"] for call in code_calls(sandbox)] == [200]
    # The next sync uses these tokens without refreshing them.
    result = cli("--config", str(config_file), "--discover")
    assert result.returncode == 0, result.stderr
    assert refresh_calls(sandbox) == []
    secret_ledger.assert_absent(result.stdout, result.stderr)


def test_no_browser_login_accepts_a_bare_code_and_creates_the_config_file(
    sandbox, tmp_path, base_config, secret_ledger
):
    target = tmp_path / "new" / "config.json"
    flags = [
        "--client-id",
        sandbox.client_id,
        "--redirect-uri",
        base_config["redirect_uri"],
        "--config",
        str(target),
    ]
    env = tap_env(
        TAP_PIPEDRIVE_CLIENT_SECRET=sandbox.client_secret, TAP_PIPEDRIVE_OAUTH_URL=sandbox.url
    )
    with start_no_browser_login(*flags, "--config", "ENV", env=env) as process:
        url = process.stdout.readline().strip()
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(consent(url)).query)["code"][0]
        out, err = record(*process.communicate(code + "\n", timeout=60))
    assert process.returncode == 0, err
    written = json.loads(target.read_text())
    assert written["client_id"] == sandbox.client_id
    assert written["redirect_uri"] == base_config["redirect_uri"]
    assert written["refresh_token"] in sandbox.oauth.refresh_tokens
    # The secret came from the environment, so it is not copied into the file.
    assert "client_secret" not in written
    assert mode(target) == 0o600
    secret_ledger.assert_absent(out, err)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda query: {**query, "state": ["forged-state-value"]}, "state mismatch"),
        (lambda query: {k: v for k, v in query.items() if k != "state"}, "state mismatch"),
    ],
    ids=["wrong-state", "missing-state"],
)
def test_no_browser_login_rejects_a_redirect_for_another_state(
    sandbox, config_file, tamper, message, secret_ledger
):
    before = config_file.read_text()
    with start_no_browser_login("--config", str(config_file)) as process:
        url = process.stdout.readline().strip()
        redirect = urllib.parse.urlsplit(consent(url))
        query = tamper(urllib.parse.parse_qs(redirect.query))
        pasted = redirect._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
        out, err = record(*process.communicate(pasted + "\n", timeout=60))
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_one_clean_error(result, message)
    assert code_calls(sandbox) == []  # the code was never spent
    assert config_file.read_text() == before
    secret_ledger.assert_absent(out, err)


def test_no_browser_login_reports_user_denied(sandbox, config_file, secret_ledger):
    with start_no_browser_login("--config", str(config_file)) as process:
        url = process.stdout.readline().strip()
        out, err = record(*process.communicate(consent(url, "deny") + "\n", timeout=60))
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_one_clean_error(result, "denied in the browser (user_denied)")
    assert sandbox.token_calls == []


def test_no_browser_login_with_nothing_on_stdin_fails_cleanly(config_file):
    with start_no_browser_login("--config", str(config_file)) as process:
        out, err = record(*process.communicate("", timeout=60))
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_one_clean_error(result, "No redirect URL or code was given on stdin")


# --- code exchange helper: reuse and expiry ---------------------------------------------
def test_exchange_helper_prints_json_and_refuses_a_reused_code(
    sandbox, config_file, base_config, secret_ledger
):
    state = "state-from-my-web-app"
    helper = cli("--config", str(config_file), "--oauth-authorization-url", "--oauth-state", state)
    assert helper.returncode == 0, helper.stderr
    start = json.loads(helper.stdout)
    assert start["state"] == state
    assert start["redirect_uri"] == base_config["redirect_uri"]
    assert start["authorization_url"].startswith(f"{sandbox.url}/oauth/authorize?")
    redirect = consent(start["authorization_url"])
    first = cli(
        "--config", str(config_file), "--oauth-exchange-code", redirect, "--oauth-state", state
    )
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["api_domain"] == sandbox.url
    assert body["token_store"] == str(store_path_from_config(base_config))
    assert body["config_file"] == str(config_file)
    assert "access_token" not in body and "refresh_token" not in body
    again = cli("--config", str(config_file), "--oauth-exchange-code", redirect)
    assert_one_clean_error(again, "already used")
    assert [call["status"] for call in code_calls(sandbox)] == [200, 400]
    secret_ledger.assert_absent(first.stdout, first.stderr, again.stdout, again.stderr)


def test_exchange_helper_refuses_an_expired_code(sandbox, config_file, base_config, secret_ledger):
    redirect = consent(authorization_url(base_config))
    sandbox.advance_clock(301)  # Pipedrive's codes live five minutes
    result = cli("--config", str(config_file), "--oauth-exchange-code", redirect)
    assert_one_clean_error(result, "expired (codes are valid for 5 minutes)")
    assert "refresh_token" not in json.loads(config_file.read_text())
    secret_ledger.assert_absent(result.stdout, result.stderr)


def test_exchange_helper_checks_the_state_it_is_given(sandbox, config_file, base_config):
    redirect = consent(authorization_url(base_config))
    result = cli(
        "--config",
        str(config_file),
        "--oauth-exchange-code",
        redirect,
        "--oauth-state",
        "some-other-state",
    )
    assert_one_clean_error(result, "state mismatch")
    assert code_calls(sandbox) == []


def test_exchange_helper_can_hand_the_tokens_to_a_web_app(sandbox, config_file, base_config):
    redirect = consent(authorization_url(base_config))
    result = run_tap_cli(
        "--config", str(config_file), "--oauth-exchange-code", redirect, "--include-tokens"
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    stored = stored_entry(store_path_from_config(base_config))
    assert body["refresh_token"] == stored["refresh_token"]
    assert body["access_token"] == stored["access_token"]
    # Asked for on stdout only; the log never carries them.
    assert body["refresh_token"] not in result.stderr
    assert body["access_token"] not in result.stderr


def test_refresh_helper_refreshes_now_and_keeps_the_rotated_token(
    sandbox, config_file, base_config, secret_ledger
):
    redirect = consent(authorization_url(base_config))
    assert cli("--config", str(config_file), "--oauth-exchange-code", redirect).returncode == 0
    login_refresh_token = json.loads(config_file.read_text())["refresh_token"]
    result = cli("--config", str(config_file), "--oauth-refresh")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["refreshed"] is True
    assert body["api_domain"] == sandbox.url
    assert [call["status"] for call in refresh_calls(sandbox)] == [200]
    stored = stored_entry(store_path_from_config(base_config))
    assert stored["refresh_token"] in sandbox.oauth.refresh_tokens
    assert stored["refresh_token"] != login_refresh_token  # rotated, and kept
    assert refresh_token_fingerprint(login_refresh_token) in stored["replaced_refresh_tokens"]
    secret_ledger.add(*written_secrets([store_path_from_config(base_config)]))
    secret_ledger.assert_absent(result.stdout, result.stderr)


def test_exchange_helper_warns_when_a_state_goes_unchecked(sandbox, config_file, base_config):
    redirect = consent(authorization_url(base_config))
    result = cli("--config", str(config_file), "--oauth-exchange-code", redirect)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "carries a state but no --oauth-state was given" in warnings[0]
    assert "state is not checked" in warnings[0]
    # A bare code carries no state: nothing to warn about.
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)["code"][0]
    other = cli("--config", str(config_file), "--oauth-exchange-code", code)
    assert "--oauth-state" not in other.stderr


# --- the client secret: command line or stdin ------------------------------------------
@pytest.fixture
def config_without_secret(tmp_path, base_config):
    path = tmp_path / "config.json"
    public = {key: value for key, value in base_config.items() if key != "client_secret"}
    path.write_text(json.dumps(public))
    return path


def test_a_client_secret_on_the_command_line_is_warned_about(sandbox, config_without_secret):
    result = cli(
        "--config",
        str(config_without_secret),
        "--oauth-authorization-url",
        "--client-secret",
        sandbox.client_secret,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "WARNING" in lines[0]
    assert "visible to other users of this machine (ps)" in lines[0]
    assert "--client-secret -" in lines[0]
    assert sandbox.client_secret not in result.stderr


def test_no_browser_login_reads_the_client_secret_then_the_redirect_from_stdin(
    sandbox, config_without_secret, base_config, secret_ledger
):
    with start_no_browser_login(
        "--config", str(config_without_secret), "--client-secret", "-"
    ) as process:
        process.stdin.write(sandbox.client_secret + "\n")
        process.stdin.flush()
        url = process.stdout.readline().strip()
        assert url.startswith(f"{sandbox.url}/oauth/authorize?")
        out, err = record(*process.communicate(consent(url) + "\n", timeout=60))
    assert process.returncode == 0, err
    assert "visible to other users" not in err
    written = json.loads(config_without_secret.read_text())
    assert written["refresh_token"] in sandbox.oauth.refresh_tokens
    # Like any setting given as a flag, it is saved so that the file is complete (0600).
    assert written["client_secret"] == sandbox.client_secret
    assert mode(config_without_secret) == 0o600
    assert [call["status"] for call in code_calls(sandbox)] == [200]
    secret_ledger.assert_absent(out, err)


def test_exchange_helper_reads_the_client_secret_from_stdin(
    sandbox, config_without_secret, base_config
):
    redirect = consent(authorization_url(base_config))
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)["code"][0]
    flags = ["--config", str(config_without_secret), "--client-secret", "-"]
    result = cli(*flags, "--oauth-exchange-code", code, input=sandbox.client_secret + "\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["api_domain"] == sandbox.url
    assert result.stderr == ""
    empty = cli(*flags, "--oauth-exchange-code", code, input="\n")
    assert_one_clean_error(empty, "--client-secret -: no client secret on the first line")


# --- the loopback flow's failure modes ----------------------------------------------------
def test_login_with_the_port_in_use_is_one_line(sandbox, config_file):
    with occupied_port() as port:
        result = cli(
            "--config",
            str(config_file),
            "--login",
            "--redirect-uri",
            f"http://localhost:{port}/callback",
            env=tap_env(BROWSER="false"),
        )
    assert_one_clean_error(result, f"Cannot listen on 127.0.0.1:{port}")
    assert "in use" in result.stderr
    assert sandbox.token_calls == []


def test_login_refuses_a_redirect_uri_that_is_not_loopback(config_file):
    # More addresses are checked in-process in test_login_units.py.
    result = cli(
        "--config",
        str(config_file),
        "--login",
        "--redirect-uri",
        "https://example.com/callback",
        env=tap_env(BROWSER="false"),
    )
    assert_one_clean_error(result, "is not a loopback address")
    assert "--no-browser" in result.stderr


def test_login_times_out_cleanly(config_file):
    result = cli(
        "--config",
        str(config_file),
        "--login",
        "--login-timeout",
        "1",
        env=tap_env(BROWSER="true"),  # a "browser" that opens nothing
    )
    assert_one_clean_error(result, "No answer from the browser within 1 s")
    assert "refresh_token" not in json.loads(config_file.read_text())


def test_login_survives_stray_requests_and_completes(sandbox, config_file, redirect_uri):
    with subprocess.Popen(
        tap_command("--config", str(config_file), "--login", "--login-timeout", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tap_env(BROWSER="true"),  # a "browser" that opens nothing: the test is the user
        cwd=REPO_ROOT,
    ) as process:
        seen = ""
        deadline = time.monotonic() + 30
        while "Waiting for the authorization" not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()
        url = next(line for line in seen.splitlines() if "/oauth/authorize?" in line).strip()
        # Another local program, an old tab, a forged link: none of them ends the login.
        assert visit(f"{redirect_uri}?x")[0] == 400
        assert visit(redirect_uri.replace("/callback", "/favicon.ico"))[0] == 404
        assert visit(f"{redirect_uri}?code=c0de&state=0ther-st4te")[0] == 400
        status, page = visit(consent(url))
        out, err = record(*process.communicate(timeout=60))
        record(seen, "")
    assert process.returncode == 0, seen + err
    assert status == 200 and "tap-pipedrive is authorized" in page
    assert f"Authorized tap-pipedrive for {sandbox.url}" in out
    warnings = [line for line in (seen + err).splitlines() if "Ignored a request" in line]
    assert len(warnings) == 1 and "does not carry this login's state" in warnings[0]
    assert "c0de" not in seen + err
    assert json.loads(config_file.read_text())["refresh_token"] in sandbox.oauth.refresh_tokens


def test_login_ctrl_c_is_one_line_and_exit_130(config_file):
    with subprocess.Popen(
        tap_command("--config", str(config_file), "--login"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tap_env(BROWSER="true"),
        cwd=REPO_ROOT,
    ) as process:
        deadline = time.monotonic() + 30
        seen = ""
        while "Waiting for the authorization" not in seen and time.monotonic() < deadline:
            seen += process.stderr.readline()
        assert "Waiting for the authorization" in seen
        process.send_signal(signal.SIGINT)
        out, err = record(*process.communicate(timeout=30))
        record(seen, "")
    result = subprocess.CompletedProcess(process.args, process.returncode, out, seen + err)
    assert result.returncode == 130
    assert_one_clean_error(result, "Login cancelled (Ctrl-C)")


def test_login_without_client_secret_names_the_setting(tmp_path, sandbox):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"client_id": sandbox.client_id}))
    result = cli("--config", str(config), "--login", env=tap_env(BROWSER="false"))
    assert_one_clean_error(result, "needs client_secret")


def test_standard_singer_flags_still_work(config_file):
    about = cli("--about", "--format", "json")
    assert about.returncode == 0
    settings = json.loads(about.stdout)["settings"]["properties"]
    for name in ("oauth_mode", "oauth_settings_location", "redirect_uri"):
        assert name in settings
    assert settings["oauth_mode"]["enum"] == ["get_and_refresh", "refresh", "off"]
    version = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert version.returncode == 0 and "tap-pipedrive" in version.stdout
