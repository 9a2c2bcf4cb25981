"""Errors that end a run with one readable line instead of a traceback."""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError


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
            "Run `tap-pipedrive --login` (or `meltano invoke tap-pipedrive:login`) "
            "to authorize again."
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
