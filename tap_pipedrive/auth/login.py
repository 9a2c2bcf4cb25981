"""Authorizing the tap with Pipedrive's OAuth authorization-code flow.

Two interactive ways end in the same place (tokens in the token store and, when
the user named one, in the config file):

- the desktop flow opens the browser at Pipedrive's consent page and catches the
  redirect on a one-shot callback server on the loopback addresses only;
- the no-browser flow prints the consent URL and reads the redirect URL (or the
  bare code) that the user pastes back, for servers reached over SSH.

Pipedrive has no PKCE, so both need the client secret; codes live five minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import html
import http.server
import json
import logging
import re
import secrets
import selectors
import socket
import socketserver
import threading
import time
import typing as t
import webbrowser
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from typing_extensions import override

from tap_pipedrive.auth.company import same_company
from tap_pipedrive.auth.store import FileTokenStore, TokenStoreError, atomic_write_json
from tap_pipedrive.auth.tokens import DEFAULT_OAUTH_URL, TokenSet, TokenStore, request_tokens
from tap_pipedrive.errors import ConfigError, PipedriveError, ReauthorizationRequired
from tap_pipedrive.http.transport import check_url
from tap_pipedrive.redact import SecretRedactor

if t.TYPE_CHECKING:
    from collections.abc import Callable

LOGGER = logging.getLogger("tap-pipedrive")
Echo = t.Callable[[str], None]

DEFAULT_REDIRECT_URI = "http://localhost:33333"
DEFAULT_LOGIN_TIMEOUT_SECONDS = 300.0
# The host names a redirect URI for the callback server may use, and the addresses each
# one listens on. A browser may resolve "localhost" to ::1 or to 127.0.0.1, so both are
# held: a program listening on the one left free would receive the code (RFC 8252 8.3).
LOOPBACK_BINDINGS: dict[str, tuple[tuple[str, socket.AddressFamily], ...]] = {
    "localhost": (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)),
    "127.0.0.1": (("127.0.0.1", socket.AF_INET),),
}
LOOPBACK_HOSTS = tuple(LOOPBACK_BINDINGS)
# Binding ::1 fails with these where the machine has no IPv6 loopback at all.
_NO_IPV6_LOOPBACK = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})
# The callback server's connections: how many at once, and how long each may take.
MAX_CALLBACK_CONNECTIONS = 8
CALLBACK_CONNECTION_SECONDS = 10.0
# Authorization codes are URL-safe tokens; anything else pasted is a mistake.
_CODE_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]{4,2048}$")


class LoginError(PipedriveError):
    """The login did not produce tokens; nothing was saved."""


class LoginCancelled(LoginError):
    """The user pressed Ctrl-C during the login."""

    exit_code = 130


# --- the OAuth client -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OAuthClient:
    """The app's credentials and where Pipedrive should send the browser back to."""

    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    oauth_url: str = DEFAULT_OAUTH_URL
    timeout: float = 60.0
    user_agent: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> OAuthClient:
        """Read the OAuth client settings, failing with one line on a gap."""
        missing = [key for key in ("client_id", "client_secret") if not config.get(key)]
        if missing:
            msg = (
                f"The OAuth login needs {' and '.join(missing)}: set it in the config file, "
                "as TAP_PIPEDRIVE_" + missing[0].upper() + " with --config=ENV, or with "
                f"--{missing[0].replace('_', '-')}"
            )
            raise ConfigError(msg)
        redirect_uri = str(config.get("redirect_uri") or DEFAULT_REDIRECT_URI)
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            msg = f"redirect_uri must be an absolute http(s) URL, got {redirect_uri[:80]!r}"
            raise ConfigError(msg)
        oauth_url = str(config.get("oauth_url") or DEFAULT_OAUTH_URL)
        check_url("oauth_url", oauth_url)  # the code and the client secret go there
        SecretRedactor.register(str(config["client_secret"]))
        return cls(
            client_id=str(config["client_id"]),
            client_secret=str(config["client_secret"]),
            redirect_uri=redirect_uri,
            oauth_url=oauth_url.rstrip("/"),
            timeout=float(config.get("request_timeout") or 60),
            user_agent=config.get("user_agent"),
        )

    def authorization_url(self, state: str) -> str:
        """Pipedrive's consent page for this app (scopes are set on the app itself)."""
        query = urlencode(
            {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "state": state}
        )
        return f"{self.oauth_url}/oauth/authorize?{query}"

    def exchange_code(self, code: str) -> TokenSet:
        """Trade an authorization code for tokens (Basic client auth, form body)."""
        try:
            body = request_tokens(
                f"{self.oauth_url}/oauth/token",
                client_id=self.client_id,
                client_secret=self.client_secret,
                form={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                },
                timeout=self.timeout,
                user_agent=self.user_agent,
            )
        except ReauthorizationRequired:
            msg = (
                "Pipedrive refused the authorization code (invalid_grant): it expired (codes "
                "are valid for 5 minutes), was already used, or was issued for another "
                "redirect_uri. Run the login again."
            )
            raise LoginError(msg) from None
        tokens = TokenSet.from_token_response(body, previous=TokenSet())
        SecretRedactor.register(tokens.access_token, tokens.refresh_token)
        if not tokens.refresh_token:
            msg = "Pipedrive's token answer carried no refresh_token; nothing was saved"
            raise LoginError(msg)
        return tokens


def new_state() -> str:
    """An unguessable value that ties the browser's answer to this login."""
    return secrets.token_urlsafe(24)


# --- reading the redirect ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Redirect:
    """What Pipedrive put on the redirect URL."""

    code: str | None = None
    state: str | None = None
    error: str | None = None

    @classmethod
    def from_query(cls, query: str) -> Redirect:
        params = {key: values[0] for key, values in parse_qs(query).items() if values}
        return cls(code=params.get("code"), state=params.get("state"), error=params.get("error"))

    def checked_code(self, expected_state: str | None) -> str:
        """The code, after the error and state checks; raises LoginError otherwise."""
        if self.error:
            if self.error == "user_denied":
                msg = "Access was denied in the browser (user_denied); nothing was saved"
            else:
                msg = f"Pipedrive answered the authorization with error={self.error[:60]!r}"
            raise LoginError(msg)
        if expected_state is not None and not (
            self.state and secrets.compare_digest(self.state, expected_state)
        ):
            msg = (
                "The redirect's state does not match this login (state mismatch): it comes "
                "from another login attempt or was forged; nothing was saved. Run the login again."
            )
            raise LoginError(msg)
        if not self.code:
            msg = "The redirect carried neither a code nor an error; run the login again"
            raise LoginError(msg)
        return self.code


def parse_pasted_redirect(text: str) -> Redirect:
    """Read a pasted redirect URL, a query string, or a bare authorization code."""
    text = text.strip()
    if not text:
        msg = "Nothing was pasted: give the URL the browser was sent to, or the code on it"
        raise LoginError(msg)
    if "://" in text:
        return Redirect.from_query(urlsplit(text).query)
    if "=" in text:
        return Redirect.from_query(text.lstrip("?"))
    if not _CODE_PATTERN.match(text):
        msg = "That is neither a redirect URL nor an authorization code"
        raise LoginError(msg)
    return Redirect(code=text)


# --- the loopback callback server --------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoopbackRedirect:
    """A redirect URI the callback server can answer: plain HTTP on this machine."""

    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, redirect_uri: str) -> LoopbackRedirect:
        parts = urlsplit(redirect_uri)
        try:
            port = parts.port
        except ValueError:
            port = None
            valid_port = False
        else:
            valid_port = True
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or not valid_port:
            msg = (
                f"redirect_uri {redirect_uri[:80]!r} is not a loopback address: the browser "
                "login needs http://localhost:PORT or http://127.0.0.1:PORT, registered as the "
                "app's callback URL in Pipedrive; use --no-browser for any other redirect_uri"
            )
            raise ConfigError(msg)
        return cls(host=str(parts.hostname), port=port or 80, path=parts.path or "/")

    @property
    def uri_prefix(self) -> str:
        return f"http://{self.host}:{self.port}"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tap-pipedrive: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
color:#222}}h1{{font-size:1.4rem}}.ok{{color:#0a7a2f}}.fail{{color:#b3261e}}</style></head>
<body><h1 class="{css}">{title}</h1><p>{message}</p></body></html>
"""


def _page(*, ok: bool, title: str, message: str) -> bytes:
    return _PAGE.format(
        css="ok" if ok else "fail", title=html.escape(title), message=html.escape(message)
    ).encode("utf-8")


class _CallbackHandler(http.server.BaseHTTPRequestHandler):
    server: _Listener
    # Per read; CallbackServer also gives each connection an overall deadline.
    timeout = CALLBACK_CONNECTION_SECONDS
    server_version = "tap-pipedrive"
    sys_version = ""

    def do_GET(self) -> None:
        callback = self.server.callback
        if not callback.answers_host(self.headers.get("Host")):
            # A page on another site whose name now resolves to 127.0.0.1 (DNS rebinding).
            message = f"This server only answers {callback.redirect.uri_prefix}."
            self._respond(400, _page(ok=False, title="Bad request", message=message))
            return
        parts = urlsplit(self.path)
        if parts.path != callback.redirect.path:
            self._respond(404, _page(ok=False, title="Not found", message="Nothing here."))
            return
        redirect = Redirect.from_query(parts.query)
        status, page, ends_login = callback.offer(redirect)
        self._respond(status, page)
        if ends_login:
            # Only once the page is sent: the login then closes every connection, and
            # would otherwise cut this one before the browser got its answer.
            callback.deliver(redirect)

    def _respond(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    @override
    def log_message(self, format: str, *args: t.Any) -> None:
        # The request line carries the authorization code: never log it.
        return


class _Listener(socketserver.TCPServer):
    """One listening socket of the callback server; CallbackServer runs its loop."""

    allow_reuse_address = True

    def __init__(
        self, callback: CallbackServer, address: str, family: socket.AddressFamily
    ) -> None:
        self.callback = callback
        self.address_family = family
        super().__init__((address, callback.redirect.port), _CallbackHandler)


class CallbackServer:
    """Waits on loopback for the one redirect of a login that carries its ``state``.

    Every other request gets a short page and the wait goes on: a stray request from a
    local program or web page cannot end the login. Connections are few and short: at
    most ``max_connections`` at a time, each closed after ``connection_seconds``; more
    wait in the listen queue, so idle or slow clients cannot hold the login hostage.
    """

    max_connections = MAX_CALLBACK_CONNECTIONS
    connection_seconds = CALLBACK_CONNECTION_SECONDS

    def __init__(
        self,
        redirect: LoopbackRedirect,
        expected_state: str,
        *,
        warn: Echo | None = None,
    ) -> None:
        self.redirect = redirect
        self.expected_state = expected_state
        self._warn = warn or (lambda text: LOGGER.warning("%s", text))
        self._hosts = _host_header_values(redirect.port)
        self._result: Redirect | None = None
        self._arrived = threading.Event()
        self._warned = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, float] = {}  # connection -> deadline
        self._listeners: list[_Listener] = []
        for address, family in LOOPBACK_BINDINGS[redirect.host]:
            try:
                self._listeners.append(_Listener(self, address, family))
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno in _NO_IPV6_LOOPBACK:
                    # No IPv6 loopback here: no other program can listen on it either.
                    LOGGER.debug("No IPv6 loopback on this machine; listening on IPv4 only")
                    continue
                self._close_listeners()
                where = f"[{address}]" if family == socket.AF_INET6 else address
                msg = (
                    f"Cannot listen on {where}:{redirect.port} for the login callback "
                    f"({exc.strerror or exc}): the port is in use or not allowed. Free it, or "
                    "register another http://localhost:PORT callback URL and set redirect_uri"
                )
                raise LoginError(msg) from None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self.redirect.port

    @property
    def addresses(self) -> list[str]:
        """The addresses listened on, e.g. ``["127.0.0.1", "::1"]``."""
        return [str(listener.server_address[0]) for listener in self._listeners]

    def answers_host(self, host: str | None) -> bool:
        return host is not None and host.strip().lower() in self._hosts

    def offer(self, redirect: Redirect) -> tuple[int, bytes, bool]:
        """Take a request to the callback path.

        Returns the status and page to answer with, and whether the request ends the login
        (the caller delivers it once the page is sent).
        """
        state = self.expected_state
        ours = bool(redirect.state) and secrets.compare_digest(str(redirect.state), state)
        if ours and (redirect.code or redirect.error):
            try:
                redirect.checked_code(state)
            except LoginError as exc:
                page = _page(ok=False, title="Authorization failed", message=f"{exc}.")
            else:
                page = _page(
                    ok=True,
                    title="tap-pipedrive is authorized",
                    message="Pipedrive access was granted. You can close this tab and return "
                    "to the terminal.",
                )
            return 200, page, True
        if (redirect.code or redirect.error) and self._first_foreign_answer():
            self._warn(
                "Ignored a request to the login callback that does not carry this login's "
                "state (an old browser tab, or a forged request; further ones are not "
                "reported); still waiting"
            )
        message = (
            "This address only takes Pipedrive's redirect for the tap-pipedrive login "
            "now in progress, and this request is not it. The login is still waiting."
        )
        return 400, _page(ok=False, title="Not this login's redirect", message=message), False

    def _first_foreign_answer(self) -> bool:
        # One line is enough: a flood of forged requests must not flood the terminal.
        with self._lock:
            first = not self._warned
            self._warned = True
        return first

    def deliver(self, redirect: Redirect) -> None:
        with self._lock:
            if not self._arrived.is_set():
                self._result = redirect
                self._arrived.set()

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._close_listeners()

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.server_close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            for listener in self._listeners:
                selector.register(listener.socket, selectors.EVENT_READ, listener)
            while not self._stopping.is_set():
                self._cut_overdue_connections()
                if len(self._connections) >= self.max_connections:
                    # Full: new connections wait in the kernel's listen queue.
                    self._stopping.wait(0.05)
                    continue
                for key, _ in selector.select(timeout=0.1):
                    if len(self._connections) >= self.max_connections:
                        break
                    with contextlib.suppress(OSError):
                        self._start_connection(key.data, *key.data.get_request())

    def _start_connection(
        self, listener: _Listener, connection: socket.socket, peer: t.Any
    ) -> None:
        with self._lock:
            self._connections[connection] = time.monotonic() + self.connection_seconds
        threading.Thread(
            target=self._handle_connection, args=(listener, connection, peer), daemon=True
        ).start()

    def _handle_connection(
        self, listener: _Listener, connection: socket.socket, peer: t.Any
    ) -> None:
        try:
            listener.finish_request(connection, peer)
        except OSError:
            pass  # the client went away, or its time was up
        finally:
            with self._lock:
                self._connections.pop(connection, None)
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_WR)
                connection.close()

    def _cut_overdue_connections(self) -> None:
        now = time.monotonic()
        with self._lock:
            for connection, deadline in self._connections.items():
                if now >= deadline:
                    # Unblocks the handler's read; it then finishes and frees the slot.
                    with contextlib.suppress(OSError):
                        connection.shutdown(socket.SHUT_RDWR)

    def wait(self, timeout: float) -> Redirect:
        """Block until the browser comes back, the time is up, or Ctrl-C."""
        deadline = time.monotonic() + timeout
        try:
            # Short waits keep the main thread responsive to Ctrl-C.
            while not self._arrived.wait(min(0.2, max(deadline - time.monotonic(), 0))):
                if time.monotonic() >= deadline:
                    msg = (
                        f"No answer from the browser within {timeout:.0f} s; nothing was saved. "
                        "Run the login again (--login-timeout sets the wait)"
                    )
                    raise LoginError(msg)
        except (KeyboardInterrupt, SystemExit):
            # SystemExit: the SDK's SIGINT handler inside a tap run (see _ctrl_c_cancels).
            raise LoginCancelled("Login cancelled (Ctrl-C); nothing was saved") from None
        assert self._result is not None
        return self._result


def _host_header_values(port: int) -> frozenset[str]:
    """The Host headers a browser sends for a loopback redirect URI on ``port``."""
    names = ("localhost", "127.0.0.1", "[::1]")
    values = {f"{name}:{port}" for name in names}
    if port == 80:
        values.update(names)
    return frozenset(values)


# --- the flows ------------------------------------------------------------------------------
@contextlib.contextmanager
def _ctrl_c_cancels() -> t.Iterator[None]:
    """Ctrl-C anywhere in a login ends it with one line (exit code 130)."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        # SystemExit: inside a tap run the SDK turns Ctrl-C into sys.exit(0), which
        # would make a cancelled login look like success.
        raise LoginCancelled("Login cancelled (Ctrl-C); nothing was saved") from None


def browser_login(
    client: OAuthClient,
    *,
    timeout: float = DEFAULT_LOGIN_TIMEOUT_SECONDS,
    echo: Echo,
    open_browser: Callable[[str], bool] | None = None,
) -> TokenSet:
    """The desktop flow: consent page in the browser, redirect caught on loopback."""
    redirect = LoopbackRedirect.parse(client.redirect_uri)
    state = new_state()
    url = client.authorization_url(state)
    with _ctrl_c_cancels(), CallbackServer(redirect, state, warn=echo) as server:
        echo(f"Opening the browser to authorize tap-pipedrive. If it does not open, visit:\n{url}")
        try:
            # Python's webbrowser honours $BROWSER.
            opened = (open_browser or webbrowser.open)(url)
        except Exception:  # any launcher failure just means "open it yourself"
            opened = False
        if not opened:
            echo("Could not start a browser: open the URL above yourself.")
        echo(f"Waiting for the authorization on {client.redirect_uri} (Ctrl-C to cancel)...")
        answer = server.wait(timeout)
    code = answer.checked_code(state)
    with _ctrl_c_cancels():
        return client.exchange_code(code)


def no_browser_login(
    client: OAuthClient,
    *,
    read_line: Callable[[], str],
    echo: Echo,
    show_url: Echo,
) -> TokenSet:
    """The flow for machines without a browser: print the URL, read back the redirect."""
    state = new_state()
    show_url(client.authorization_url(state))
    echo(
        "Open the URL above in any browser and allow access. The browser then goes to "
        f"{client.redirect_uri} (it may show an error page; that is fine). Paste that full "
        "URL, or just the code from it, and press Enter:"
    )
    try:
        with _ctrl_c_cancels():
            line = read_line()
    except EOFError:
        line = ""
    if not line.strip():
        msg = "No redirect URL or code was given on stdin; nothing was saved"
        raise LoginError(msg)
    pasted = parse_pasted_redirect(line)
    # A bare code carries no state to compare; a pasted URL must match this login.
    code = pasted.checked_code(state if (pasted.state or pasted.error or "://" in line) else None)
    with _ctrl_c_cancels():
        return client.exchange_code(code)


# --- saving the result ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoginResult:
    """Where the tokens went, and what the user may see about them (no secrets)."""

    tokens: TokenSet
    store_path: Path
    config_file: Path | None

    def summary(self) -> dict[str, t.Any]:
        return {
            "api_domain": self.tokens.api_domain,
            "scope": self.tokens.scope,
            "expires_at": iso_timestamp(self.tokens.expires_at),
            "token_store": str(self.store_path),
            "config_file": str(self.config_file) if self.config_file else None,
        }

    def describe(self) -> str:
        lines = [f"Authorized tap-pipedrive for {self.tokens.api_domain or 'your company'}."]
        if self.tokens.scope:
            lines.append(f"Scopes: {self.tokens.scope}")
        if self.tokens.expires_at:
            lines.append(
                f"Access token valid until {iso_timestamp(self.tokens.expires_at)}; "
                "it is refreshed automatically."
            )
        lines.append(f"Tokens saved to the token store {self.store_path} (mode 0600)")
        if self.config_file:
            lines.append(f"and to the config file {self.config_file} (mode 0600).")
        return "\n".join(lines)


def iso_timestamp(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def token_settings(tokens: TokenSet) -> dict[str, t.Any]:
    """The config keys a login writes."""
    values = {
        "refresh_token": tokens.refresh_token,
        "access_token": tokens.access_token,
        "token_expires_at": iso_timestamp(tokens.expires_at),
        "api_domain": tokens.api_domain,
    }
    return {key: value for key, value in values.items() if value}


def merge_into_config_file(path: Path, values: Mapping[str, t.Any]) -> Path:
    """Add ``values`` to a JSON config file, keeping its other keys (atomic, 0600)."""
    existing: dict[str, t.Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError) as exc:
            msg = f"Cannot update the config file {path}: it is not readable JSON ({exc})"
            raise ConfigError(msg[:300]) from None
        if not isinstance(loaded, dict):
            msg = f"Cannot update the config file {path}: it does not hold a JSON object"
            raise ConfigError(msg)
        existing = loaded
    try:
        return atomic_write_json(path, {**existing, **values})
    except TokenStoreError as exc:
        raise ConfigError(str(exc)) from None


def save_login(
    tokens: TokenSet,
    *,
    config: Mapping[str, t.Any],
    store: FileTokenStore,
    config_file: Path | None = None,
    extra_settings: Mapping[str, t.Any] | None = None,
) -> LoginResult:
    """Persist a login's tokens: the store first (it is what runs rely on), then the file.

    The config's previous refresh token is recorded as replaced, so runs whose config
    still carries it (Meltano's settings, an old file) take the new tokens from the store;
    not when the config names another company, whose tokens this login does not retire.
    """
    store.save(tokens, replacing=superseded_by_login(config, tokens))
    written = None
    if config_file is not None:
        config_file = config_file.absolute()
        written = merge_into_config_file(
            config_file, {**(extra_settings or {}), **token_settings(tokens)}
        )
    return LoginResult(tokens=tokens, store_path=store.path, config_file=written)


def superseded_by_login(config: Mapping[str, t.Any], tokens: TokenSet) -> list[str | None]:
    """The config's refresh token, when this login is a new authorization of its company."""
    declared = config.get("api_domain")
    if declared and not same_company(str(declared), tokens.api_domain):
        return []
    return [config.get("refresh_token")]


def login_for_run(config: Mapping[str, t.Any], store: TokenStore) -> TokenSet:
    """oauth_mode get_and_refresh: authorize in the browser in the middle of a run.

    stdout carries Singer messages here, so every word for the user goes to the log.
    """
    client = OAuthClient.from_config(config)
    LOGGER.warning("No OAuth tokens stored yet and oauth_mode is get_and_refresh: starting login")
    tokens = browser_login(client, echo=lambda text: LOGGER.warning("%s", text))
    if isinstance(store, FileTokenStore):
        LOGGER.info("%s", save_login(tokens, config=config, store=store).describe())
    else:
        store.save(tokens, replacing=superseded_by_login(config, tokens))
    return tokens
