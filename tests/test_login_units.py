"""The login building blocks in-process: redirect parsing, the callback server, the flows."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from click.testing import CliRunner

from tap_pipedrive.errors import ConfigError
from tap_pipedrive.login import (
    CallbackServer,
    LoginCancelled,
    LoginError,
    LoopbackRedirect,
    OAuthClient,
    Redirect,
    browser_login,
    new_state,
    no_browser_login,
    parse_pasted_redirect,
)
from tap_pipedrive.tap import TapPipedrive
from tests.support.oauth import (
    ScriptedBrowser,
    code_calls,
    consent,
    free_port,
    occupied_port,
    visit,
)


@pytest.fixture
def client(sandbox) -> OAuthClient:
    return OAuthClient.from_config(
        {
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "oauth_url": sandbox.url,
            "redirect_uri": f"http://localhost:{free_port()}/callback",
        }
    )


# --- redirect URIs and pasted answers ----------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "host", "port", "path"),
    [
        ("http://localhost:33333", "localhost", 33333, "/"),
        ("http://127.0.0.1:8080/oauth/callback", "127.0.0.1", 8080, "/oauth/callback"),
        ("http://localhost/", "localhost", 80, "/"),
    ],
)
def test_loopback_redirects_are_accepted_with_any_port(uri, host, port, path):
    assert LoopbackRedirect.parse(uri) == LoopbackRedirect(host=host, port=port, path=path)


@pytest.mark.parametrize(
    "uri",
    [
        "https://example.com/callback",
        "http://192.168.1.20:33333/",
        "https://localhost:33333/",
        "http://[::1]:33333/",
        "http://localhost.example.com:33333/",
        "http://localhost:notaport/",
    ],
)
def test_other_redirects_are_refused_in_one_line(uri):
    with pytest.raises(ConfigError, match="is not a loopback address") as caught:
        LoopbackRedirect.parse(uri)
    assert "\n" not in str(caught.value)


def test_pasted_redirect_url_query_or_bare_code():
    assert parse_pasted_redirect(" http://localhost:1/cb?code=abc123&state=s1 \n") == Redirect(
        code="abc123", state="s1"
    )
    assert parse_pasted_redirect("?code=abc123&state=s1") == Redirect(code="abc123", state="s1")
    assert parse_pasted_redirect("abc123") == Redirect(code="abc123")
    assert parse_pasted_redirect("http://x/cb?error=user_denied").error == "user_denied"
    with pytest.raises(LoginError, match="neither a redirect URL nor an authorization code"):
        parse_pasted_redirect("this is not a code")


def test_checked_code_order_of_checks():
    assert Redirect(code="c", state="s").checked_code("s") == "c"
    assert Redirect(code="c").checked_code(None) == "c"
    with pytest.raises(LoginError, match="user_denied"):
        Redirect(error="user_denied", state="s").checked_code("s")
    with pytest.raises(LoginError, match="state mismatch"):
        Redirect(code="c", state="other").checked_code("s")
    with pytest.raises(LoginError, match="neither a code nor an error"):
        Redirect(state="s").checked_code("s")


def test_client_settings_come_with_one_line_errors():
    with pytest.raises(ConfigError, match="needs client_id and client_secret"):
        OAuthClient.from_config({})
    with pytest.raises(ConfigError, match="redirect_uri must be an absolute"):
        OAuthClient.from_config({"client_id": "a", "client_secret": "b", "redirect_uri": "nope"})
    client = OAuthClient.from_config({"client_id": "a", "client_secret": "s3cr3t-value"})
    assert client.redirect_uri == "http://localhost:33333"
    assert "s3cr3t-value" not in repr(client)


def test_authorization_url_has_exactly_pipedrives_parameters(client, sandbox):
    state = new_state()
    url = urllib.parse.urlsplit(client.authorization_url(state))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sandbox.url}/oauth/authorize"
    assert urllib.parse.parse_qs(url.query) == {
        "client_id": [sandbox.client_id],
        "redirect_uri": [client.redirect_uri],
        "state": [state],
    }
    assert new_state() != state and len(state) >= 32


# --- the callback server -------------------------------------------------------------------
def test_callback_server_ignores_other_paths_and_answers_the_redirect():
    port = free_port()
    redirect = LoopbackRedirect.parse(f"http://localhost:{port}/callback")
    with CallbackServer(redirect, "expected") as server:
        assert server.server_address[0] == "127.0.0.1"
        assert visit(f"http://127.0.0.1:{port}/favicon.ico")[0] == 404
        status, page = visit(f"http://127.0.0.1:{port}/callback?code=c0de&state=expected")
        answer = server.wait(5)
    assert status == 200
    assert "tap-pipedrive is authorized" in page
    assert "c0de" not in page
    assert answer == Redirect(code="c0de", state="expected")


def test_callback_server_shows_a_failure_page_for_a_wrong_state():
    port = free_port()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "expected") as server:
        _, page = visit(f"http://127.0.0.1:{port}/?code=c0de&state=forged")
        answer = server.wait(5)
    assert "Authorization failed" in page and "state mismatch" in page
    with pytest.raises(LoginError, match="state mismatch"):
        answer.checked_code("expected")


def test_callback_server_on_a_busy_port_is_one_line():
    with occupied_port() as port, pytest.raises(LoginError, match="in use") as caught:
        CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s")
    assert "\n" not in str(caught.value)


def test_callback_server_times_out():
    redirect = LoopbackRedirect.parse(f"http://localhost:{free_port()}/")
    started = time.monotonic()
    with CallbackServer(redirect, "s") as server, pytest.raises(LoginError, match="within 0 s"):
        server.wait(0.3)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "interruption",
    # Ctrl-C reaches the waiting (main) thread as KeyboardInterrupt, or, inside a tap
    # run whose SIGINT handler the SDK installed, as SystemExit(0).
    [KeyboardInterrupt, SystemExit(0)],
    ids=["keyboard-interrupt", "sdk-signal-handler"],
)
def test_callback_server_turns_ctrl_c_into_a_cancelled_login(monkeypatch, interruption):
    redirect = LoopbackRedirect.parse(f"http://localhost:{free_port()}/")
    with CallbackServer(redirect, "s") as server:

        def interrupted(timeout):
            raise interruption

        monkeypatch.setattr(server._arrived, "wait", interrupted)
        with pytest.raises(LoginCancelled, match="Ctrl-C") as caught:
            server.wait(30)
    assert caught.value.exit_code == 130


def test_callback_server_is_closed_after_the_login():
    port = free_port()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s"):
        pass
    # The port is free again: another login can start right away.
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s"):
        pass


# --- flows against the sandbox ----------------------------------------------------------
def test_browser_login_allow(client, sandbox):
    browser = ScriptedBrowser("allow")
    lines: list[str] = []
    tokens = browser_login(client, timeout=30, echo=lines.append, open_browser=browser)
    browser.join()
    assert tokens.refresh_token in sandbox.oauth.refresh_tokens
    assert tokens.api_domain == sandbox.url
    assert tokens.scope and "deals:read" in tokens.scope
    assert browser.pages == [(200, browser.pages[0][1])]
    assert "tap-pipedrive is authorized" in browser.pages[0][1]
    assert any(client.redirect_uri in line for line in lines)


def test_browser_login_deny(client, sandbox):
    browser = ScriptedBrowser("deny")
    with pytest.raises(LoginError, match="user_denied"):
        browser_login(client, timeout=30, echo=lambda _: None, open_browser=browser)
    browser.join()
    assert "Authorization failed" in browser.pages[0][1]
    assert sandbox.token_calls == []


def test_browser_login_when_no_browser_can_start_still_shows_the_url(client, sandbox):
    lines: list[str] = []
    with pytest.raises(LoginError, match="No answer from the browser"):
        browser_login(client, timeout=0.5, echo=lines.append, open_browser=lambda url: False)
    text = "\n".join(lines)
    assert f"{sandbox.url}/oauth/authorize?" in text
    assert "open the URL above yourself" in text


def test_no_browser_login_in_process(client, sandbox):
    shown: list[str] = []

    def paste() -> str:
        return consent(shown[0])

    tokens = no_browser_login(client, read_line=paste, echo=lambda _: None, show_url=shown.append)
    assert tokens.refresh_token in sandbox.oauth.refresh_tokens
    assert [call["status"] for call in code_calls(sandbox)] == [200]


# --- command line usage errors ------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-browser"], "--no-browser only applies to --login"),
        (["--include-tokens"], "--include-tokens only applies"),
        (["--login", "--include-tokens"], "--include-tokens only applies"),
        (["--oauth-refresh", "--oauth-state", "s"], "--oauth-state only applies"),
        (["--oauth-authorization-url", "--no-browser"], "--no-browser only applies to --login"),
        (["--login", "--discover"], "--login cannot be combined with --discover"),
        (["--oauth-refresh", "--catalog", "x.json"], "--oauth-refresh cannot be combined"),
        (["--login", "--oauth-refresh"], "Choose one of --login, --oauth-refresh"),
    ],
)
def test_flag_misuse_is_a_usage_error(args, message):
    result = CliRunner().invoke(TapPipedrive.get_singer_command(), args)
    assert result.exit_code == 2
    assert message in result.output
