"""The Pipedrive tap: settings, the shared authenticator, and the stream list."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import typing as t
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import click
from singer_sdk import RESTStream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, InvalidStreamSortException
from singer_sdk.plugin_base import SingerCommand
from typing_extensions import override

from tap_pipedrive.auth import cli as auth_cli
from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.auth.login import DEFAULT_REDIRECT_URI
from tap_pipedrive.auth.modes import DEFAULT_OAUTH_MODE, OAUTH_MODES, resolve_auth_mode
from tap_pipedrive.auth.tokens import DEFAULT_OAUTH_URL
from tap_pipedrive.budget import DEFAULT_MAX_BUDGET_SHARE, Budget, BudgetReached
from tap_pipedrive.custom_fields.definitions import FieldCatalog
from tap_pipedrive.custom_fields.layout import prepare_discovery, prepare_sync
from tap_pipedrive.custom_fields.naming import NAMING_MODES, read_catalog
from tap_pipedrive.custom_fields.schema import LOCATIONS
from tap_pipedrive.errors import ConfigError, PipedriveError
from tap_pipedrive.estimate import estimate as estimate_cost
from tap_pipedrive.http.client import PipedriveClient, RequestSpec
from tap_pipedrive.http.fetch_ahead import (
    DEFAULT_MAX_PARALLEL_PARENTS,
    DEFAULT_MAX_PARALLEL_STREAMS,
    Prefetcher,
)
from tap_pipedrive.http.pacer import RateLimiter
from tap_pipedrive.http.transport import check_api_domain, check_url
from tap_pipedrive.output import SingerOutput
from tap_pipedrive.progress import DEFAULT_PROGRESS_INTERVAL, Progress
from tap_pipedrive.redact import SecretRedactor
from tap_pipedrive.run import Run
from tap_pipedrive.sdk_private import classproperty, env_var_prefix, parse_environment_config
from tap_pipedrive.streams import STREAM_TYPES
from tap_pipedrive.streams.base import MAX_PAGE_SIZE, PipedriveStream
from tap_pipedrive.streams.bases import (
    DEFAULT_FIELD_HISTORY,
    FIELD_HISTORY_SOURCES,
    ChangedParentsStream,
    wanted_list_paths,
)
from tap_pipedrive.streams.bookmarks import context_key, future_starting_value
from tap_pipedrive.streams.core import UsersStream
from tap_pipedrive.streams.fields import read_field_definitions
from tap_pipedrive.sweeps import DEFAULT_SWEEP_INTERVAL_DAYS, plan_full_reads

if t.TYPE_CHECKING:
    from types import FrameType

    from jsonschema import ValidationError
    from singer_sdk.singerlib import Catalog
    from singer_sdk.streams import Stream


DEFAULT_API_URL = "https://api.pipedrive.com"
SECRET_SETTINGS = ("api_token", "client_secret", "refresh_token", "access_token")

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "api_token",
        th.StringType,
        secret=True,
        title="API token",
        description="Personal API token (Settings > Personal preferences > API). Sent in the "
        "x-api-token header. Use this or the OAuth settings, not both.",
    ),
    th.Property(
        "client_id",
        th.StringType,
        title="OAuth client ID",
        description="Client ID of your app in Pipedrive's Developer Hub (OAuth mode).",
    ),
    th.Property(
        "client_secret",
        th.StringType,
        secret=True,
        title="OAuth client secret",
        description="Client secret of your app (OAuth mode).",
    ),
    th.Property(
        "refresh_token",
        th.StringType,
        secret=True,
        title="OAuth refresh token",
        description="Refresh token from `tap-pipedrive --login`. "
        "Rotated tokens are kept automatically.",
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        title="OAuth access token",
        description="An access token. Alone, it is used as-is until it expires; with a "
        "refresh_token, it is reused while still valid.",
    ),
    th.Property(
        "token_expires_at",
        th.DateTimeType,
        title="Access token expiry",
        description="When access_token expires (written by `--login`).",
    ),
    th.Property(
        "api_domain",
        th.StringType,
        title="Company API domain",
        description="The company host returned by OAuth (written by `--login`), e.g. "
        "https://mycompany.pipedrive.com. Used when api_url is not set. With OAuth it also "
        "names the company whose stored tokens this config may use.",
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start date",
        description="Only records updated at or after this time are read on the first sync. "
        "Absent means all history.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        title="API base URL",
        description="Overrides the API base; the tap calls {api_url}/api/v2/... and "
        "{api_url}/api/v1/.... Default: api_domain from OAuth, else https://api.pipedrive.com.",
    ),
    th.Property(
        "oauth_url",
        th.StringType,
        default=DEFAULT_OAUTH_URL,
        title="OAuth server URL",
        description="Base URL of Pipedrive's OAuth server.",
    ),
    th.Property(
        "oauth_mode",
        th.StringType,
        default=DEFAULT_OAUTH_MODE,
        allowed_values=list(OAUTH_MODES),
        title="OAuth mode",
        description="refresh: never open a browser; refresh from the stored or configured "
        "refresh token (scheduled jobs). get_and_refresh: run the browser login when no token "
        "is stored, refresh otherwise. off: use access_token exactly as given.",
    ),
    th.Property(
        "oauth_settings_location",
        th.StringType,
        title="OAuth token store",
        description="File that keeps the newest OAuth tokens between runs, one entry per "
        "company (mode 0600 in a private directory, locked while refreshing). Default: a "
        "per-user data directory keyed by client_id; under Meltano, "
        "<project>/.meltano/tap-pipedrive/oauth/.",
    ),
    th.Property(
        "redirect_uri",
        th.StringType,
        default=DEFAULT_REDIRECT_URI,
        title="OAuth redirect URI",
        description="Callback URL registered for the app; `--login` listens on it, so it "
        "must be http://localhost:PORT or http://127.0.0.1:PORT (any port).",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=500),
        default=500,
        title="Page size",
        description="Rows per request (at most 500; lower where an endpoint caps it).",
    ),
    th.Property(
        "user_agent",
        th.StringType,
        title="User agent",
        description="User-Agent header sent with every request.",
    ),
    th.Property(
        "include_mail_messages",
        th.BooleanType,
        default=False,
        title="Read mail messages",
        description="Read the messages of mail threads (stream mail_messages, one request "
        "per changed thread). Off by default: mail is personal.",
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(minimum=1),
        default=300,
        title="Request timeout",
        description="Seconds to wait for one HTTP response before retrying.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=1, maximum=30),
        default=8,
        title="Attempts per request",
        description="How often one request is tried (throttling, server errors, timeouts, "
        "dropped connections) before the run ends with an error; the state of everything "
        "delivered so far is kept.",
    ),
    th.Property(
        "retry_base_seconds",
        th.NumberType(minimum=0, maximum=60),
        default=1.0,
        title="First retry wait",
        description="Seconds before the first retry of a failed request; each further retry "
        "waits twice as long (at most 60 s). A 429 waits as long as Pipedrive's "
        "x-ratelimit-reset header says; a header asking for more than 60 s ends the run.",
    ),
    th.Property(
        "max_parallel_streams",
        th.IntegerType(minimum=1, maximum=16),
        default=DEFAULT_MAX_PARALLEL_STREAMS,
        title="Streams fetched in parallel",
        description="How many streams fetch their pages at the same time during a sync. "
        "Records are still written one stream after the other, so output and state are "
        "the same as with 1; 1 fetches only the stream being written (one page ahead).",
    ),
    th.Property(
        "field_history",
        th.StringType,
        default=DEFAULT_FIELD_HISTORY,
        allowed_values=list(FIELD_HISTORY_SOURCES),
        title="Source of field history",
        description="changelog: the field changes of deals, persons and organizations from "
        "their /changelog endpoints (streams *_changelog, 20 tokens a changed record). flow: "
        "their /flow updates feeds instead (streams *_flow, 40 tokens a changed record), "
        "which hold the same field changes plus activities, notes, files and mails that "
        "have streams of their own.",
    ),
    th.Property(
        "max_parallel_parents",
        th.IntegerType(minimum=1, maximum=64),
        default=DEFAULT_MAX_PARALLEL_PARENTS,
        title="Parents read in parallel",
        description="How many parents (deals, persons ...) have their children requested at "
        "the same time, within Pipedrive's burst limit. Records and state are the same as "
        "with 1, which reads one parent after the other.",
    ),
    th.Property(
        "progress_interval_seconds",
        th.IntegerType(minimum=0),
        default=DEFAULT_PROGRESS_INTERVAL,
        title="Progress interval",
        description="Seconds between progress lines (records, records per second, parents "
        "done and time left, per active stream); 0 turns them off. The summary table at the "
        "end of a sync is always logged.",
    ),
    th.Property(
        "log_request_metrics",
        th.BooleanType,
        default=False,
        title="Log per-request metrics",
        description="Log the Singer SDK's METRIC lines (one per HTTP request, plus counters "
        "and timers per stream and parent). Off by default: a full sync would write tens of "
        "thousands of them (docs/logging.md).",
    ),
    th.Property(
        "sweep_interval_days",
        th.IntegerType(minimum=1),
        default=DEFAULT_SWEEP_INTERVAL_DAYS,
        title="Days between sweeps",
        description="Incremental streams are read in full this often (a sweep), closed by "
        "ACTIVATE_VERSION so the target retires deleted and merged-away rows and removed "
        "children. Runs in between stay incremental. Streams without a bookmark are read in "
        "full, and close that way, on every run.",
    ),
    th.Property(
        "sweep_now",
        th.BooleanType,
        default=False,
        title="Sweep on this run",
        description="Sweep every selected incremental stream on this run, whatever the "
        "days since the last sweep.",
    ),
    th.Property(
        "daily_token_budget",
        th.IntegerType(minimum=1),
        title="Daily token budget",
        description="The company's daily API token budget, purchased top-ups included. "
        "Default: estimated from the plan (x-ratelimit-limit) and the active users, as "
        "30,000 x plan multiplier x seats.",
    ),
    th.Property(
        "max_budget_share",
        th.NumberType(minimum=0, maximum=1),
        default=DEFAULT_MAX_BUDGET_SHARE,
        title="Share of the daily budget per day",
        description="The most of the daily token budget the tap spends in one day (UTC), "
        "all its runs that day together. At the cap a run writes its state and ends with "
        "exit code 0; the next run continues where it stopped.",
    ),
    th.Property(
        "max_tokens_per_run",
        th.IntegerType(minimum=1),
        title="Tokens per run",
        description="The most API tokens one run spends (on top of max_budget_share).",
    ),
    th.Property(
        "custom_field_naming",
        th.StringType,
        default="name",
        allowed_values=list(NAMING_MODES),
        title="Custom field column names",
        description="name: snake_case of the field's label (collisions get a key suffix); "
        "key: Pipedrive's 40-character field keys.",
    ),
    th.Property(
        "custom_field_option_labels",
        th.BooleanType,
        default=True,
        title="Option labels for enum and set fields",
        description="true: enum values as their label, set values as an array of labels; "
        "false: the integer option ids.",
    ),
    th.Property(
        "custom_fields_location",
        th.StringType,
        default="flattened",
        allowed_values=list(LOCATIONS),
        title="Where custom fields go",
        description="flattened: one top-level column per custom field; nested: one "
        "custom_fields object holding them.",
    ),
).to_dict()


ESTIMATE_OPTION = click.Option(
    ["--estimate"],
    is_flag=True,
    help="Read only the parent lists (and the first page of other lists), then print what "
    "a sync of the selected streams would cost: calls, tokens, share of the daily budget "
    "and the runs it takes at the current settings. Run it first on a real account.",
)

CLI_HELP = """Read Pipedrive CRM data and write it as Singer messages to stdout.

\b
tap-pipedrive --config config.json --discover > catalog.json
tap-pipedrive --config config.json --catalog catalog.json --state state.json
tap-pipedrive --config config.json --login    # OAuth, once, in a browser
tap-pipedrive --config config.json --estimate # what a sync would cost
tap-pipedrive --about                         # settings and capabilities

Settings come from --config files or, with --config=ENV, from TAP_PIPEDRIVE_*
variables.

\b
Documentation: https://github.com/tap-pipedrive/tap-pipedrive#readme
"""


class PipedriveCommand(SingerCommand):
    """The Singer CLI, ending known failures with one readable line instead of a traceback."""

    @override
    def main(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        Progress.in_progress = None  # only a sync this command started is summed up
        try:
            return super().main(*args, **kwargs)
        except BudgetReached as exc:
            stopped = Progress.in_progress
            if stopped is not None:
                stopped.log_summary(stopped=True)
            self.logger.warning("%s", exc)
            sys.exit(0)
        except PipedriveError as exc:
            stopped = Progress.in_progress
            if stopped is not None:
                stopped.log_summary(stopped=True)  # what was delivered before the error
            # One line per problem (a config error may name several settings).
            for line in str(exc).splitlines():
                self.logger.error("%s", line)
            sys.exit(exc.exit_code)
        except InvalidStreamSortException as exc:
            # Rows sorted by update_time came back older than rows already written: a
            # server serving pages again (or out of order). Resuming from the state is safe.
            self.logger.error(
                "Pipedrive sent rows out of update_time order; stopping. The state written "
                "so far is kept. (%s)",
                str(exc).replace("Unsorted data detected in stream. ", ""),
            )
            sys.exit(1)
        except RecursionError:
            # Only data nested absurdly deep gets here (decoding catches most of it).
            self.logger.error(
                "Data from Pipedrive is nested too deeply to process; stopping. "
                "The state written so far is kept."
            )
            sys.exit(1)

    @override
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        auth_cli.note_requested_action(ctx, args)
        return super().parse_args(ctx, args)


class TapPipedrive(Tap):
    """Singer tap for Pipedrive."""

    name = "tap-pipedrive"
    package_name = "tap-pipedrive"
    config_jsonschema = CONFIG_SCHEMA
    # msgspec encoding, flushed per STATE rather than per message (see output.py).
    message_writer_class = SingerOutput
    # The schemas depend on the account's custom fields: the SDK then validates the
    # config on --discover too.
    dynamic_catalog = True

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # Runs as soon as the config is parsed, before the SDK builds the catalog (which
        # reads custom field definitions): secrets are masked and impossible settings
        # rejected before the first request.
        # Masked first: a secret given with the wrong type is quoted by the validation error.
        secrets = [str(self.config[key]) for key in SECRET_SETTINGS if self.config.get(key)]
        SecretRedactor.install(secrets)
        try:
            errors = super()._validate_config(raise_errors=raise_errors)
        except ConfigValidationError:
            # The SDK's lines quote values as Python reprs (Decimal('1.5')), secrets too.
            validator = th.DEFAULT_JSONSCHEMA_VALIDATOR(self.config_jsonschema)
            problems = sorted(
                {_describe_config_error(e) for e in validator.iter_errors(dict(self.config))}
            )
            raise ConfigError("\n".join(problems) or "The config is not valid") from None
        if raise_errors:
            self._check_config()
        if not self.config.get("log_request_metrics"):
            # The SDK logs a METRIC line per request (and per parent for child streams):
            # tens of thousands in a full sync. The progress lines and the summary table
            # say what a person needs; the setting brings the metrics back.
            self.metrics_logger.setLevel(logging.WARNING)
        return errors

    @override
    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:
        """Settings from TAP_PIPEDRIVE_* variables (--config=ENV), one line per bad value.

        The SDK parses them in one go, and a single bad number ends it with a traceback;
        it also leaves number settings as text, which validation then refuses.
        """
        schema = cls.config_jsonschema
        cls.append_builtin_config(schema)
        prefix = env_var_prefix(cls)
        config: dict[str, t.Any] = {}
        problems = []
        for key, prop in schema.get("properties", {}).items():
            try:
                found = parse_environment_config({"properties": {key: prop}}, prefix)
                value = found.get(key)
                if isinstance(value, str) and "number" in _json_types(prop):
                    found[key] = float(value)
            except ValueError:
                problems.append(_env_problem(prefix, key, prop))
                continue
            config.update(found)
        if problems:
            raise ConfigError("\n".join(problems))
        return config

    @cached_property
    def progress(self) -> Progress:
        """Progress lines during the sync and the summary table at its end (progress.py)."""
        return Progress(self.config.get("progress_interval_seconds", DEFAULT_PROGRESS_INTERVAL))

    @cached_property
    def client(self) -> PipedriveClient:
        """The one HTTP client of the run, shared by every stream and thread (http/client.py)."""
        return PipedriveClient(
            api_root=self.api_root,
            authenticator=self.authenticator,
            pacer=RateLimiter(),
            budget=self.budget,
            progress=self.progress,
            logger=self.logger,
            # The SDK's default User-Agent (plugin_base's public get_sdk_version).
            user_agent=str(self.config.get("user_agent") or f"singer-sdk/{self.get_sdk_version()}"),
            timeout=int(self.config.get("request_timeout") or 300),
            max_tries=int(self.config.get("max_retries", 8)),
            retry_base_seconds=float(self.config.get("retry_base_seconds", 1.0)),
        )

    @cached_property
    def run(self) -> Run:
        """What the streams of this run share (run.py)."""
        return Run(
            client=self.client,
            fetcher=Prefetcher(
                self.client,
                int(self.config.get("max_parallel_streams") or DEFAULT_MAX_PARALLEL_STREAMS),
                int(self.config.get("max_parallel_parents") or DEFAULT_MAX_PARALLEL_PARENTS),
            ),
            progress=self.progress,
            budget_stop_line=self.budget_stop_line,
        )

    @cached_property
    def budget(self) -> Budget:
        """What the run spends of the company's daily token budget (see budget.py)."""
        # Only the API-token mode is not OAuth traffic (x-ratelimit-limit differs).
        oauth = not self.config.get("api_token")
        return Budget.from_settings(self.config, oauth=oauth)

    def budget_stop_line(self, stream_name: str) -> str:
        """The one line of a run that stopped at its cap: what was read, what is left."""
        budget = self.budget
        selected = [
            s
            for s in self.streams.values()
            if (s.selected or s.has_selected_descendents) and not s.parent_stream_type
        ]
        names = [s.name for s in selected]
        at = names.index(stream_name) if stream_name in names else len(names)
        stats = self.progress.stream(stream_name)
        where = stream_name
        if stats.has_parents:
            of = f" of {stats.parents_listed:,}" if stats.listing_done else ""
            where += f" ({stats.parents_done:,}{of} parents read)"
        left = [where, *names[at + 1 :]]
        daily = budget.daily
        share = f" ({budget.spent_today / daily:.1%} of {daily:,} a day)" if daily else ""
        return (
            f"Token budget for this run reached: spent {budget.spent:,} tokens, "
            f"{budget.spent_today:,} today{share}; complete: {at} of {len(names)} streams; "
            f"left: {', '.join(left)}. The state is saved: the next run continues from here."
        )

    @override
    def _set_compatible_replication_methods(self) -> None:
        # Runs once at the start of every sync_all (which is final): the moment the
        # selection is settled, so the streams still to come can start fetching.
        # First the field definitions of the streams to sync, before any schema is read.
        prepare_sync(list(self.streams.values()), self.custom_field_catalog, self.input_catalog)
        super()._set_compatible_replication_methods()
        # Shared objects are built here, before any background thread could race to.
        run = self.run
        # Before pages are fetched ahead: a sweep reads from the start, not the bookmark.
        plan_full_reads(
            self.streams.values(),
            now=datetime.now(UTC),
            interval_days=int(
                self.config.get("sweep_interval_days") or DEFAULT_SWEEP_INTERVAL_DAYS
            ),
            force=bool(self.config.get("sweep_now")),
            logger=self.logger,
        )
        # The lists child streams read their parents from: a list stream reading one in
        # full keeps its rows for them (streams/bases.py, ParentLists).
        run.list_reads.wanted = wanted_list_paths(self.streams.values(), run)
        self.progress.begin()
        self.progress.footer = self.budget.summary_lines
        self.budget.resume(self.state)
        self._count_seats()
        run.fetcher.begin_sync(self._fetch_plan())

    def _fetch_plan(self) -> list[tuple[str, RequestSpec]]:
        """The requests of the selected top-level streams, in the order they are written.

        Only streams read by the standard loop (no reading of their own, such as children
        read per parent) are fetched ahead; each request starts from the bookmark the SDK
        will settle on when the stream's turn comes.
        """
        plan = []
        for stream in self.streams.values():
            if not isinstance(stream, PipedriveStream) or stream.parent_stream_type:
                continue
            if not (stream.selected or stream.has_selected_descendents):
                continue
            if _reads_its_own_way(stream):
                continue
            for partition in stream.partitions or [{}]:
                context = partition or None  # as the SDK passes it
                spec = stream.request_spec(context, future_starting_value(stream, context))
                plan.append((context_key(stream.name, context), spec))
        return plan

    def _count_seats(self, *, always: bool = False) -> None:
        """Read the active users for the budget estimate, unless the users stream does."""
        users = self.streams.get("users")
        if not always and (self.budget.daily_override or (users is not None and users.selected)):
            return
        for _ in UsersStream(tap=self).request_records(None):
            pass

    @override
    @property
    def streams(self) -> dict[str, Stream]:
        """The streams in the order they are synced: cheap before expensive.

        The SDK's ``load_streams`` (final) sorts them by name, and ``sync_all`` (final)
        syncs ``streams`` in its order: this public property is the one place to set it.
        Users first (their count sizes the budget), then the other list streams, then the
        per-parent streams, cheapest per parent first: each parent's children are worth
        about the same, so the cost per parent decides the value per token.
        """
        streams = super().streams
        if self.__dict__.get("_ordered_from") is not streams:
            ordered = sorted(streams.values(), key=_sync_rank)
            self.__dict__["_ordered"] = {stream.name: stream for stream in ordered}
            self.__dict__["_ordered_from"] = streams
        return t.cast("dict[str, Stream]", self.__dict__["_ordered"])

    _terminating = False

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or Ctrl-C: stop at once with a failing exit code and no state of its own.

        The SDK writes the in-memory state here, but the signal can land between a row's
        bookkeeping and its RECORD message, and that state would then cover a row never
        written. The STATE written after each page is exact: a rerun resumes from it.

        A second signal while the first one ends the run (delivered by the OS and
        forwarded by Meltano, say) is ignored, as singer-sdk 0.55 does: the shutdown under
        way finishes.
        """
        if self._terminating:
            return
        self._terminating = True
        name = signal.Signals(signum).name
        self.logger.error("Stopped by %s; run again to resume from the last STATE message", name)
        sys.exit(128 + signum)

    def _check_config(self) -> None:
        """Fail before any request on settings that cannot work."""
        resolve_auth_mode(self.config)
        # Where credentials may go: checked before the first request (see http/transport.py).
        for setting in ("api_url", "oauth_url"):
            if self.config.get(setting):
                check_url(setting, self.config[setting])
        if self.config.get("api_domain"):
            check_api_domain(self.config["api_domain"], self.config)
        start_date = self.config.get("start_date")
        if start_date and not _is_iso_date_time(start_date):
            # The SDK's schema check does not look at formats: caught here, not mid-sync.
            msg = (
                "start_date must be an ISO 8601 date or date-time such as "
                f"2024-01-31T00:00:00Z, got {str(start_date)[:40]!r}"
            )
            raise ConfigError(msg)
        known = set(self.config_jsonschema.get("properties", {}))
        for name in sorted(set(self.config) - known):
            self.logger.warning(
                "Ignoring the unknown setting %r: tap-pipedrive has no such setting "
                "(check its spelling)",
                name[:60],
            )

    @cached_property
    def authenticator(self) -> t.Any:
        """The one authenticator all streams share (after a login, if the config asks for one)."""
        return auth_cli.authenticator_for_run(self.config)

    @cached_property
    def api_root(self) -> str:
        """Scheme and host every API path hangs off."""
        url = self.config.get("api_url")
        if not url and isinstance(self.authenticator, PipedriveOAuthAuthenticator):
            # From the token answer or the token store: checked like a configured one.
            domain = self.authenticator.api_domain
            url = check_api_domain(domain, self.config) if domain else None
        url = url or self.config.get("api_domain") or DEFAULT_API_URL
        return str(url).rstrip("/")

    def __init__(self, *, catalog: t.Any = None, **kwargs: t.Any) -> None:
        # The SDK's catalog parser drops metadata entries it does not know: the field key
        # of each custom column is one (see custom_fields/naming.py).
        if isinstance(catalog, dict):
            catalog = read_catalog(catalog)
        super().__init__(catalog=catalog, **kwargs)

    @cached_property
    def custom_field_catalog(self) -> FieldCatalog:
        """Custom field definitions: one request per field set per run, for discovery and sync.

        Loaded by ``prepare_discovery`` and ``prepare_sync`` only; a schema reads it.
        """
        page_size = int(self.config.get("page_size") or MAX_PAGE_SIZE)
        return FieldCatalog(lambda source: read_field_definitions(self.run, source, page_size))

    @override
    @property
    def catalog(self) -> Catalog:
        if self.input_catalog is None:
            # Discovery: the catalog is built from every stream's schema.
            prepare_discovery(self.streams.values(), self.custom_field_catalog)
        return super().catalog

    @override
    @property
    def catalog_dict(self) -> dict[str, t.Any]:
        prepare_discovery(self.streams.values(), self.custom_field_catalog)
        return super().catalog_dict

    @override
    def discover_streams(self) -> list[PipedriveStream]:
        return [
            stream_type(tap=self)
            for stream_type in STREAM_TYPES
            if stream_type.enabled(self.config)
        ]

    @override
    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        for path in value:
            _check_config_file(path)
        # A login may name a config file it is about to create.
        try:
            return auth_cli.read_config_args(
                ctx, value, lambda values: super(TapPipedrive, cls).cb_config(ctx, param, values)
            )
        except FileNotFoundError as missing:
            raise ConfigError(str(missing)) from None

    @override
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
        estimate: bool = False,
    ) -> None:
        if estimate:
            cls._estimate(config, _json_object_file("--state", state), catalog)
            return
        super().invoke(
            about=about,
            about_format=about_format,
            config=config,
            state=_json_object_file("--state", state),
            catalog=_json_object_file("--catalog", catalog),
        )

    @classmethod
    def _estimate(cls, config: t.Any, state: t.IO[str] | None, catalog: t.IO[str] | None) -> None:
        """``--estimate``: print what a sync of the selected streams would cost."""
        catalog = _json_object_file("--catalog", catalog)
        tap = cls(
            config=getattr(config, "config", None) or {},
            state=None if state is None else json.loads(state.read()),
            catalog=None if catalog is None else json.loads(catalog.read()),
            parse_env_config=bool(getattr(config, "parse_env", False)),
            validate_config=True,
        )
        for line in estimate_cost(tap):
            click.echo(line)

    @override
    @classmethod
    def get_singer_command(cls) -> click.Command:
        base = super().get_singer_command()
        assert base.callback is not None
        return PipedriveCommand(
            name=base.name,
            callback=auth_cli.wrap_callback(cls, base.callback),
            params=[*base.params, *auth_cli.options(), ESTIMATE_OPTION],
            help=CLI_HELP,
            context_settings=base.context_settings,
            logger=cls.logger,
        )


def _reads_its_own_way(stream: PipedriveStream) -> bool:
    """Whether a stream reads other than by the standard loop (per parent, several passes)."""
    cls = type(stream)
    return (
        cls.get_records is not RESTStream.get_records
        or cls.request_records is not PipedriveStream.request_records
    )


_LIST_ORDER = {
    getattr(stream_type, "name", ""): index for index, stream_type in enumerate(STREAM_TYPES)
}


def _sync_rank(stream: Stream) -> tuple[int, float, int]:
    position = _LIST_ORDER.get(stream.name, len(_LIST_ORDER))
    if stream.name == "users":
        return (0, 0.0, position)
    if isinstance(stream, ChangedParentsStream):
        per_parent = stream.next_request_cost / max(1, stream.parents_per_request)
        return (2, per_parent, position)
    return (1, 0.0, position)


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
}


def _json_types(prop: t.Mapping[str, t.Any]) -> list[str]:
    kinds = prop.get("type") or [k for option in prop.get("anyOf", ()) for k in _json_types(option)]
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _expected(kinds: t.Iterable[str]) -> str:
    return " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds if kind != "null")


def _shown(name: str, value: t.Any) -> str:
    """A value as the user wrote it (JSON), never a Python repr; secrets not at all."""
    if name in SECRET_SETTINGS:
        return "a value that is not shown (the setting is secret)"
    text = json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _env_problem(prefix: str, key: str, prop: t.Mapping[str, t.Any]) -> str:
    variable = prefix + key.upper().replace("-", "_")
    value = os.environ.get(variable, "")
    return (
        f"{variable} (setting {key}) must be {_expected(_json_types(prop))}, "
        f"got {_shown(key, value)}"
    )


def _describe_config_error(error: ValidationError) -> str:
    """One line naming the setting and what it must be."""
    name = ".".join(str(part) for part in error.absolute_path) or "config"
    setting = name.split(".", 1)[0]
    got = f", got {_shown(setting, error.instance)}"
    expectation = {
        "type": lambda: f"must be {_expected(_json_types({'type': error.validator_value}))}",
        "minimum": lambda: f"must be at least {error.validator_value}",
        "maximum": lambda: f"must be at most {error.validator_value}",
        "enum": lambda: "must be one of " + ", ".join(map(str, error.validator_value)),
    }.get(str(error.validator))
    if expectation is not None:
        return f"Setting {name} {expectation()}{got}"
    if setting in SECRET_SETTINGS:
        return f"Setting {name} is not valid ({error.validator} check)"
    return f"Setting {name}: {error.message}"


def _is_iso_date_time(value: t.Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _json_object_file(option: str, handle: t.IO[str] | None) -> t.IO[str] | None:
    """A --state or --catalog file, checked: one line, not a traceback, if it is no JSON object.

    An empty or cut-off state file is an error rather than "no state": starting over
    silently would re-read everything, and the file is worth a look.
    """
    if handle is None:
        return None
    name = getattr(handle, "name", option)
    try:
        text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"Cannot read the {option} file {name}: {exc}"
        raise ConfigError(msg) from None
    try:
        content = json.loads(text)
    except ValueError as exc:
        msg = f"The {option} file {name} is not valid JSON ({exc})"
        raise ConfigError(msg) from None
    if not isinstance(content, dict):
        msg = f"The {option} file {name} must hold a JSON object, not a {type(content).__name__}"
        raise ConfigError(msg)
    return io.StringIO(text)


def _check_config_file(value: str) -> None:
    """One line, not a traceback, for a --config file that is not a JSON object."""
    path = Path(value)
    if value == "ENV" or not path.exists():
        return  # a missing file is reported by the reader (a login may be about to write it)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"Cannot read the config file {value}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    except ValueError as exc:
        msg = f"The config file {value} is not valid JSON ({exc})"
        raise ConfigError(msg) from None
    if not isinstance(content, dict):
        msg = f"The config file {value} must hold a JSON object, not a {type(content).__name__}"
        raise ConfigError(msg)


logging.getLogger("backoff").setLevel(logging.WARNING)
