"""Errors that end a run with one readable line instead of a traceback."""

from __future__ import annotations

import os
import re

from singer_sdk.exceptions import FatalAPIError

_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def login_command() -> str:
    """The login commands that work where the tap runs, for messages that ask for a login.

    Under Meltano they name the extractor that runs (an inherited one per company has its
    own token store), and the login gets an argument: invoked without any, Meltano runs a
    catalog discovery first, which cannot work before the first login.
    """
    extractor = os.environ.get("MELTANO_EXTRACTOR_NAME", "")
    if not (os.environ.get("MELTANO_PROJECT_ROOT") and _PLUGIN_NAME.fullmatch(extractor)):
        extractor = "tap-pipedrive"
    return f"`tap-pipedrive --login` (or `meltano invoke {extractor}:login --login-timeout 300`)"


class PipedriveError(Exception):
    """Base for every error the tap reports to the user as a single line."""

    exit_code = 1


class ConfigError(PipedriveError):
    """The configuration is incomplete, ambiguous or malformed."""


class ReauthorizationRequired(PipedriveError):
    """Pipedrive refused the refresh token; only a new authorization helps."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Pipedrive refused the OAuth refresh token ({reason}). "
            f"Run {login_command()} to authorize again."
        )


class PipedriveAPIError(PipedriveError, FatalAPIError):
    """A request failed in a way that retrying will not fix."""


class CredentialsRejected(PipedriveAPIError):
    """Pipedrive answered 401: the configured token is wrong, expired or revoked."""


class ServerUnreachable(PipedriveAPIError):
    """Nothing listens at the API host (connection refused): retrying at length is pointless."""


class DailyBudgetExhausted(PipedriveAPIError):
    """The company's daily API token budget is spent; state is kept for the next run."""


class StreamUnavailable(PipedriveAPIError):
    """The token's scopes or the company's plan do not allow this endpoint."""
