"""Credentials go only to configured hosts, and a hostile server ends a run in one line, soon.

Redirects (API and token endpoint), api_domain and URL checks, the proxy environment, and
the per-response size and time caps, against the sandbox and a server standing for a host
the user did not configure (``pipedrive_sandbox/elsewhere.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipedrive_sandbox.elsewhere import Elsewhere
from tap_pipedrive.auth.login import OAuthClient
from tap_pipedrive.errors import ConfigError, PipedriveError
from tap_pipedrive.http.transport import MAX_BODY_BYTES, check_api_domain
from tap_pipedrive.tap import TapPipedrive
from tests.support.delivery import SDK_CONTEXT_LINE, tap_environment, write_private_json
from tests.support.tap_runner import discover, sync_capturing

REPO_ROOT = Path(__file__).resolve().parents[1]
USERS = r"^/api/v1/users$"
ONE_TRY = {"max_retries": 1, "retry_base_seconds": 0}
SECRET_PASSWORD = "pw-that-must-not-show"


def _error_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if "| ERROR" in line and SDK_CONTEXT_LINE not in line
    ]


def _cli(config: dict, *args: str, tmp_path: Path, timeout: float = 120):
    """The tap as a user runs it: ``(completed process, seconds it took)``."""
    config_path = write_private_json(tmp_path / "config.json", config)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tap_pipedrive", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        env=tap_environment({"XDG_DATA_HOME": str(tmp_path / "xdg")}),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    return result, time.monotonic() - started


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _users_catalog(config: dict, tmp_path: Path) -> Path:
    catalog = discover(config, {"users"})
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog), encoding="utf-8")
    return path


# --- 1. API redirects -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_an_api_redirect_to_another_port_gets_no_credential(sandbox, api_config, status):
    with Elsewhere() as other:
        sandbox.faults.add("redirect", path=USERS, status=status, location=other.url)
        _, _, error = sync_capturing({**api_config, **ONE_TRY}, streams={"users"})
    # Not followed at all: the other host saw no request, so certainly no x-api-token.
    assert other.received == []
    assert isinstance(error, PipedriveError), error
    host = other.url.removeprefix("http://")
    assert f"a redirect to {host}: not followed" in str(error)
    assert "\n" not in str(error)


def test_an_api_redirect_ends_the_run_in_one_line(sandbox, api_config, tmp_path):
    config = {**api_config, **ONE_TRY}
    catalog = _users_catalog(config, tmp_path)
    with Elsewhere() as other:
        sandbox.faults.add("redirect", path=USERS, status=307, location=other.url, count=None)
        result, _ = _cli(config, "--catalog", str(catalog), tmp_path=tmp_path)
    assert other.with_credentials() == []
    assert "not followed" in _one_line(result)
    assert sandbox.api_token not in result.stdout + result.stderr


# --- 2. token endpoint redirects ------------------------------------------------------------
def _stolen_tokens(elsewhere_url: str) -> dict:
    return {
        "access_token": "elsewhere-access-token",
        "refresh_token": "elsewhere-refresh-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "api_domain": elsewhere_url,
    }


def _files_mentioning(root: Path, text: str) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and text in path.read_text(encoding="utf-8", errors="replace")
    ]


@pytest.mark.parametrize("status", [307, 308])
def test_a_refresh_redirected_elsewhere_sends_and_stores_nothing(
    sandbox, oauth_config, status, tmp_path
):
    store = tmp_path / "tokens.json"
    config = {**oauth_config, **ONE_TRY, "oauth_settings_location": str(store)}
    with Elsewhere() as other:
        other.token_answer = _stolen_tokens(other.url)
        sandbox.faults.add("redirect", path="/oauth/token", status=status, location=other.url)
        with pytest.raises(PipedriveError) as raised:
            TapPipedrive(config=config, validate_config=False, setup_mapper=False).api_root  # noqa: B018
    assert not [r for r in other.received if b"refresh_token" in r.body]
    assert other.received == []
    message = str(raised.value)
    assert "oauth_url" in message and "not followed" in message and "\n" not in message
    assert oauth_config["refresh_token"] not in message
    assert _files_mentioning(tmp_path, "elsewhere-") == []


@pytest.mark.parametrize("status", [307, 308])
def test_a_login_code_exchange_redirected_elsewhere_sends_nothing(sandbox, status):
    client = OAuthClient.from_config(
        {
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "oauth_url": sandbox.url,
        }
    )
    with Elsewhere() as other:
        other.token_answer = _stolen_tokens(other.url)
        sandbox.faults.add("redirect", path="/oauth/token", status=status, location=other.url)
        with pytest.raises(PipedriveError, match="oauth_url"):
            client.exchange_code("the-login-code")
    assert not [r for r in other.received if b"the-login-code" in r.body]
    assert other.received == []


# --- 3. URL checks --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("api_domain", "accepted"),
    [
        ("https://acme.pipedrive.com", True),
        ("https://acme.pipedrive.com/", True),
        ("https://127.0.0.2:1234", False),  # loopback, but not the configured host
        ("http://127.0.0.1:4321", True),  # the oauth_url's host, on a port of its own
        ("http://localhost:4321", False),  # loopback, but not the configured host name
        ("http://acme.pipedrive.com", False),
        ("https://acme.pipedrive.com.evil.invalid", False),
        ("https://evil.invalid", False),
        ("https://acme.pipedrive.com/api", False),
        ("https://user:pw@acme.pipedrive.com", False),
    ],
)
def test_which_api_domain_is_trusted(api_domain, accepted):
    config = {"oauth_url": "http://127.0.0.1:9"}
    if accepted:
        assert check_api_domain(api_domain, config) == api_domain.rstrip("/")
    else:
        with pytest.raises(ConfigError, match="api_domain"):
            check_api_domain(api_domain, config)


@pytest.mark.parametrize(
    "api_domain", ["http://localhost:{port}", "https://evil.invalid", "http://evil.invalid"]
)
def test_an_api_domain_from_the_token_answer_on_a_foreign_host_is_refused(api_domain):
    with Elsewhere() as token_server, Elsewhere() as foreign:
        port = foreign.url.rsplit(":", 1)[1]
        token_server.token_answer = {
            **_stolen_tokens(""),
            "api_domain": api_domain.format(port=port),
        }
        config = {
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
            "oauth_url": token_server.url,
            **ONE_TRY,
        }
        with pytest.raises(ConfigError, match=r"^api_domain"):
            TapPipedrive(config=config, validate_config=False, setup_mapper=False).api_root  # noqa: B018
    assert [r.target for r in token_server.received] == ["/oauth/token"]
    assert foreign.received == []


CLOSED = "http://127.0.0.1:9"
OAUTH = {"client_id": "c", "client_secret": "s", "refresh_token": "r"}
BAD_URLS = [
    ({"api_token": "t", "api_url": f"http://user:{SECRET_PASSWORD}@127.0.0.1:9"}, "api_url"),
    ({**OAUTH, "oauth_url": f"http://user:{SECRET_PASSWORD}@127.0.0.1:9"}, "oauth_url"),
    (
        {
            **OAUTH,
            "oauth_url": CLOSED,
            "api_domain": f"https://u:{SECRET_PASSWORD}@x.pipedrive.com",
        },
        "api_domain",
    ),
    ({"api_token": "t", "api_url": "http://api.evil.invalid"}, "api_url must use https"),
    ({**OAUTH, "oauth_url": "http://oauth.evil.invalid"}, "oauth_url must use https"),
    ({**OAUTH, "oauth_url": CLOSED, "api_domain": "http://evil.invalid"}, "api_domain"),
    ({**OAUTH, "oauth_url": CLOSED, "api_domain": "https://evil.invalid"}, "api_domain"),
]


@pytest.mark.parametrize(("config", "says"), BAD_URLS, ids=[says for _, says in BAD_URLS])
def test_an_untrusted_url_is_one_line_before_any_request(config, says, tmp_path):
    result, _ = _cli({**ONE_TRY, **config}, "--discover", tmp_path=tmp_path)
    line = _one_line(result)
    assert says in line
    assert SECRET_PASSWORD not in result.stdout + result.stderr


def test_a_login_refuses_an_oauth_url_with_a_password():
    with pytest.raises(ConfigError, match="oauth_url must not carry") as raised:
        OAuthClient.from_config(
            {"client_id": "c", "client_secret": "s", "oauth_url": f"https://u:{SECRET_PASSWORD}@x"}
        )
    assert SECRET_PASSWORD not in str(raised.value)


# --- 4. the proxy environment ----------------------------------------------------------------
def _use_proxy(monkeypatch, proxy_url: str | None, no_proxy: str | None = None) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    if proxy_url:
        monkeypatch.setenv("http_proxy", proxy_url)
    if no_proxy:
        monkeypatch.setenv("no_proxy", no_proxy)


def test_api_and_token_calls_both_go_through_the_configured_proxy(
    sandbox, api_config, oauth_config, monkeypatch
):
    config = {**oauth_config, **ONE_TRY}
    # Discovered with the API token: the OAuth refresh is left for the sync.
    catalog = discover(api_config, {"users"})
    sandbox.clear_requests()
    with Elsewhere() as proxy:
        proxy.token_answer = _stolen_tokens(sandbox.url)
        _use_proxy(monkeypatch, proxy.url)
        sync_capturing(config, catalog=catalog)
    through_proxy = [r.target for r in proxy.received]
    assert f"{sandbox.url}/oauth/token" in through_proxy
    assert f"{sandbox.url}/api/v1/users" in through_proxy
    assert [r.path for r in sandbox.requests] == []


def test_no_proxy_is_honoured_by_api_calls(sandbox, api_config, monkeypatch):
    catalog = discover(api_config, {"users"})
    with Elsewhere() as proxy:
        _use_proxy(monkeypatch, proxy.url, no_proxy="127.0.0.1")
        _, messages, error = sync_capturing(api_config, catalog=catalog)
    assert error is None
    assert proxy.received == []
    assert any(m["type"] == "RECORD" and m["stream"] == "users" for m in messages)


@pytest.fixture
def loopback_certificate(tmp_path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: trusted only through REQUESTS_CA_BUNDLE."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def test_api_and_token_calls_both_trust_the_ca_bundle_of_the_environment(
    api_config, loopback_certificate, monkeypatch
):
    # A corporate TLS proxy's CA is handed over this way: both kinds of call must use it.
    catalog = discover(api_config, {"users"})
    _use_proxy(monkeypatch, None)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with Elsewhere(tls=loopback_certificate) as server:
        server.token_answer = _stolen_tokens(server.url)
        config = {"client_id": "c", "client_secret": "s", "refresh_token": "r", **ONE_TRY}
        config["oauth_url"] = server.url
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        _, _, untrusted = sync_capturing(config, catalog=catalog)
        assert server.received == []  # the certificate is not trusted without the bundle
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", loopback_certificate[0])
        _, _, error = sync_capturing(config, catalog=catalog)
    assert "SSLError" in str(untrusted)
    assert error is None, error
    assert [r.target for r in server.received] == ["/oauth/token", "/api/v1/users"]


# --- 5. size and time caps per response ------------------------------------------------------
def _measured_run(config: dict, catalog: Path, tmp_path: Path) -> tuple[int, str, int]:
    """Run the tap; ``(exit code, stderr, peak RSS in bytes)`` of that process alone.

    The tap is started by the benchmarks' small launcher: Linux keeps a process's RSS
    high-water mark across ``exec``, so a tap forked straight from this (large) test
    process would report the test process's memory as its own.
    """
    config_path = write_private_json(tmp_path / "config.json", config)
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    report_path = tmp_path / "usage.json"
    tap = [sys.executable, "-m", "tap_pipedrive", "--config", str(config_path)]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "benchmarks" / "launch.py"),
                str(report_path),
                *tap,
                "--catalog",
                str(catalog),
            ],
            stdout=out,
            stderr=err,
            env=tap_environment({"XDG_DATA_HOME": str(tmp_path / "xdg")}),
            cwd=REPO_ROOT,
            check=False,
        )
    usage = json.loads(report_path.read_text(encoding="utf-8"))
    # ru_maxrss is in kilobytes on Linux.
    return process.returncode, stderr_path.read_text(encoding="utf-8"), usage["maxrss_kb"] * 1024


# Far below what reading the bodies whole takes (each is at least twice the cap, decoded).
RSS_BOUND = MAX_BODY_BYTES * 3


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("huge_body", {"size": 300 << 20, "delimited": "length"}),
        ("huge_body", {"size": 300 << 20, "delimited": "close"}),
        ("gzip_bomb", {"size": 600 << 20}),
    ],
    ids=["content-length", "until-close", "gzip-bomb"],
)
def test_an_oversized_body_is_refused_with_bounded_memory(
    sandbox, api_config, kind, params, tmp_path
):
    config = {**api_config, **ONE_TRY}
    catalog = _users_catalog(config, tmp_path)
    sandbox.faults.add(kind, path=USERS, count=None, **params)
    returncode, stderr, peak = _measured_run({**config, "max_retries": 3}, catalog, tmp_path)
    assert returncode == 1, stderr[-3000:]
    errors = _error_lines(stderr)
    assert len(errors) == 1 and "larger than 128 MiB" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr
    # Not retried: the same body would come again.
    assert len([r for r in sandbox.requests if r.path == "/api/v1/users"]) == 1
    assert peak < RSS_BOUND, f"peak RSS {peak >> 20} MiB"


@pytest.mark.parametrize("drip_from", ["start", "body"])
def test_a_server_dripping_one_byte_at_a_time_is_stopped_by_the_deadline(
    sandbox, api_config, drip_from, tmp_path
):
    config = {**api_config, "request_timeout": 1, "max_retries": 2, "retry_base_seconds": 0}
    catalog = _users_catalog(config, tmp_path)
    # Each byte comes well within the 1 s socket timeout; the whole answer takes a minute,
    # the deadline is 2 s.
    sandbox.faults.add("drip", path=USERS, count=None, interval=0.3, **{"from": drip_from})
    result, seconds = _cli(config, "--catalog", str(catalog), tmp_path=tmp_path, timeout=90)
    line = _one_line(result)
    assert "Gave up after 2 attempts" in line and "ResponseDeadlineExceeded" in line
    # Two attempts of two seconds each, plus start-up: nowhere near the drip's minute.
    assert seconds < 30
