"""OAuth tokens and Pipedrive's token endpoint: the bottom of the auth package.

``TokenSet`` is what Pipedrive hands out, ``request_tokens`` the one place that talks
to the token endpoint (for a refresh and for a login's code alike), and ``TokenStore``
the interface the store implements and the authenticator relies on.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t
from collections.abc import Mapping
from datetime import datetime

import requests
from typing_extensions import override

from tap_pipedrive.errors import ConfigError, PipedriveError, ReauthorizationRequired
from tap_pipedrive.http.transport import RedirectRefused, TransportSession, host_of

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

    @override
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
    """Where OAuth tokens persist between runs (implemented in ``auth.store``)."""

    def locked(self) -> t.ContextManager[None]:
        """Hold an exclusive lock so that only one process refreshes at a time."""

    def load(self, current: TokenSet | None = None) -> TokenSet | None:
        """Return the stored tokens that continue the authorization of ``current``."""

    def save(self, tokens: TokenSet, *, replacing: t.Iterable[str | None] = ()) -> None:
        """Persist tokens atomically; ``replacing`` names refresh tokens they supersede."""

    def replaced(self, refresh_token: str, *, api_domain: str | None) -> bool:
        """Whether the company's stored tokens recorded this refresh token as superseded."""


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


def parse_expires_at(value: t.Any) -> float | None:
    """Read a stored expiry given as epoch seconds or an ISO timestamp."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        msg = f"token_expires_at must be an ISO 8601 timestamp, got {str(value)[:40]!r}"
        raise ConfigError(msg) from None
