"""OAuth 2.0 authorization-code flow as Pipedrive runs it (authorize, token, revoke).

One OAuth server serves every company of the sandbox: the consent page lets the user
pick the company (when there are several), and every code, refresh token and access
token belongs to the company it was granted for. The token answer's ``api_domain``
is that company's own server.
"""

from __future__ import annotations

import base64
import binascii
import html
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

CODE_LIFETIME = 300.0
SCOPE = "base deals:read contacts:read activities:read products:read leads:read projects:read "
SCOPE += "users:read mail:read goals:read recents:read phone-integration admin"


class OAuthError(Exception):
    """An error answer of the token endpoint."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class CompanyServer(Protocol):
    """What the OAuth server needs to know of a company's API server."""

    @property
    def url(self) -> str: ...

    def check_api_token(self, token: str) -> bool: ...


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    issued_at: float
    company: str
    used: bool = False


@dataclass
class AccessToken:
    refresh_token: str | None
    expires_at: float
    company: str


@dataclass(frozen=True)
class RefreshGrant:
    client_id: str
    company: str


class OAuthState:
    """Codes, access tokens and refresh tokens; times come from the sandbox clock."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        api_token: str,
        access_token_ttl: float,
        rotate_refresh_tokens: bool,
        clock: Callable[[], float],
        company: str = "sandbox-company",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_token = api_token
        self.access_token_ttl = access_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock = clock
        self.lock = threading.Lock()
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        # Company subdomain -> its API server; the first one is the default company.
        self.default_company = company
        self.companies: dict[str, CompanyServer] = {}

    def api_domain_of(self, company: str) -> str | None:
        server = self.companies.get(company)
        return server.url if server is not None else None

    # ---- authorize -------------------------------------------------------------------------
    def authorize_page(self, query: dict[str, str]) -> tuple[int, str]:
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if client_id != self.client_id:
            return 400, _page("Invalid client", "<p>Unknown client_id.</p>")
        if not _valid_redirect(redirect_uri):
            return 400, _page("Invalid request", "<p>redirect_uri is missing or malformed.</p>")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in ("client_id", "redirect_uri", "state")
        )
        if len(self.companies) > 1:
            options = "".join(
                f'<option value="{html.escape(name)}">{html.escape(name)}</option>'
                for name in self.companies
            )
            hidden += f'<label>Company <select name="company">{options}</select></label>'
        body = (
            "<p>An app wants read access to your Pipedrive data.</p>"
            f'<form method="post" action="/oauth/authorize/decision">{hidden}'
            '<button type="submit" id="allow" name="decision" value="allow">Allow</button> '
            '<button type="submit" id="deny" name="decision" value="deny">Deny</button>'
            "</form>"
        )
        return 200, _page("Authorize app", body)

    def decide(self, form: dict[str, str]) -> tuple[int, str]:
        """Returns (status, Location or HTML page) for the consent form's POST."""
        client_id = form.get("client_id", "")
        redirect_uri = form.get("redirect_uri", "")
        if client_id != self.client_id or not _valid_redirect(redirect_uri):
            return 400, _page("Invalid request", "<p>Unknown client or redirect_uri.</p>")
        company = form.get("company") or self.default_company
        if self.companies and company not in self.companies:
            return 400, _page("Invalid request", "<p>Unknown company.</p>")
        params: dict[str, str] = {}
        if form.get("decision") == "allow":
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = AuthCode(client_id, redirect_uri, self.clock(), company)
            params["code"] = code
        else:
            params["error"] = "user_denied"
        if "state" in form:
            params["state"] = form["state"]
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return 302, redirect_uri + separator + urlencode(params)

    # ---- token endpoint --------------------------------------------------------------------
    def client_from(self, authorization: str | None, form: dict[str, str]) -> None:
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError(401, "invalid_client", "Malformed Basic credentials") from None
            client_id, _, secret = decoded.partition(":")
            if (
                scheme.lower() != "basic"
                or not _same(client_id, self.client_id)
                or not _same(secret, self.client_secret)
            ):
                raise OAuthError(401, "invalid_client", "Invalid client credentials")
            return
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        if not client_id or not secret:
            raise OAuthError(400, "invalid_client", "Client credentials are missing")
        if not _same(client_id, self.client_id) or not _same(secret, self.client_secret):
            raise OAuthError(400, "invalid_client", "Invalid client credentials")

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Answer a token request (raises OAuthError); client authentication comes first."""
        self.client_from(authorization, form)
        grant_type = form.get("grant_type", "")
        with self.lock:
            if grant_type == "authorization_code":
                return self._code_grant(form)
            if grant_type == "refresh_token":
                return self._refresh_grant(form)
            if grant_type == "exchange_api_token":
                company = self._company_of_api_token(form.get("api_token", ""))
                if company is None:
                    raise OAuthError(400, "invalid_grant", "Invalid API token")
                return self._issue(None, company)
        if not grant_type:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        raise OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")

    def _code_grant(self, form: dict[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        redirect_uri = form.get("redirect_uri", "")
        if not code:
            raise OAuthError(400, "invalid_request", "code is required")
        found = self.codes.get(code)
        if found is None or found.used:
            raise OAuthError(400, "invalid_grant", "Authorization code is invalid or used")
        if self.clock() - found.issued_at > CODE_LIFETIME:
            raise OAuthError(400, "invalid_grant", "Authorization code has expired")
        if redirect_uri != found.redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match")
        found.used = True
        return self._issue(None, found.company)

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        if not token:
            raise OAuthError(400, "invalid_request", "refresh_token is required")
        grant = self.refresh_tokens.get(token)
        if grant is None or grant.client_id != self.client_id:
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        return self._issue(token, grant.company)

    def _company_of_api_token(self, api_token: str) -> str | None:
        if not self.companies:
            return self.default_company if _same(api_token, self.api_token) else None
        for company, server in self.companies.items():
            if server.check_api_token(api_token):
                return company
        return None

    def _issue(self, old_refresh: str | None, company: str) -> dict[str, Any]:
        refresh = old_refresh
        if refresh is None or self.rotate_refresh_tokens:
            if refresh is not None:
                del self.refresh_tokens[refresh]
            refresh = new_refresh_token()
            self.refresh_tokens[refresh] = RefreshGrant(self.client_id, company)
        access = new_access_token()
        self.access_tokens[access] = AccessToken(
            refresh, self.clock() + self.access_token_ttl, company
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": SCOPE,
            "expires_in": int(self.access_token_ttl),
        }
        api_domain = self.api_domain_of(company)
        if api_domain is not None:
            body["api_domain"] = api_domain
        return body

    def issue_refresh_token(self, company: str | None = None) -> str:
        """A valid refresh token, as a past login would have left (default company)."""
        with self.lock:
            token = new_refresh_token()
            self.refresh_tokens[token] = RefreshGrant(
                self.client_id, company or self.default_company
            )
            return token

    def revoke(self, form: dict[str, str]) -> None:
        token = form.get("token", "")
        with self.lock:
            if token in self.refresh_tokens:
                del self.refresh_tokens[token]
                self.access_tokens = {
                    key: value
                    for key, value in self.access_tokens.items()
                    if value.refresh_token != token
                }
            self.access_tokens.pop(token, None)

    # ---- API access ------------------------------------------------------------------------
    def access_valid(self, token: str, company: str | None = None) -> bool:
        """Whether the access token is live (and, given a company, one of its tokens)."""
        with self.lock:
            found = self.access_tokens.get(token)
            if found is None or (company is not None and found.company != company):
                return False
            return self.clock() < found.expires_at

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _valid_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def new_access_token() -> str:
    # Real access tokens are long (hundreds of characters); mimic that.
    return "v1u:" + secrets.token_urlsafe(120)


def new_refresh_token() -> str:
    return "r1:" + secrets.token_urlsafe(48)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )
