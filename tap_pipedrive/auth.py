"""Authentication: API token, OAuth refresh token, or a bare access token.

One authenticator instance is built per tap run and shared by every stream, so a
refresh happens once for the whole run rather than once per stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import typing as t
from collections.abc import Mapping

import requests
from singer_sdk.authenticators import (
    APIKeyAuthenticator,
    BearerTokenAuthenticator,
    OAuthAuthenticator,
)

from tap_pipedrive.errors import (
    ConfigError,
    PipedriveError,
    ReauthorizationRequired,
    login_command,
)
from tap_pipedrive.http.transport import RedirectRefused, TransportSession, host_of
from tap_pipedrive.identity import same_company
from tap_pipedrive.redact import SecretRedactor

DEFAULT_OAUTH_URL = "https://oauth.pipedrive.com"
# Refresh this many seconds before the access token expires, so a request that is
# prepared just before expiry does not reach Pipedrive with a dead token.
REFRESH_MARGIN_SECONDS = 300


@dataclasses.dataclass
class TokenSet:
    """The tokens Pipedrive hands out, plus when the access token stops working."""

    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float | None = None  # epoch seconds
    api_domain: str | None = None
    scope: str | None = None
    obtained_at: float | None = None  # epoch seconds; orders token sets from different sources

    def __repr__(self) -> str:
        # Never let a token reach a log line through a repr.
        return (
            f"TokenSet(access_token={'***' if self.access_token else None}, "
            f"refresh_token={'***' if self.refresh_token else None}, "
            f"expires_at={self.expires_at}, api_domain={self.api_domain!r})"
        )

    def access_token_valid(self, margin: float = REFRESH_MARGIN_SECONDS) -> bool:
        """True while the access token can still be used for a while."""
        if not self.access_token:
            return False
        if self.expires_at is None:
            return True
        return time.time() + margin < self.expires_at

    @classmethod
    def from_token_response(cls, body: Mapping[str, t.Any], previous: TokenSet) -> TokenSet:
        """Build a token set from the token endpoint's JSON answer.

        Pipedrive documents that a refresh returns the same refresh token, but a
        rotated one must never be lost, so whatever arrives replaces the old one.
        """
        now = time.time()
        expires_in = body.get("expires_in")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body.get("refresh_token") or previous.refresh_token or "") or None,
            expires_at=now + float(expires_in) if expires_in else None,
            api_domain=str(body.get("api_domain") or previous.api_domain or "") or None,
            scope=body.get("scope") or previous.scope,
            obtained_at=now,
        )


class TokenStore(t.Protocol):
    """Where OAuth tokens persist between runs (implemented in ``token_store``)."""

    def locked(self) -> t.ContextManager[None]:
        """Hold an exclusive lock so that only one process refreshes at a time."""

    def load(self, current: TokenSet | None = None) -> TokenSet | None:
        """Return the stored tokens that continue the authorization of ``current``."""

    def save(self, tokens: TokenSet, *, replacing: t.Iterable[str | None] = ()) -> None:
        """Persist tokens atomically; ``replacing`` names refresh tokens they supersede."""

    def replaced(self, refresh_token: str, *, api_domain: str | None) -> bool:
        """Whether the company's stored tokens recorded this refresh token as superseded."""


def store_is_newer(current: TokenSet, stored: TokenSet, store: TokenStore) -> bool:
    """Whether the stored tokens should replace the ones in hand.

    Token sets that record when they were obtained (anything that went through a
    refresh or a login) are ordered by that time. Tokens from the config carry no
    time, so the store is newer than them exactly when it continues the same
    authorization: it holds the config's refresh token itself, or it recorded that
    token as replaced by a later one (rotation or a new login). A refresh token the
    store has never seen comes from an authorization the store does not know about
    (a new login whose result was pasted into the config), so the config wins and
    the store follows it from the next refresh on.

    Tokens of another company never win, whatever their age.
    """
    if not (stored.refresh_token or stored.access_token):
        return False
    if current.api_domain and not same_company(current.api_domain, stored.api_domain):
        return False
    if current.obtained_at is not None:
        return (stored.obtained_at or 0) > current.obtained_at
    if not current.refresh_token:
        return True
    if stored.refresh_token == current.refresh_token:
        return True
    return store.replaced(current.refresh_token, api_domain=stored.api_domain)


class PipedriveOAuthAuthenticator(OAuthAuthenticator):
    """OAuth 2.0 refresh-token authenticator for Pipedrive.

    Uses HTTP Basic client authentication and a form body, keeps a rotated refresh
    token and the ``api_domain`` of the company, refreshes ahead of expiry, and
    hands every new token set to the token store before the new access token is used.

    The company is fixed by the config's ``api_domain`` when it has one, and by the
    first token answer or stored entry otherwise: tokens of any other company are
    never adopted, and a refresh that answers for another company ends the run.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tokens: TokenSet,
        oauth_url: str = DEFAULT_OAUTH_URL,
        store: TokenStore | None = None,
        timeout: float = 60,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(
            auth_endpoint=f"{oauth_url.rstrip('/')}/oauth/token",
            client_id=client_id,
            client_secret=client_secret,
        )
        self.tokens = tokens
        self._store = store
        self._timeout = timeout
        self._user_agent = user_agent
        # Streams may run in threads; one refresh at a time.
        self._refresh_lock = threading.RLock()
        self.refresh_count = 0
        # The company the config names; None when it leaves that to the tokens.
        self._declared_company = tokens.api_domain
        self._refusal: str | None = None
        if store is not None:
            self._adopt_newer(store.load(tokens))

    # --- state -----------------------------------------------------------------
    @property
    def store(self) -> TokenStore | None:
        """Where this authenticator persists its tokens."""
        return self._store

    @property
    def api_domain(self) -> str | None:
        """The company host from the token response; refreshes first if unknown."""
        if not self.tokens.api_domain:
            self.ensure_token()
        return self.tokens.api_domain

    def is_token_valid(self) -> bool:
        return self.tokens.access_token_valid()

    def invalidate(self, rejected_token: str | None = None) -> None:
        """Forget the access token after Pipedrive answered 401 to it."""
        with self._refresh_lock:
            if rejected_token is None or rejected_token == self.tokens.access_token:
                self.tokens = dataclasses.replace(self.tokens, access_token=None, expires_at=None)

    def ensure_token(self) -> str:
        """Return a usable access token, refreshing when needed."""
        with self._refresh_lock:
            if self._refusal is not None:
                # Every stream ends on the same line, and none refreshes again.
                raise ConfigError(self._refusal)
            if not self.is_token_valid():
                self.update_access_token()
            assert self.tokens.access_token  # set by update_access_token
            return self.tokens.access_token

    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.ensure_token()}"
        return request

    # --- refresh -----------------------------------------------------------------
    @property
    def oauth_request_body(self) -> dict[str, t.Any]:
        return {"grant_type": "refresh_token", "refresh_token": self.tokens.refresh_token}

    def update_access_token(self) -> None:
        with self._refresh_lock, self._store_lock():
            # Another process may have refreshed while we waited for the lock: reuse
            # its tokens instead of burning (and possibly invalidating) ours.
            stored = self._store.load(self.tokens) if self._store is not None else None
            if self._adopt_newer(stored) and self.is_token_valid():
                return
            if not self.tokens.refresh_token:
                msg = "The access token has expired and no refresh_token is configured"
                raise ReauthorizationRequired(msg)
            body = self._post_token_request(self.oauth_request_body)
            used_refresh_token = self.tokens.refresh_token
            fresh = TokenSet.from_token_response(body, previous=self.tokens)
            SecretRedactor.register(fresh.access_token, fresh.refresh_token)
            self.refresh_count += 1
            if self._store is not None:
                # Saved even when it is the wrong company: a rotated token must survive.
                self._store.save(fresh, replacing=[used_refresh_token])
            # Checked before the tokens are taken: no request, in any thread, ever
            # carries another company's access token.
            self._check_company(fresh)
            self.tokens = fresh
            # Keep the SDK's bookkeeping attributes meaningful for anything that reads them.
            self.access_token = self.tokens.access_token
            self.refresh_token = self.tokens.refresh_token

    def take_login(self, tokens: TokenSet) -> None:
        """Use the tokens of a login made during the run, if they are the config's company."""
        self._check_company(tokens)
        self.tokens = tokens

    def _check_company(self, fresh: TokenSet) -> None:
        answered = fresh.api_domain
        declared = self._declared_company
        if declared and answered and not same_company(declared, answered):
            self._refusal = (
                f"The refresh_token belongs to the company {answered[:80]}, but api_domain is "
                f"set to {declared[:80]}: set api_domain to the company you mean, or run "
                "`tap-pipedrive --login` for it"
            )
            raise ConfigError(self._refusal)

    def _store_lock(self) -> t.ContextManager[None]:
        return self._store.locked() if self._store is not None else contextlib.nullcontext()

    def _adopt_newer(self, stored: TokenSet | None) -> bool:
        """Take the stored tokens when they are newer than the ones in memory."""
        if stored is None or self._store is None:
            return False
        if not store_is_newer(self.tokens, stored, self._store):
            return False
        SecretRedactor.register(stored.access_token, stored.refresh_token)
        self.tokens = stored
        return True

    def _post_token_request(self, form: Mapping[str, t.Any]) -> dict[str, t.Any]:
        return request_tokens(
            self.auth_endpoint,
            client_id=self.client_id or "",
            client_secret=self.client_secret or "",
            form=form,
            timeout=self._timeout,
            user_agent=self._user_agent,
        )


def request_tokens(
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    form: Mapping[str, t.Any],
    timeout: float = 60,
    user_agent: str | None = None,
) -> dict[str, t.Any]:
    """POST to Pipedrive's token endpoint and return the JSON body.

    Errors are reported with Pipedrive's error code only: the response body and the
    request may both carry secrets.
    """
    headers = {"Accept": "application/json"}
    if user_agent:
        headers["User-Agent"] = user_agent
    try:
        with TransportSession() as session:
            response = session.post(
                token_url,
                data=dict(form),
                auth=(client_id, client_secret),
                headers=headers,
                timeout=timeout,
            )
    except RedirectRefused as redirect:
        # Following it would hand the refresh token or the login code to another host.
        where = f"to {redirect.target}" if redirect.target else "without a Location"
        msg = (
            f"The OAuth token endpoint {host_of(token_url)} (oauth_url) answered "
            f"{redirect.status}, a redirect {where}: not followed, tokens and codes go only "
            "to the configured oauth_url; check the oauth_url setting"
        )
        raise PipedriveError(msg) from None
    except requests.RequestException as exc:
        msg = (
            f"Could not reach the OAuth token endpoint {host_of(token_url)} (oauth_url): "
            f"{type(exc).__name__}"
        )
        raise PipedriveError(msg) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code == 200 and body.get("access_token"):
        return body
    error = str(body.get("error") or f"HTTP {response.status_code}")[:80]
    if error == "invalid_grant":
        raise ReauthorizationRequired("invalid_grant")
    if error == "invalid_client" or response.status_code == 401:
        msg = (
            "Pipedrive rejected the OAuth client credentials (invalid_client): "
            "check the client_id and client_secret settings"
        )
        raise ConfigError(msg)
    msg = f"The OAuth token endpoint answered {response.status_code} ({error})"
    raise PipedriveError(msg)


# --- choosing the authentication mode from config -----------------------------------
AuthMode = t.Literal["api_token", "oauth", "access_token"]
OAUTH_MODES = ("get_and_refresh", "refresh", "off")
DEFAULT_OAUTH_MODE = "refresh"


def oauth_mode(config: Mapping[str, t.Any]) -> str:
    """The oauth_mode setting, validated (default: refresh, for scheduled jobs)."""
    mode = config.get("oauth_mode") or DEFAULT_OAUTH_MODE
    if mode not in OAUTH_MODES:
        msg = f"oauth_mode must be one of {', '.join(OAUTH_MODES)}; got {str(mode)[:40]!r}"
        raise ConfigError(msg)
    return str(mode)


def resolve_auth_mode(config: Mapping[str, t.Any]) -> AuthMode:
    """Decide which of the three authentication modes the config asks for.

    Fails with one line naming the settings to fix when the config completes no mode
    or mixes them.
    """
    has = {
        key: bool(config.get(key))
        for key in ("api_token", "client_id", "client_secret", "refresh_token", "access_token")
    }
    oauth_keys = [
        key for key in ("client_id", "client_secret", "refresh_token", "access_token") if has[key]
    ]
    if has["api_token"]:
        if oauth_keys:
            msg = (
                "Ambiguous credentials: api_token is set together with "
                f"{', '.join(oauth_keys)}; keep either api_token or the OAuth settings"
            )
            raise ConfigError(msg)
        return "api_token"
    if oauth_mode(config) == "off":
        if not has["access_token"]:
            msg = "oauth_mode is 'off' but access_token is not set"
            raise ConfigError(msg)
        return "access_token"
    if has["refresh_token"]:
        missing = [key for key in ("client_id", "client_secret") if not has[key]]
        if missing:
            msg = f"OAuth refresh needs {' and '.join(missing)}: set it alongside refresh_token"
            raise ConfigError(msg)
        return "oauth"
    if has["client_id"] and has["client_secret"]:
        # The refresh token comes from the token store, or from a browser login.
        if oauth_mode(config) == "get_and_refresh" or _store_has_tokens(config):
            return "oauth"
        raise ConfigError(_no_refresh_token_message(config))
    if has["access_token"]:
        return "access_token"
    if has["client_id"] or has["client_secret"]:
        missing = [key for key in ("client_id", "client_secret") if not has[key]]
        msg = f"OAuth needs both client_id and client_secret: set {missing[0]}"
        raise ConfigError(msg)
    msg = (
        "No credentials configured: set api_token, or client_id + client_secret + "
        "refresh_token, or access_token"
    )
    raise ConfigError(msg)


def _store_has_tokens(config: Mapping[str, t.Any]) -> bool:
    # Imported here: the store module builds on this one.
    from tap_pipedrive.token_store import open_store

    return (
        open_store(config).load(TokenSet(api_domain=config.get("api_domain") or None)) is not None
    )


def _no_refresh_token_message(config: Mapping[str, t.Any]) -> str:
    from tap_pipedrive.token_store import store_path_from_config

    company = f" for {str(config['api_domain'])[:80]}" if config.get("api_domain") else ""
    return (
        "OAuth is configured without a refresh_token and the token store "
        f"{store_path_from_config(config)} holds none{company}: run {login_command()} "
        "to authorize, set refresh_token, or set oauth_mode to get_and_refresh"
    )


def parse_expires_at(value: t.Any) -> float | None:
    """Read a stored expiry given as epoch seconds or an ISO timestamp."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime  # local: only needed for this rare path

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        msg = f"token_expires_at must be an ISO 8601 timestamp, got {str(value)[:40]!r}"
        raise ConfigError(msg) from None


def build_authenticator(
    config: Mapping[str, t.Any],
    *,
    store: TokenStore | None = None,
) -> APIKeyAuthenticator | BearerTokenAuthenticator | PipedriveOAuthAuthenticator:
    """Build the one authenticator a run shares across all streams."""
    mode = resolve_auth_mode(config)
    if mode == "api_token":
        # Header, never the URL: query strings end up in proxy and server logs.
        return APIKeyAuthenticator(key="x-api-token", value=config["api_token"], location="header")
    if mode == "access_token":
        expires_at = parse_expires_at(config.get("token_expires_at"))
        if expires_at is not None and expires_at <= time.time():
            why = (
                "oauth_mode is 'off'"
                if oauth_mode(config) == "off"
                else "no client_id and client_secret are set"
            )
            msg = (
                f"The access_token expired at {config.get('token_expires_at')} and is not "
                f"refreshed because {why}: set a new access_token, or configure OAuth refresh"
            )
            raise ConfigError(msg)
        return BearerTokenAuthenticator(token=config["access_token"])
    if store is None:
        # Imported here: the store module builds on this one.
        from tap_pipedrive.token_store import open_store

        store = open_store(config)
    authenticator = PipedriveOAuthAuthenticator(
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        tokens=TokenSet(
            access_token=config.get("access_token") or None,
            refresh_token=config.get("refresh_token") or None,
            expires_at=parse_expires_at(config.get("token_expires_at")),
            api_domain=config.get("api_domain") or None,
            # Config tokens carry no timestamp; store_is_newer orders them against
            # the store by their refresh token instead.
            obtained_at=None,
        ),
        oauth_url=config.get("oauth_url") or DEFAULT_OAUTH_URL,
        store=store,
        timeout=float(config.get("request_timeout") or 60),
        user_agent=config.get("user_agent"),
    )
    if authenticator.tokens.refresh_token or authenticator.is_token_valid():
        return authenticator
    if oauth_mode(config) == "get_and_refresh":
        # Interactive use: authorize in the browser now, then carry on with the run.
        from tap_pipedrive.login import login_for_run

        authenticator.take_login(login_for_run(config, store))
        return authenticator
    raise ConfigError(_no_refresh_token_message(config))
