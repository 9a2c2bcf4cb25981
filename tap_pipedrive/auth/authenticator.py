"""The SDK authenticator for Pipedrive OAuth: refresh, rotation, one company.

One authenticator instance is built per tap run and shared by every stream, so a
refresh happens once for the whole run rather than once per stream. It only ever
refreshes: getting the first tokens (a login) is the business of the layers above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import typing as t
from collections.abc import Mapping

import requests
from singer_sdk.authenticators import OAuthAuthenticator
from typing_extensions import override

from tap_pipedrive.auth.company import same_company
from tap_pipedrive.auth.tokens import DEFAULT_OAUTH_URL, TokenSet, TokenStore, request_tokens
from tap_pipedrive.errors import ConfigError, ReauthorizationRequired
from tap_pipedrive.redact import SecretRedactor


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

    @override
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

    @override
    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.ensure_token()}"
        return request

    # --- refresh -----------------------------------------------------------------
    @override
    @property
    def oauth_request_body(self) -> dict[str, t.Any]:
        return {"grant_type": "refresh_token", "refresh_token": self.tokens.refresh_token}

    @override
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
