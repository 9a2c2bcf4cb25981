"""The login building blocks in-process: redirect parsing, the callback server, the flows."""

from __future__ import annotations

import getpass
import http.client
import io
import select
import socket
import threading
import time
import urllib.parse

import pytest
from click.testing import CliRunner

from tap_pipedrive.auth import login
from tap_pipedrive.auth.cli import read_client_secret
from tap_pipedrive.auth.login import (
    MAX_CALLBACK_CONNECTIONS,
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
from tap_pipedrive.errors import ConfigError
from tap_pipedrive.tap import TapPipedrive
from tests.support.oauth import (
    ScriptedBrowser,
    code_calls,
    consent,
    free_port,
    ipv6_loopback,
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
        assert server.addresses == (["127.0.0.1", "::1"] if ipv6_loopback() else ["127.0.0.1"])
        assert visit(f"http://127.0.0.1:{port}/favicon.ico")[0] == 404
        status, page = visit(f"http://127.0.0.1:{port}/callback?code=c0de&state=expected")
        answer = server.wait(5)
    assert status == 200
    assert "tap-pipedrive is authorized" in page
    assert "c0de" not in page
    assert answer == Redirect(code="c0de", state="expected")


def still_waiting(server: CallbackServer) -> bool:
    with pytest.raises(LoginError, match="No answer from the browser"):
        server.wait(0.3)
    return True


def test_only_this_logins_redirect_ends_the_wait():
    port = free_port()
    warnings: list[str] = []
    redirect = LoopbackRedirect.parse(f"http://localhost:{port}/")
    with CallbackServer(redirect, "expected", warn=warnings.append) as server:
        base = f"http://127.0.0.1:{port}"
        assert visit(f"{base}/favicon.ico")[0] == 404
        quiet = [f"{base}/", f"{base}/?x", f"{base}/?state=expected"]
        assert [visit(url)[0] for url in quiet] == [400, 400, 400]
        assert warnings == []  # noise is not worth a warning
        status, page = visit(f"{base}/?code=c0de&state=0ther-st4te")
        assert status == 400 and "still waiting" in page
        assert visit(f"{base}/?code=c0de")[0] == 400
        assert visit(f"{base}/?error=user_denied&state=0ther-st4te")[0] == 400
        assert len(warnings) == 1  # once per login, however many arrive
        assert "not carry this login's state" in warnings[0]
        assert still_waiting(server)
        status, page = visit(f"{base}/?code=real&state=expected")
        answer = server.wait(5)
    assert status == 200 and "tap-pipedrive is authorized" in page
    assert answer == Redirect(code="real", state="expected")
    assert not any("c0de" in line or "0ther-st4te" in line for line in warnings)


def test_the_browser_gets_its_page_before_the_login_closes_the_server(monkeypatch):
    # The login leaves the server as soon as the redirect is delivered; a page still being
    # written then would be cut off and the browser would show a connection error.
    original = login._CallbackHandler._respond

    def slow_respond(self, status, body):
        time.sleep(0.3)
        original(self, status, body)

    monkeypatch.setattr(login._CallbackHandler, "_respond", slow_respond)
    port = free_port()
    results: list[tuple[int, str]] = []
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "expected") as server:
        client = threading.Thread(
            target=lambda: results.append(visit(f"http://127.0.0.1:{port}/?code=c&state=expected"))
        )
        client.start()
        server.wait(5)
    client.join(10)
    assert results and results[0][0] == 200 and "authorized" in results[0][1]


def test_a_denial_with_this_logins_state_ends_the_wait():
    port = free_port()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "expected") as server:
        _, page = visit(f"http://127.0.0.1:{port}/?error=user_denied&state=expected")
        answer = server.wait(5)
    assert "Authorization failed" in page and "user_denied" in page
    with pytest.raises(LoginError, match="user_denied"):
        answer.checked_code("expected")


def get_with_host(port: int, path: str, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_callback_server_refuses_other_host_names():
    # A web page whose host name an attacker re-points at 127.0.0.1 (DNS rebinding)
    # sends its own name in Host.
    port = free_port()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/cb"), "s") as server:
        for host in (f"evil.example:{port}", "localhost", f"localhost:{port + 1}", ""):
            assert get_with_host(port, "/cb?code=c&state=s", host) == 400, host
        assert still_waiting(server)
        for host in (f"LOCALHOST:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert get_with_host(port, "/cb?x", host) == 400  # reaches the path check
        assert get_with_host(port, "/cb?code=c&state=s", f"localhost:{port}") == 200
        assert server.wait(5) == Redirect(code="c", state="s")


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no ::1")


@needs_ipv6
def test_a_localhost_redirect_holds_the_ipv6_loopback_too():
    port = free_port()
    with socket.create_server(("::1", port), family=socket.AF_INET6) as squatter:
        squatter.listen(1)
        with pytest.raises(LoginError, match=rf"Cannot listen on \[::1\]:{port}") as caught:
            CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s")
    assert "\n" not in str(caught.value)
    # The IPv4 half was released again: the next login can use the port.
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s") as server:
        # A browser that resolves localhost to ::1 reaches the login.
        status, _ = visit(f"http://[::1]:{port}/?code=c&state=s")
        assert status == 200
        assert server.wait(5) == Redirect(code="c", state="s")


@needs_ipv6
def test_a_127_0_0_1_redirect_listens_on_ipv4_only():
    port = free_port()
    with socket.create_server(("::1", port), family=socket.AF_INET6) as other:
        other.listen(1)
        with CallbackServer(LoopbackRedirect.parse(f"http://127.0.0.1:{port}/"), "s") as server:
            assert server.addresses == ["127.0.0.1"]


def test_without_an_ipv6_loopback_localhost_listens_on_ipv4(monkeypatch):
    # ::2 is not an address of this machine: binding it fails like ::1 where IPv6 is off.
    bindings = {**login.LOOPBACK_BINDINGS}
    bindings["localhost"] = (("127.0.0.1", socket.AF_INET), ("::2", socket.AF_INET6))
    monkeypatch.setattr(login, "LOOPBACK_BINDINGS", bindings)
    port = free_port()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s") as server:
        assert server.addresses == ["127.0.0.1"]
        assert visit(f"http://127.0.0.1:{port}/?code=c&state=s")[0] == 200
        assert server.wait(5) == Redirect(code="c", state="s")


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """Clients that connect and never send a request (a slowloris at rest)."""
    opened = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(client)
    return opened


def test_idle_connections_neither_pile_up_threads_nor_block_the_login(monkeypatch):
    monkeypatch.setattr(CallbackServer, "connection_seconds", 1.0, raising=False)
    port = free_port()
    before = threading.active_count()
    with CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s") as server:
        clients = idle_connections(port, 3 * MAX_CALLBACK_CONNECTIONS)
        try:
            time.sleep(0.5)
            handler_threads = threading.active_count() - before - 1  # minus the accept loop
            assert handler_threads <= MAX_CALLBACK_CONNECTIONS
            started = time.monotonic()
            status, _ = visit(f"http://127.0.0.1:{port}/?code=c&state=s")
            assert status == 200
            assert server.wait(30) == Redirect(code="c", state="s")
            # Waited for slots to free up, each idle client having one second.
            assert time.monotonic() - started < 15
        finally:
            for client in clients:
                client.close()


def test_a_client_sending_one_byte_at_a_time_is_cut_off(monkeypatch):
    monkeypatch.setattr(CallbackServer, "connection_seconds", 1.0, raising=False)
    port = free_port()
    with (
        CallbackServer(LoopbackRedirect.parse(f"http://localhost:{port}/"), "s"),
        socket.create_connection(("127.0.0.1", port), timeout=5) as client,
    ):
        started = time.monotonic()
        cut_off = False
        # Each byte comes well within the per-read timeout; only a deadline stops it.
        while not cut_off and time.monotonic() - started < 8:
            try:
                client.sendall(b"a")
                readable, _, _ = select.select([client], [], [], 0.1)
                cut_off = bool(readable) and client.recv(1024) == b""
            except OSError:
                cut_off = True
        elapsed = time.monotonic() - started
    assert cut_off
    assert elapsed < 5


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


# --- the client secret from stdin --------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_client_secret_from_a_terminal_is_asked_for_without_echo(monkeypatch):
    prompts: list[str] = []

    def hidden_prompt(prompt: str) -> str:
        prompts.append(prompt)
        return " typed-secret \n"

    monkeypatch.setattr(getpass, "getpass", hidden_prompt)
    terminal = _Terminal("the pasted redirect\n")
    assert read_client_secret(terminal) == "typed-secret"
    assert prompts == ["Client secret (not shown): "]
    assert terminal.readline() == "the pasted redirect\n"  # left for --no-browser


def test_client_secret_from_a_pipe_takes_only_the_first_line():
    piped = io.StringIO("piped-secret\nhttp://localhost:1/?code=c&state=s\n")
    assert read_client_secret(piped) == "piped-secret"
    assert piped.readline().startswith("http://localhost:1/")
    with pytest.raises(ConfigError, match="no client secret on the first line of stdin"):
        read_client_secret(io.StringIO(""))


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
