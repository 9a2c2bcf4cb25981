"""Which authentication the config asks for, and the one authenticator it gets.

Three modes: an API token, OAuth (refreshed, with the token store), or a bare access
token. Building an OAuth authenticator never opens a browser: when a login is the
only way to get tokens, ``build_authenticator`` says so with ``LoginRequired`` and
the command layer (``auth.cli``) decides to run it.
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Mapping

from singer_sdk.authenticators import APIKeyAuthenticator, BearerTokenAuthenticator

from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.auth.store import open_store, store_path_from_config
from tap_pipedrive.auth.tokens import (
    DEFAULT_OAUTH_URL,
    TokenSet,
    TokenStore,
    parse_expires_at,
)
from tap_pipedrive.errors import ConfigError, login_command

AuthMode = t.Literal["api_token", "oauth", "access_token"]
# What a run authenticates with, one of the three modes.
Authenticator: t.TypeAlias = (
    APIKeyAuthenticator | BearerTokenAuthenticator | PipedriveOAuthAuthenticator
)
OAUTH_MODES = ("get_and_refresh", "refresh", "off")
DEFAULT_OAUTH_MODE = "refresh"


class LoginRequired(ConfigError):
    """oauth_mode get_and_refresh, and no tokens anywhere: a login has to come first.

    ``store`` is the token store the authenticator was built with; the login saves
    its tokens there and the authenticator is built again with the same store.
    """

    def __init__(self, message: str, *, store: TokenStore) -> None:
        super().__init__(message)
        self.store = store


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
    return (
        open_store(config).load(TokenSet(api_domain=config.get("api_domain") or None)) is not None
    )


def _company_suffix(config: Mapping[str, t.Any]) -> str:
    return f" for {str(config['api_domain'])[:80]}" if config.get("api_domain") else ""


def _no_refresh_token_message(config: Mapping[str, t.Any]) -> str:
    company = _company_suffix(config)
    return (
        "OAuth is configured without a refresh_token and the token store "
        f"{store_path_from_config(config)} holds none{company}: run {login_command()} "
        "to authorize, set refresh_token, or set oauth_mode to get_and_refresh"
    )


def build_authenticator(
    config: Mapping[str, t.Any],
    *,
    store: TokenStore | None = None,
    login_tokens: TokenSet | None = None,
) -> Authenticator:
    """Build the one authenticator a run shares across all streams.

    It never starts a login. With oauth_mode get_and_refresh and no tokens in the
    config or the store it raises ``LoginRequired``; the caller runs the login, then
    builds again with the login's tokens as ``login_tokens`` and the same store. Those tokens
    are refused when they belong to another company than the config names.
    """
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
    if login_tokens is not None:
        authenticator.take_login(login_tokens)
        return authenticator
    if oauth_mode(config) == "get_and_refresh":
        raise LoginRequired(_login_required_message(config), store=store)
    raise ConfigError(_no_refresh_token_message(config))


def _login_required_message(config: Mapping[str, t.Any]) -> str:
    return (
        f"No OAuth tokens in the config or the token store{_company_suffix(config)}: "
        f"oauth_mode get_and_refresh needs a login first ({login_command()})"
    )
