"""The top of the auth package: what the ``tap-pipedrive`` command does about auth.

- Its OAuth flags: ``--login`` and the non-interactive JSON helpers. They sit beside
  the standard Singer flags (``--config``, ``--discover``, ...) on the one command.
  Human-readable text goes to stderr and the results to stdout; the JSON helpers
  print exactly one JSON object on stdout.
- Whether a run starts with a browser login (``authenticator_for_run``): the layers
  below only say that one is needed.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import sys
import typing as t
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click

from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.auth.login import (
    DEFAULT_LOGIN_TIMEOUT_SECONDS,
    LoginResult,
    OAuthClient,
    browser_login,
    iso_timestamp,
    login_for_run,
    new_state,
    no_browser_login,
    parse_pasted_redirect,
    save_login,
)
from tap_pipedrive.auth.modes import Authenticator, LoginRequired, build_authenticator
from tap_pipedrive.auth.store import open_store
from tap_pipedrive.errors import ConfigError
from tap_pipedrive.redact import SecretRedactor

LOGGER = logging.getLogger("tap-pipedrive")

# ``--client-secret -``: read the secret from stdin instead of the command line.
SECRET_FROM_STDIN = "-"

# Keys in click's context ``meta``.
_ACTION_META = "tap_pipedrive.oauth_action"
_CONFIG_PATHS_META = "tap_pipedrive.config_paths"

ACTION_FLAGS = ("--login", "--oauth-authorization-url", "--oauth-exchange-code", "--oauth-refresh")
# Standard Singer flags that make no sense together with an OAuth action.
_SINGER_ONLY_FLAGS = ("--discover", "--test", "--about", "--catalog", "--state")


@dataclasses.dataclass
class OAuthArgs:
    login: bool = False
    no_browser: bool = False
    oauth_authorization_url: bool = False
    oauth_exchange_code: str | None = None
    oauth_refresh: bool = False
    oauth_state: str | None = None
    include_tokens: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uri: str | None = None
    login_timeout: float = DEFAULT_LOGIN_TIMEOUT_SECONDS

    @property
    def actions(self) -> list[str]:
        chosen = {
            "--login": self.login,
            "--oauth-authorization-url": self.oauth_authorization_url,
            "--oauth-exchange-code": self.oauth_exchange_code is not None,
            "--oauth-refresh": self.oauth_refresh,
        }
        return [flag for flag, on in chosen.items() if on]

    def flag_settings(self) -> dict[str, str]:
        """Settings given as flags; they override the config files and environment."""
        values = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
        }
        return {key: value for key, value in values.items() if value}


PARAM_NAMES = tuple(field.name for field in dataclasses.fields(OAuthArgs))


def options() -> list[click.Option]:
    """The OAuth flags added to the tap's command."""
    return [
        click.Option(
            ["--login"],
            is_flag=True,
            help="Authorize with Pipedrive OAuth in the browser and save the tokens to the "
            "token store and the (last) --config file.",
        ),
        click.Option(
            ["--no-browser"],
            is_flag=True,
            help="With --login: print the authorization URL and read the redirect URL or "
            "code from stdin (for SSH and servers).",
        ),
        click.Option(
            ["--oauth-authorization-url"],
            is_flag=True,
            help="Print JSON with an authorization URL and its state, then exit.",
        ),
        click.Option(
            ["--oauth-exchange-code"],
            metavar="CODE_OR_REDIRECT_URL",
            help="Exchange an authorization code (or the whole redirect URL) for tokens, "
            "save them, print JSON.",
        ),
        click.Option(
            ["--oauth-refresh"],
            is_flag=True,
            help="Refresh the access token now, save the result, print JSON.",
        ),
        click.Option(
            ["--oauth-state", "oauth_state"],
            metavar="STATE",
            help="State for --oauth-authorization-url; with --oauth-exchange-code, the state "
            "the redirect URL must carry.",
        ),
        click.Option(
            ["--include-tokens"],
            is_flag=True,
            help="Also put access_token and refresh_token in the JSON of "
            "--oauth-exchange-code / --oauth-refresh.",
        ),
        click.Option(["--client-id"], metavar="ID", help="OAuth client id (overrides config)."),
        click.Option(
            ["--client-secret"],
            metavar="SECRET",
            help="OAuth client secret (overrides config). '-' reads it from the first line "
            "of stdin (asked for without echo on a terminal); a value typed here is "
            "visible to other local users in the process list.",
        ),
        click.Option(
            ["--redirect-uri"],
            metavar="URI",
            help="Redirect URI registered for the app (default http://localhost:33333).",
        ),
        click.Option(
            ["--login-timeout"],
            type=click.FloatRange(min=1),
            default=DEFAULT_LOGIN_TIMEOUT_SECONDS,
            show_default=True,
            help="Seconds --login waits for the browser.",
        ),
    ]


def note_requested_action(ctx: click.Context, args: Sequence[str]) -> None:
    """Remember, before options are parsed, whether this run is an OAuth action.

    ``--config`` is read eagerly; a login may name a config file that does not exist
    yet, and it has to know that before the file is opened.
    """
    names = {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}
    actions = [flag for flag in ACTION_FLAGS if flag in names]
    ctx.meta[_ACTION_META] = bool(actions)
    clash = [flag for flag in _SINGER_ONLY_FLAGS if flag in names]
    if actions and clash:
        msg = f"{actions[0]} cannot be combined with {clash[0]}"
        raise click.UsageError(msg, ctx=ctx)


def read_config_args(
    ctx: click.Context,
    values: tuple[str, ...],
    reader: Callable[[tuple[str, ...]], t.Any],
) -> t.Any:
    """Read ``--config`` values, keeping the file paths for a login to write back."""
    paths = [value for value in values if value != "ENV"]
    ctx.meta[_CONFIG_PATHS_META] = paths
    if ctx.meta.get(_ACTION_META):
        values = tuple(value for value in values if value == "ENV" or Path(value).exists())
    return reader(values)


def wrap_callback(tap_cls: t.Any, callback: Callable[..., t.Any]) -> Callable[..., t.Any]:
    """The command's callback: an OAuth action when one is asked for, the sync otherwise."""

    def run(**kwargs: t.Any) -> t.Any:
        args = OAuthArgs(**{name: kwargs.pop(name) for name in PARAM_NAMES})
        ctx = click.get_current_context()
        _check_combination(args, ctx)
        if args.client_secret not in (None, SECRET_FROM_STDIN):
            LOGGER.warning(
                "--client-secret on the command line is visible to other users of this "
                "machine (ps): use --client-secret - to read it from stdin, the config "
                "file, or TAP_PIPEDRIVE_CLIENT_SECRET with --config=ENV"
            )
        if not args.actions:
            return callback(**kwargs)
        if args.client_secret == SECRET_FROM_STDIN:
            args = dataclasses.replace(args, client_secret=read_client_secret(sys.stdin))
        config = _assemble_config(tap_cls, kwargs.get("config"), args)
        config_file = _config_file(ctx)
        return run_action(args, config, config_file)

    return run


def read_client_secret(stream: t.TextIO) -> str:
    """``--client-secret -``: the first line of stdin, or a prompt without echo on a terminal.

    Only that one line is read, so ``--login --no-browser`` reads the pasted redirect
    from the next line of the same stdin.
    """
    line = getpass.getpass("Client secret (not shown): ") if stream.isatty() else stream.readline()
    secret = line.strip()
    if not secret:
        msg = "--client-secret -: no client secret on the first line of stdin"
        raise ConfigError(msg)
    SecretRedactor.register(secret)
    return secret


# Modifier flags and the actions they apply to.
_MODIFIERS = {
    "--no-browser": ("no_browser", ("--login",)),
    "--include-tokens": ("include_tokens", ("--oauth-exchange-code", "--oauth-refresh")),
    "--oauth-state": ("oauth_state", ("--oauth-authorization-url", "--oauth-exchange-code")),
}


def _check_combination(args: OAuthArgs, ctx: click.Context) -> None:
    if len(args.actions) > 1:
        msg = f"Choose one of {', '.join(args.actions)}"
        raise click.UsageError(msg, ctx=ctx)
    for flag, (attribute, actions) in _MODIFIERS.items():
        value = getattr(args, attribute)
        if value not in (None, False) and not set(args.actions) & set(actions):
            msg = f"{flag} only applies to {' or '.join(actions)}"
            raise click.UsageError(msg, ctx=ctx)


def _assemble_config(tap_cls: t.Any, config_input: t.Any, args: OAuthArgs) -> dict[str, t.Any]:
    config: dict[str, t.Any] = dict(getattr(config_input, "config", None) or {})
    if getattr(config_input, "parse_env", False):
        config.update(tap_cls._env_var_config)
    config.update(args.flag_settings())
    secrets = [config.get(key) for key in ("client_secret", "refresh_token", "access_token")]
    SecretRedactor.register(*[str(value) for value in secrets if value])
    return config


def _config_file(ctx: click.Context) -> Path | None:
    paths = ctx.meta.get(_CONFIG_PATHS_META) or []
    return Path(paths[-1]) if paths else None


def _stderr(text: str) -> None:
    click.echo(text, err=True)


def run_action(
    args: OAuthArgs,
    config: Mapping[str, t.Any],
    config_file: Path | None,
    *,
    stdin: t.TextIO | None = None,
) -> None:
    """Carry out one OAuth action and print its result."""
    client = OAuthClient.from_config(config)
    if args.oauth_authorization_url:
        state = args.oauth_state or new_state()
        _print_json(
            {
                "authorization_url": client.authorization_url(state),
                "state": state,
                "redirect_uri": client.redirect_uri,
            }
        )
        return
    if args.oauth_refresh:
        _print_json(_refresh_now(config, include_tokens=args.include_tokens))
        return
    store = open_store(config)
    # Flags given on the command line go into the file too, so that it is complete.
    extra = args.flag_settings()
    if args.oauth_exchange_code is not None:
        pasted = parse_pasted_redirect(args.oauth_exchange_code)
        if pasted.state and not args.oauth_state:
            LOGGER.warning(
                "The redirect URL carries a state but no --oauth-state was given: the state "
                "is not checked (pass the state the authorization URL was made with)"
            )
        code = pasted.checked_code(args.oauth_state if args.oauth_state else None)
        tokens = client.exchange_code(code)
        result = save_login(
            tokens, config=config, store=store, config_file=config_file, extra_settings=extra
        )
        _print_json(_result_json(result, include_tokens=args.include_tokens))
        return
    if args.no_browser:
        reader = stdin or sys.stdin
        tokens = no_browser_login(
            client,
            read_line=lambda: _read_line(reader),
            echo=_stderr,
            show_url=click.echo,
        )
    else:
        tokens = browser_login(client, timeout=args.login_timeout, echo=_stderr)
    result = save_login(
        tokens, config=config, store=store, config_file=config_file, extra_settings=extra
    )
    click.echo(result.describe())


def _read_line(stream: t.TextIO) -> str:
    line = stream.readline()
    if not line:
        raise EOFError
    return line


def _result_json(result: LoginResult, *, include_tokens: bool) -> dict[str, t.Any]:
    body = result.summary()
    if include_tokens:
        body["access_token"] = result.tokens.access_token
        body["refresh_token"] = result.tokens.refresh_token
    return body


def _refresh_now(config: Mapping[str, t.Any], *, include_tokens: bool) -> dict[str, t.Any]:
    # Never a browser here, whatever oauth_mode says: this is for scripts.
    config = {**config, "oauth_mode": "refresh"}
    authenticator = build_authenticator(config)
    if not isinstance(authenticator, PipedriveOAuthAuthenticator):
        msg = "--oauth-refresh needs OAuth settings (client_id and client_secret), not api_token"
        raise ConfigError(msg)
    # Drop the access token in hand so that a refresh really happens, unless another
    # process refreshes meanwhile (the store lock makes us reuse its result then).
    authenticator.invalidate()
    authenticator.ensure_token()
    tokens = authenticator.tokens
    store_path = getattr(authenticator.store, "path", None)
    body: dict[str, t.Any] = {
        "api_domain": tokens.api_domain,
        "scope": tokens.scope,
        "expires_at": iso_timestamp(tokens.expires_at),
        "token_store": str(store_path) if store_path else None,
        "refreshed": authenticator.refresh_count > 0,
    }
    if include_tokens:
        body["access_token"] = tokens.access_token
        body["refresh_token"] = tokens.refresh_token
    return body


def _print_json(body: Mapping[str, t.Any]) -> None:
    click.echo(json.dumps(body, sort_keys=True))


def authenticator_for_run(config: Mapping[str, t.Any]) -> Authenticator:
    """The one authenticator of a sync or discovery run.

    oauth_mode get_and_refresh with no tokens in the config or the token store is
    interactive use: the user authorizes in the browser now (speaking only through the
    log, since stdout carries Singer messages), then the run carries on with the
    login's tokens, unless they are another company's than the config names.
    """
    try:
        return build_authenticator(config)
    except LoginRequired as required:
        tokens = login_for_run(config, required.store)
        return build_authenticator(config, store=required.store, login_tokens=tokens)


__all__ = [
    "ACTION_FLAGS",
    "OAuthArgs",
    "authenticator_for_run",
    "note_requested_action",
    "options",
    "read_config_args",
    "run_action",
    "wrap_callback",
]
