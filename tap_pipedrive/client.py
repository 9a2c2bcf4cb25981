"""The base stream: URLs, auth, paging, error handling and value normalisation.

Stream classes in ``streams.py`` only declare what differs: name, path, keys,
replication and the request parameters particular to their endpoint.
"""

from __future__ import annotations

import json
import random
import typing as t
import weakref
import zlib
from functools import cached_property
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

import backoff
import msgspec
import requests
from singer_sdk import RESTStream, SchemaDirectory
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._util import utc_now
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.singerlib import RecordMessage

from tap_pipedrive import schemas
from tap_pipedrive.auth.authenticator import PipedriveOAuthAuthenticator
from tap_pipedrive.budget import STATE_KEY, BudgetReached, endpoint_cost, request_cost
from tap_pipedrive.conform import Conformer
from tap_pipedrive.custom_fields import CONTAINER, CustomFieldSchema, layout_for
from tap_pipedrive.endpoints import scope_hint
from tap_pipedrive.errors import (
    CredentialsRejected,
    DailyBudgetExhausted,
    PipedriveAPIError,
    ServerUnreachable,
    StreamUnavailable,
)
from tap_pipedrive.normalize import (
    CoercionLog,
    TimestampPaths,
    format_timestamp,
    strip_nul_characters,
)
from tap_pipedrive.progress import StreamProgress
from tap_pipedrive.ratelimit import MAX_RESET_SECONDS, header_number, reset_seconds
from tap_pipedrive.redact import escape_controls
from tap_pipedrive.sweeps import RETIRED_VERSION, close_full_read
from tap_pipedrive.transport import TransportSession, host_of

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

SCHEMA_SOURCE = SchemaDirectory(schemas)
# Singer's soft-delete column: a row holding a time here is retired in the target.
DELETED_AT = "_sdc_deleted_at"
MAX_PAGE_SIZE = 500
# Consecutive 429s after which throttling is taken to be the daily budget rather than
# the 2-second burst window (Pipedrive exposes no header for the daily budget).
BURST_429_LIMIT = 6
# Attempts at a host that refuses the connection outright. Nothing listens there (a wrong
# api_url, a service that is down), so the patient retries kept for timeouts and
# dropped connections would only delay the error by minutes.
REFUSED_CONNECTION_ATTEMPTS = 3

_json_decoder = msgspec.json.Decoder()


class JSONTooDeep(ValueError):
    """A body nested deeper than Python's recursion limit lets it be decoded."""


def _decode_json(content: bytes) -> t.Any:
    try:
        return _json_decoder.decode(content)
    except UnicodeDecodeError as exc:
        # msgspec reports bytes that are not UTF-8 as a UnicodeDecodeError; for the tap it
        # is a garbled body like any other.
        msg = f"Body is not valid UTF-8 ({exc.reason})"
        raise msgspec.DecodeError(msg) from None
    except RecursionError:
        # Real answers nest a few levels; asking again would bring the same body.
        raise JSONTooDeep("JSON nested too deeply to read") from None


# What the SDK's request decorator retries.
RETRIED_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def response_json(response: requests.Response) -> t.Any:
    """Decode a response body once; paginator and parser share the result."""
    cached = getattr(response, "_pipedrive_json", None)
    if cached is None:
        cached = _decode_json(response.content)
        # JSON can only carry NUL as this escape: the check costs one scan of the bytes.
        if b"\\u0000" in response.content:
            response._pipedrive_nul_fields = strip_nul_characters(cached)  # type: ignore[attr-defined]
        response._pipedrive_json = cached  # type: ignore[attr-defined]
    return cached


def forget_json(response: requests.Response) -> None:
    """Drop the decoded body of a response that waits in a buffer (it is decoded again)."""
    response.__dict__.pop("_pipedrive_json", None)


class _Envelope(msgspec.Struct):
    """What paging and the checks of a page need; ``data`` is skipped over, not decoded."""

    additional_data: t.Any = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_envelope_decoder = msgspec.json.Decoder(_Envelope)


def _decode_envelope(content: bytes) -> _Envelope:
    try:
        return _envelope_decoder.decode(content)
    except UnicodeDecodeError as exc:
        msg = f"Body is not valid UTF-8 ({exc.reason})"
        raise msgspec.DecodeError(msg) from None
    except RecursionError:
        raise JSONTooDeep("JSON nested too deeply to read") from None


_FALSY_JSON = (b"null", b"[]", b"{}", b"false", b'""', b"0")


def _fingerprint(rows: memoryview) -> tuple[int, int]:
    """Size and CRC of a page's raw rows.

    Cheap enough for every page (about 0.5 ms per MB, outside the GIL). Only several
    repeats in a row count, so a chance collision of two real pages changes nothing, and
    a server that forged one could as well have sent an error.
    """
    return rows.nbytes, zlib.crc32(rows)


# What the first byte of a JSON value says it is.
_JSON_KINDS = {ord("["): "list", ord("{"): "object", ord("n"): "null", ord('"'): "string"}


class _UndecodedRows:
    """A page's rows before they are decoded: truthy when there are any; len() decodes."""

    __slots__ = ("_present", "_response", "fingerprint", "kind")

    def __init__(self, response: requests.Response, raw: msgspec.Raw) -> None:
        # A weak reference: the response holds this object, and a cycle would keep each
        # page (with its decoded rows) alive until the garbage collector came round.
        self._response = weakref.ref(response)
        view = memoryview(raw)
        self._present = view.nbytes > 8 or bytes(view).replace(b" ", b"") not in _FALSY_JSON
        # msgspec hands over the value without surrounding whitespace.
        first = view[0] if view.nbytes else ord("n")
        self.kind = _JSON_KINDS.get(first, "number" if first in b"-0123456789" else "boolean")
        # Identifies the page's rows: paging that serves the same rows again is a loop.
        self.fingerprint = _fingerprint(view)

    def __bool__(self) -> bool:
        return self._present

    def __len__(self) -> int:
        response = self._response()
        return len(response_json(response).get("data") or ()) if response is not None else 0


def response_head(response: requests.Response) -> t.Any:
    """A page as paging and checks see it, without decoding its rows.

    The thread fetching pages needs only ``additional_data`` (the next cursor or offset)
    and whether rows came at all; the rows are decoded once, by the thread writing them
    (``response_json``). Skipping them still checks that the whole body is JSON, and keeps
    the next request from waiting on a decode of the page before it. A body decoded
    already is used as it is.
    """
    cached = response.__dict__.get("_pipedrive_json")
    if cached is not None:
        return cached
    head = response.__dict__.get("_pipedrive_head")
    if head is None:
        envelope = _decode_envelope(response.content)
        head = {
            "additional_data": envelope.additional_data,
            "data": _UndecodedRows(response, envelope.data),
        }
        response._pipedrive_head = head  # type: ignore[attr-defined]
    return head


# Pages in a row without a single row, after which a list that still points further is
# taken to be endless. An empty page can happen mid-list (rows the user may not see
# filtered out of a page), but 50 in a row would be 25,000 hidden rows in a row; giving
# up costs at most 50 requests.
MAX_EMPTY_PAGES = 50
# Pages in a row whose rows are those of a page read before in the same partition (with
# fresh cursors or offsets each time). A real list never serves one page twice.
MAX_REPEATED_PAGES = 3


def _rows_fingerprint(response: requests.Response) -> tuple[int, int]:
    rows = response_head(response).get("data")
    if isinstance(rows, _UndecodedRows):
        return rows.fingerprint
    return _fingerprint(memoryview(msgspec.json.encode(rows)))


def _paging_error(response: requests.Response, what: str) -> PipedriveAPIError:
    path = urlparse(response.url).path
    return PipedriveAPIError(f"Pipedrive's paging for {path} {what}; stopping")


def _additional_data(response: requests.Response) -> dict[str, t.Any]:
    """``additional_data`` of a page: an object, or {} when absent."""
    additional = response_head(response).get("additional_data")
    if additional is None:
        return {}
    if not isinstance(additional, dict):
        raise _paging_error(
            response, f"sent additional_data as a {_json_type(additional)}, not an object"
        )
    return additional


def _json_type(value: t.Any) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "list",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


class _GuardedPaginator(BaseAPIPaginator[t.Any]):
    """Paging of one partition that cannot go round in circles.

    Every page that is followed is checked: too many empty pages in a row, or several
    pages in a row that repeat rows already read, end the read with one line. The rows
    of those pages are written first, as with any paging error: nothing read is lost.
    """

    def __init__(self, start_value: t.Any) -> None:
        super().__init__(start_value)
        self._fingerprints: set[tuple[int, int]] = set()
        self._empty_in_a_row = 0
        self._repeated_in_a_row = 0

    def advance(self, response: requests.Response) -> None:
        if not response_head(response).get("data"):
            self._empty_in_a_row += 1
            if self._empty_in_a_row >= MAX_EMPTY_PAGES:
                raise _paging_error(
                    response, f"sent {self._empty_in_a_row} empty pages in a row, each saying more"
                )
        else:
            self._empty_in_a_row = 0
            fingerprint = _rows_fingerprint(response)
            if fingerprint in self._fingerprints:
                self._repeated_in_a_row += 1
                if self._repeated_in_a_row >= MAX_REPEATED_PAGES:
                    raise _paging_error(
                        response,
                        f"served rows already read on {self._repeated_in_a_row} pages in a row",
                    )
            else:
                self._repeated_in_a_row = 0
                self._fingerprints.add(fingerprint)
        super().advance(response)


class CursorPaginator(_GuardedPaginator):
    """API v2 cursor paging: follow ``additional_data.next_cursor`` until it is null.

    Every cursor of the partition is remembered: one sent again is a loop (A, B, A...).
    """

    def __init__(self) -> None:
        super().__init__(None)
        self._cursors: set[str] = set()

    @staticmethod
    def _next_cursor(response: requests.Response) -> str | None:
        cursor = _additional_data(response).get("next_cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise _paging_error(
                response,
                f"sent additional_data.next_cursor as a {_json_type(cursor)}, not a string",
            )
        return cursor or None

    def get_next(self, response: requests.Response) -> str | None:
        cursor = self._next_cursor(response)
        if cursor is not None and cursor == self.current_value:
            msg = f"Pipedrive repeated the page cursor for {urlparse(response.url).path}; stopping"
            raise PipedriveAPIError(msg)
        if cursor is not None:
            if cursor in self._cursors:
                raise _paging_error(response, "sent a cursor it had sent before (a loop)")
            self._cursors.add(cursor)
        return cursor

    def continue_if_empty(self, response: requests.Response) -> bool:
        # An empty page that still carries a cursor is not the end of the list.
        return self._next_cursor(response) is not None


class OffsetPaginator(_GuardedPaginator):
    """API v1 offset paging for both envelope shapes.

    Some endpoints nest ``pagination`` in ``additional_data``; others put ``start``,
    ``limit`` and ``more_items_in_collection`` straight into ``additional_data``.
    The next offset falls back to rows received (not the limit asked for), because
    the server may clamp the limit: overlapping rows are harmless, skipped rows are not.
    Offsets only ever grow, so no offset is read twice.
    """

    def __init__(self) -> None:
        super().__init__(0)

    @staticmethod
    def _pagination(response: requests.Response) -> dict[str, t.Any]:
        additional = _additional_data(response)
        pagination = additional.get("pagination")
        if pagination is None:
            return additional
        if not isinstance(pagination, dict):
            raise _paging_error(
                response,
                f"sent additional_data.pagination as a {_json_type(pagination)}, not an object",
            )
        return pagination

    def has_more(self, response: requests.Response) -> bool:
        # The collection's flag decides, not the page's size: an empty page may still
        # announce more rows, and stopping there would lose them.
        pagination = self._pagination(response)
        if "more_items_in_collection" not in pagination:
            return False
        more = pagination["more_items_in_collection"]
        if not isinstance(more, bool):
            # "false" is true to Python: guessing could loop or cut the list.
            raise _paging_error(
                response,
                f"sent more_items_in_collection as a {_json_type(more)} ({str(more)[:20]!r}), "
                "not true or false",
            )
        return more

    def continue_if_empty(self, response: requests.Response) -> bool:
        return self.has_more(response)

    def get_next(self, response: requests.Response) -> int | None:
        next_start = self._pagination(response).get("next_start")
        if next_start is None:
            next_start = self.current_value + len(response_head(response).get("data") or ())
        elif isinstance(next_start, bool) or not isinstance(next_start, int):
            raise _paging_error(
                response,
                f"sent next_start as a {_json_type(next_start)} ({str(next_start)[:20]!r}), "
                "not an integer",
            )
        if next_start <= self.current_value:
            path = urlparse(response.url).path
            msg = f"Pipedrive returned a non-advancing offset for {path}; stopping"
            raise PipedriveAPIError(msg)
        return next_start


class PipedriveStream(RESTStream[t.Any]):
    """Everything the Pipedrive streams share."""

    # The JSON file's schema, plus the custom fields of ``custom_fields_entity``.
    schema = CustomFieldSchema(SCHEMA_SOURCE)
    api_version: t.ClassVar[str] = "v2"
    primary_keys: t.ClassVar[tuple[str, ...]] = ("id",)
    # Fixed query parameters of the endpoint (e.g. a status filter).
    extra_params: t.ClassVar[dict[str, str]] = {}
    # Optional v2 fields worth having in a warehouse; they cost nothing extra.
    include_fields: t.ClassVar[tuple[str, ...]] = ()
    # The endpoint's own page-size cap, where it is below Pipedrive's usual 500.
    max_page_size: t.ClassVar[int] = MAX_PAGE_SIZE
    # False for endpoints that answer everything in one response and take no paging parameters.
    paged: t.ClassVar[bool] = True
    # Incremental streams: name of the query parameter taking the bookmark.
    updated_since_param: t.ClassVar[str | None] = None
    sort_params: t.ClassVar[dict[str, str]] = {}
    # Set when Pipedrive refused the stream (402/403): it is skipped for the rest of the run.
    refused = False
    # False for helpers that read for the tap, not for the output (custom field
    # definitions, read in the middle of another stream): progress does not follow them.
    writes_records: t.ClassVar[bool] = True
    # Pipedrive lists the deleted rows too (deals and projects asked for status=deleted).
    lists_deleted_rows: t.ClassVar[bool] = False
    # Whether this run reads the stream in full and closes it with ACTIVATE_VERSION.
    closes_full_read = False
    # The field set ("deal", "person", ...) whose custom fields become typed columns;
    # declaring it is all a stream needs (see custom_fields.py).
    custom_fields_entity: t.ClassVar[str | None] = None

    @classmethod
    def enabled(cls, config: t.Mapping[str, t.Any]) -> bool:
        """Whether the settings let this stream exist at all (reading mail is opt-in)."""
        return True

    # --- URLs, headers, auth ------------------------------------------------------
    @property
    def url_base(self) -> str:
        return f"{self._tap.api_root}/api/{self.api_version}"  # type: ignore[attr-defined]

    @property
    def authenticator(self) -> t.Any:
        return self._tap.authenticator  # type: ignore[attr-defined]

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    @property
    def timeout(self) -> int:
        return int(self.config.get("request_timeout") or 300)

    @cached_property
    def page_size(self) -> int:
        return min(int(self.config.get("page_size") or MAX_PAGE_SIZE), self.max_page_size)

    @property
    def is_sorted(self) -> bool:
        # Incremental endpoints are asked for ascending update_time, so the bookmark
        # can advance (and the state can be resumed) after every page.
        return self.replication_key is not None

    @cached_property
    def coercions(self) -> CoercionLog:
        return CoercionLog(self.logger)

    # --- requests -------------------------------------------------------------------
    def get_new_paginator(self) -> BaseAPIPaginator | None:
        if not self.paged:
            return None
        return CursorPaginator() if self.api_version == "v2" else OffsetPaginator()

    def get_starting_replication_key_value(self, context: Context | None) -> t.Any:
        # A thread fetching pages ahead of the stream's turn uses the bookmark settled
        # for it on the main thread: the state entry is written only when the turn comes.
        pinned = self._tap.prefetcher.pinned_start(self, context)  # type: ignore[attr-defined]
        if pinned is not None:
            return pinned[0]
        return super().get_starting_replication_key_value(context)

    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        params: dict[str, t.Any] = dict(self.extra_params)
        if self.paged:
            params["limit"] = self.page_size
        if next_page_token is not None:
            params["cursor" if self.api_version == "v2" else "start"] = next_page_token
        if self.include_fields:
            params["include_fields"] = ",".join(self.include_fields)
        if self.replication_key and self.updated_since_param:
            params.update(self.sort_params)
            since = self.get_starting_timestamp(context)
            if since is not None:
                params[self.updated_since_param] = format_timestamp(since)
        return params

    @property
    def requests_session(self) -> requests.Session:
        # No redirects, the proxy and CA environment, size and time caps (see transport.py).
        if not isinstance(self._requests_session, TransportSession):
            self._requests_session = TransportSession()
        return self._requests_session

    def _request(
        self,
        prepared_request: requests.PreparedRequest,
        context: Context | None,
    ) -> requests.Response:
        if not self._tap.budget.fits(endpoint_cost(prepared_request.url or "")):  # type: ignore[attr-defined]
            self._refuse_over_budget(context)
        # Pace before sending, so the burst window is never overrun (see ratelimit.py).
        self._tap.rate_limiter.before_request()  # type: ignore[attr-defined]
        self._tap.progress.request_sent(self.name)  # type: ignore[attr-defined]
        try:
            return super()._request(prepared_request, context)
        except requests.exceptions.ConnectionError as exc:
            if not _is_refused(exc):
                raise
            # The retry decorator sends the same prepared request again: count on it.
            refusals = getattr(prepared_request, "_pd_refusals", 0) + 1
            prepared_request._pd_refusals = refusals  # type: ignore[attr-defined]
            if refusals < REFUSED_CONNECTION_ATTEMPTS:
                raise
            host = urlparse(prepared_request.url or "").netloc
            msg = (
                f"Cannot connect to {host}: connection refused ({_attempts(refusals)}); "
                "check the api_url setting (or the api_domain written by the OAuth login)"
            )
            raise ServerUnreachable(msg) from None

    def _refuse_over_budget(self, context: Context | None) -> None:
        """Past the run's cap, send only what the stream being written needs to checkpoint.

        Pages fetched ahead for streams still to come would be paid for and never written;
        so would the next page of a stream that writes its state after every page (it
        stops at that state). A per-parent read or a full read goes on to its next STATE.
        """
        ahead = self._tap.prefetcher.fetching_ahead()  # type: ignore[attr-defined]
        per_parent = bool(context) and ("id" in context or "ids" in context)  # type: ignore[operator]
        if ahead or (self.replication_key and not per_parent):
            raise BudgetReached(f"Not sent: this run's token budget is spent (stream {self.name})")

    def _write_state_message(self) -> None:
        # Private SDK method, the one place every STATE message of a stream goes through:
        # each carries what the tap spent today, and a run past its cap stops right after
        # one, so the state covers exactly what was written.
        budget = self._tap.budget  # type: ignore[attr-defined]
        t.cast("dict[str, t.Any]", self.tap_state)[STATE_KEY] = budget.state_entry()
        super()._write_state_message()
        if not self._reading_one_parent and not budget.fits(self.next_request_cost):
            self._tap.prefetcher.stop()  # type: ignore[attr-defined]
            raise BudgetReached(self._tap.budget_stop_line(self))  # type: ignore[attr-defined]

    def budget_fits_parents(self, parents: int) -> bool:
        """Whether reading the children of ``parents`` more parents fits in the run's budget.

        Per-parent streams read a chunk of parents between two checkpoints: near the cap
        they checkpoint as soon as one more parent would not fit, so the run stops there.
        """
        per_request = max(1, int(getattr(self, "parents_per_request", 1)))
        calls = -(-parents // per_request)
        return self._tap.budget.fits(calls * self.next_request_cost)  # type: ignore[attr-defined]

    @cached_property
    def next_request_cost(self) -> int:
        """Tokens one more request of this stream costs (its main endpoint's cost)."""
        path = str(getattr(self, "path", "") or "").replace("{id}", "1")
        return endpoint_cost(f"{self.url_base}{path}")

    def request_records(self, context: Context | None) -> t.Iterable[dict]:
        if self.refused:
            return  # one warning per stream and run, not one per partition or parent
        try:
            yield from self._records_from_pages(context)
        except StreamUnavailable as exc:
            # Missing scope or plan feature: this stream is skipped, the sync goes on.
            self.refused = True
            self.logger.warning("Skipping stream %s: %s", self.name, exc)
        except RetriableAPIError as exc:
            msg = f"Gave up after {_attempts(self.backoff_max_tries())}: {exc}"
            raise PipedriveAPIError(msg) from None
        except requests.RequestException as exc:
            msg = (
                f"Gave up after {_attempts(self.backoff_max_tries())} on stream {self.name}: "
                f"{type(exc).__name__} talking to {host_of(self.url_base)}"
            )
            raise PipedriveAPIError(msg) from None

    def _records_from_pages(self, context: Context | None) -> t.Iterator[dict]:
        """The SDK's request loop, with pages fetched ahead in a background thread.

        The paginator still chooses every next page, but it runs as soon as a page has
        arrived (see prefetch.py), so the next request is in flight while this page's
        records are processed and written.
        """
        progress = self._tap.progress  # type: ignore[attr-defined]
        stats = self._progress
        if self.writes_records:
            progress.writing(stats)
        # The children of one parent: a STATE written after one of their pages still
        # points before that parent, so the run does not stop there (see
        # _write_state_message); it stops at the checkpoint after the parent.
        one_parent = bool(context) and ("id" in context or "ids" in context)  # type: ignore[operator]
        outer, self._reading_one_parent = self._reading_one_parent, one_parent
        try:
            yield from self._pages_read(context, progress, stats)
        except BudgetReached:
            # A request refused while fetching ahead: its stream's turn has come, and the
            # run ends before it (its state is where the previous run left it).
            raise BudgetReached(self._tap.budget_stop_line(self)) from None  # type: ignore[attr-defined]
        finally:
            self._reading_one_parent = outer

    _reading_one_parent = False

    def _pages_read(
        self, context: Context | None, progress: t.Any, stats: StreamProgress
    ) -> t.Iterator[dict]:
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            pages = 0
            budget = self._tap.budget  # type: ignore[attr-defined]
            for page in self._tap.prefetcher.pages(self, context):  # type: ignore[attr-defined]
                request_counter.increment()
                budget.page_written(request_cost(page.response.url, page.response.status_code))
                self.update_sync_costs(page.request, page.response, context)
                records = iter(self.parse_response(page.response))
                try:
                    first_record = next(records)
                except StopIteration:
                    if page.continue_if_empty:
                        continue
                    # The usual end of every list (per parent, for child streams): DEBUG.
                    self.logger.debug(
                        "Pagination stopped after %d pages: the last was empty", pages
                    )
                    return
                yield first_record
                yield from records
                self._report_nul_fields(page.response)
                pages += 1
                progress.page_done(stats)

    def validate_response(self, response: requests.Response) -> None:
        """Sort failures into retriable, fatal, and 'this stream is not allowed'."""
        self._tap.rate_limiter.observe(response)  # type: ignore[attr-defined]
        self.charge(response)
        status = response.status_code
        if status == HTTPStatus.UNAUTHORIZED:
            self._handle_unauthorized(response)
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            self._handle_throttle(response)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status in (408, 425):
            raise RetriableAPIError(self.response_error_message(response), response)
        if status == HTTPStatus.FORBIDDEN and _is_html(response):
            # Cloudflare answers clients that kept pushing after 429s with an HTML
            # 403: a block to back off from, not a permissions problem.
            raise RetriableAPIError(self.response_error_message(response), response)
        if status in (HTTPStatus.FORBIDDEN, HTTPStatus.PAYMENT_REQUIRED):
            message = self.response_error_message(response) + scope_hint(response.url)
            raise StreamUnavailable(message)
        if status >= HTTPStatus.BAD_REQUEST:
            raise PipedriveAPIError(self.response_error_message(response))
        try:
            # Bytes that are not UTF-8 hide inside rows the envelope decoder skips over;
            # caught here they are retried, later they could only end the run.
            response.content.decode("utf-8")
            # The envelope only: the rows are decoded by the thread writing them.
            body = response_head(response)
        except UnicodeDecodeError:
            msg = f"Malformed JSON from Pipedrive for {self._describe(response)}: not UTF-8"
            raise RetriableAPIError(msg, response) from None
        except JSONTooDeep:
            raise self._too_deep(response) from None
        except msgspec.ValidationError:
            body = None  # JSON, but not an object
        except msgspec.DecodeError:
            # A truncated or garbled body is a transport fault: ask again.
            msg = f"Malformed JSON from Pipedrive for {self._describe(response)}"
            raise RetriableAPIError(msg, response) from None
        if not isinstance(body, dict):
            msg = f"Unexpected JSON from Pipedrive for {self._describe(response)}: not an object"
            raise RetriableAPIError(msg, response)
        rows = body.get("data")
        kind = rows.kind if isinstance(rows, _UndecodedRows) else _json_type(rows)
        if kind not in ("list", "object", "null"):
            # Well-formed JSON of the wrong shape comes back the same when asked again.
            msg = (
                f"Unexpected JSON from Pipedrive for {self._describe(response)}: "
                f"data is a {kind}, not a list of rows"
            )
            raise PipedriveAPIError(msg)
        if _points_at_itself(body, response):
            # Following such a page would loop and stopping would lose the rest of the
            # list: ask for the same page again.
            msg = f"Empty page pointing at itself from Pipedrive for {self._describe(response)}"
            raise RetriableAPIError(msg, response)
        self._report_nul_fields(response)

    def charge(self, response: requests.Response) -> None:
        """Count what the response costs of the daily budget (every response passes here)."""
        cost = request_cost(response.url, response.status_code)
        budget = self._tap.budget  # type: ignore[attr-defined]
        budget.charge(cost)
        budget.observe_limit(header_number(response, "x-ratelimit-limit"))
        budget.observe_date(response.headers.get("Date"))
        self._tap.progress.charge(self.name, cost)  # type: ignore[attr-defined]

    def _too_deep(self, response: requests.Response) -> PipedriveAPIError:
        msg = (
            f"Unexpected JSON from Pipedrive for {self._describe(response)}: nested too deeply "
            "to read (real answers nest a few levels)"
        )
        return PipedriveAPIError(msg)

    def checked_rows(self, response: requests.Response, rows: t.Any) -> list[dict]:
        """The rows of a page, which must be objects (an object alone is one row)."""
        if rows is None:
            return []
        if isinstance(rows, dict):
            return [rows]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            kind = _json_type(rows) if not isinstance(rows, list) else "list holding non-objects"
            msg = (
                f"Unexpected JSON from Pipedrive for {self._describe(response)}: "
                f"data is a {kind}, not a list of rows"
            )
            raise PipedriveAPIError(msg)
        return rows

    def page_body(self, response: requests.Response) -> dict[str, t.Any]:
        """The decoded page (its envelope was checked in validate_response)."""
        try:
            return response_json(response)
        except JSONTooDeep:
            # The decode of the envelope, on another thread, had more stack to spare.
            raise self._too_deep(response) from None

    def _report_nul_fields(self, response: requests.Response) -> None:
        # Once per response, after its rows were decoded (that is when NUL is removed).
        for field in response.__dict__.pop("_pipedrive_nul_fields", ()):
            self.coercions.coerced(field, "text with NUL characters", "text without them")

    def _handle_unauthorized(self, response: requests.Response) -> None:
        auth = self.authenticator
        sent = (response.request.headers.get("Authorization") or "").removeprefix("Bearer ")
        if isinstance(auth, PipedriveOAuthAuthenticator) and not getattr(
            response.request, "_pd_retried", False
        ):
            # One retry with a fresh token; a second 401 is final.
            auth.invalidate(sent or None)
            response.request._pd_retried = True  # type: ignore[attr-defined]
            raise RetriableAPIError(self.response_error_message(response), response)
        # The cause first: whatever the request was for, the credentials are at fault.
        cause = {
            "APIKeyAuthenticator": "Pipedrive rejected the API token: check the api_token "
            "setting (TAP_PIPEDRIVE_API_TOKEN)",
            "BearerTokenAuthenticator": "Pipedrive rejected the token of the access_token "
            "setting: the access_token has expired or was revoked (set client_id, "
            "client_secret and refresh_token to have it refreshed)",
        }.get(
            type(auth).__name__,
            "Pipedrive rejected the OAuth access token even after a refresh: check the "
            "client_id and refresh_token settings, or run `tap-pipedrive --login` again",
        )
        raise CredentialsRejected(f"{cause}. {self.response_error_message(response)}")

    def _handle_throttle(self, response: requests.Response) -> None:
        remaining = header_number(response, "x-ratelimit-remaining")
        streak = self._tap.rate_limiter.note_429()  # type: ignore[attr-defined]
        if (remaining is not None and remaining >= 1) or streak >= BURST_429_LIMIT:
            msg = (
                "Pipedrive's daily API token budget is used up (429 while the burst window "
                "still had room). The state is kept; the budget resets at midnight in the "
                "Pipedrive company's time zone. Run again after the reset."
            )
            raise DailyBudgetExhausted(msg)
        reset_seconds(response)  # a wait too long to be the burst window ends the run here
        raise RetriableAPIError(self.response_error_message(response), response)

    def response_error_message(self, response: requests.Response) -> str:
        detail = ""
        if not _is_html(response):
            try:
                body = response_json(response)
            except (msgspec.DecodeError, ValueError):
                body = None
            if isinstance(body, dict):
                detail = str(body.get("error") or body.get("message") or "")
                if body.get("error_info"):
                    detail = f"{detail} ({body['error_info']})"
        else:
            detail = "HTML error page"
        # API text in the one line that may end the run: no line breaks, no escape codes.
        detail = escape_controls(" ".join(detail.split()))[:200]
        return f"{response.status_code} from Pipedrive for {self._describe(response)}" + (
            f": {detail}" if detail else ""
        )

    def _describe(self, response: requests.Response) -> str:
        # The path only: query strings are not logged, whatever they hold.
        return f"GET {urlparse(response.url).path} (stream {self.name})"

    # --- retries --------------------------------------------------------------------
    def request_decorator(self, func: t.Callable) -> t.Callable:
        """The SDK's retry decorator, minus backoff's own log lines.

        Retries are reported by ``backoff_handler`` and giving up by the one error line of
        ``request_records``; backoff's lines would add a second error line quoting the URL
        with its query string.
        """
        return backoff.on_exception(
            self.backoff_wait_generator,
            RETRIED_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Wait as long as Pipedrive says (x-ratelimit-reset), else exponentially."""
        attempt = 0
        exception = yield 0.0
        while True:
            attempt += 1
            exception = yield self._seconds_before_retry(exception, attempt)

    def _seconds_before_retry(self, exception: BaseException | None, attempt: int) -> float:
        response = getattr(exception, "response", None)
        if response is not None:
            if response.status_code == HTTPStatus.UNAUTHORIZED:
                return 0.0
            if response.status_code == HTTPStatus.TOO_MANY_REQUESTS:
                # Checked (finite, >= 0, not too long) when the 429 was handled.
                reset = header_number(response, "x-ratelimit-reset")
                wait = min(reset if reset is not None else 2.0, MAX_RESET_SECONDS)
                return wait + random.uniform(0, 0.25)
        base = float(self.config.get("retry_base_seconds", 1.0))
        return min(base * 2 ** (attempt - 1), 60.0) * random.uniform(0.8, 1.2)

    def backoff_jitter(self, value: float) -> float:
        return value  # jitter is applied in _seconds_before_retry

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8))

    def backoff_handler(self, details: t.Any) -> None:
        exception = details.get("exception")
        # The tap's own messages say what was wrong (malformed JSON, an HTML block page...);
        # for transport errors the type is enough (their text would repeat the query string).
        reason = (
            str(exception) if isinstance(exception, RetriableAPIError) else type(exception).__name__
        )
        self.logger.warning(
            "Retrying in %.1fs (attempt %d): %s",
            details.get("wait") or 0.0,
            details.get("tries"),
            reason,
        )

    # --- records -----------------------------------------------------------------------
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        yield from self.checked_rows(response, self.page_body(response).get("data"))
        if self.replication_key:
            # Every row of this page has been processed by now: emitting the state here
            # makes the sync resumable after each page, and a failure on the next
            # request cannot lose the bookmark of rows already delivered.
            self._write_state_message()

    def _generate_record_messages(self, record: dict) -> t.Generator[RecordMessage, None, None]:
        """The SDK's RECORD path with its per-record schema walks compiled away.

        Same steps as the SDK's: drop deselected properties, conform to the schema, apply
        stream maps. Deselection is skipped when nothing is deselected, and conformance
        uses a ``Conformer`` compiled once (see conform.py) instead of the SDK's walk.
        """
        self._progress.records += 1
        if self._has_deselected_properties:
            pop_deselected_record_properties(record, self.schema, self.mask)
        record = self._conformer(record)
        version = self._stream_version
        if version is not None and record.get(DELETED_AT) is not None:
            # A row Pipedrive lists as deleted: older than any read, so the next
            # activation retires it (hard_delete removes it).
            version = RETIRED_VERSION
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=version,
                    time_extracted=utc_now(),
                )

    @cached_property
    def _conformer(self) -> Conformer:
        return Conformer(self.effective_schema, self.logger)

    @cached_property
    def _progress(self) -> StreamProgress:
        return self._tap.progress.stream(self.name)  # type: ignore[attr-defined]

    @cached_property
    def _has_deselected_properties(self) -> bool:
        return not all(self.mask.values())

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        # Overridden (the SDK calls it once a stream's read, children included, is complete,
        # and never after a failed one): the moment to close a full read (see sweeps.py).
        if not state:
            close_full_read(self, refused=self._read_was_refused())
        super().finalize_state_progress_markers(state)

    def _read_was_refused(self) -> bool:
        """Whether Pipedrive refused this stream, or the parent stream its rows hang off."""
        stream: t.Any = self
        while stream is not None:
            if stream.refused:
                return True
            parent = stream.parent_stream_type
            stream = self._tap.streams.get(parent.name) if parent else None
        return False

    def log_sync_costs(self) -> None:
        # Called once per stream at the end of the run: the moment to sum up coercions too.
        super().log_sync_costs()
        self.coercions.summary()
        self._tap.progress.log_summary()  # type: ignore[attr-defined]

    @cached_property
    def _timestamp_paths(self) -> TimestampPaths:
        """Properties declared as date-time or date, at any depth (custom fields convert
        their own values, see custom_fields.py)."""
        return TimestampPaths(self.schema, skip=frozenset({CONTAINER}))

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        self._timestamp_paths.apply(row, self.coercions)
        if self.lists_deleted_rows and row.get("is_deleted"):
            # Retired in the target as soon as Pipedrive lists it as deleted, its last
            # values kept; deleted deals and projects are updated at their deletion.
            row[DELETED_AT] = row.get("update_time")
        if self.replication_key and self._skip_boundary_duplicate(row, context) is None:
            return None
        if self.custom_fields_entity is not None:
            layout_for(self).apply(row)
        return row

    # --- incremental boundary -----------------------------------------------------------------
    def _skip_boundary_duplicate(self, row: dict, context: Context | None) -> dict | None:
        """Drop rows the previous run already delivered at the bookmark's exact time.

        ``updated_since`` is inclusive, so the rows at the bookmark come back. The
        state remembers their ids (``boundary_ids``), and only those are skipped: a
        row updated again within the same second still comes through.
        """
        value = row.get(self.replication_key)
        if value is None:
            return row
        # Looked up once per partition, not per row (both lookups cost more than the rest).
        cached = self._boundary_context
        if cached is not None and cached[0] is context:
            state, start = cached[1], cached[2]
        else:
            state = self.get_context_state(context)
            found = self._boundary_start.get(_context_key(context))
            if found is None:
                boundary = frozenset(state.get("boundary_ids") or ())
                found = (state.get("replication_key_value"), boundary)
                self._boundary_start[_context_key(context)] = found
            start = found
            self._boundary_context = (context, state, start)
        bookmark, seen = start
        key = row.get(self.primary_keys[0])
        if value == bookmark and key in seen:
            return None
        current = state.get("replication_key_value")
        if current is None or value > current:
            state["boundary_ids"] = [key]
        elif value == current:
            state.setdefault("boundary_ids", []).append(key)
        return row

    @cached_property
    def _boundary_start(self) -> dict[str, tuple[t.Any, frozenset]]:
        return {}

    _boundary_context: tuple[t.Any, dict, tuple[t.Any, frozenset]] | None = None


def _context_key(context: Context | None) -> str:
    return json.dumps(dict(context or {}), sort_keys=True, default=str)


def _is_refused(exc: BaseException) -> bool:
    """Whether a ConnectionRefusedError lies anywhere under a requests/urllib3 error."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending.extend(e for e in (*linked, *current.args) if isinstance(e, BaseException))
    return False


def _attempts(count: int) -> str:
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def _points_at_itself(body: dict, response: requests.Response) -> bool:
    """An empty page whose next cursor or offset is the very one just asked for."""
    if body.get("data"):
        return False
    additional = body.get("additional_data")
    if not isinstance(additional, dict):
        return False
    asked = parse_qs(urlparse(response.request.url or "").query)
    cursor = additional.get("next_cursor")
    if cursor is not None:
        return [str(cursor)] == asked.get("cursor")
    pagination = additional.get("pagination") or additional
    if not isinstance(pagination, dict) or not pagination.get("more_items_in_collection"):
        return False
    next_start = pagination.get("next_start")
    return next_start is None or str(next_start) == (asked.get("start") or ["0"])[0]


def _is_html(response: requests.Response) -> bool:
    return "html" in (response.headers.get("content-type") or "").lower()


class V1Stream(PipedriveStream):
    """An API v1 endpoint (offset paging, or a single page)."""

    api_version = "v1"


class IncrementalV2Stream(PipedriveStream):
    """A v2 list that filters on ``updated_since`` and sorts by ``update_time``."""

    replication_key = "update_time"
    updated_since_param = "updated_since"
    sort_params: t.ClassVar[dict[str, str]] = {"sort_by": "update_time", "sort_direction": "asc"}


class ArchivableMixin(PipedriveStream):
    """Entities whose archived rows live behind a second endpoint with the same shape.

    Since 2025-07-15 Pipedrive's normal lists leave archived rows out. Both lists
    feed one stream; each is a partition with its own bookmark. The partition key is the
    record's own ``is_archived`` property, so the SDK finds nothing to add to the rows.
    """

    archived_path: t.ClassVar[str]

    @property
    def partitions(self) -> list[dict] | None:
        return [{"is_archived": False}, {"is_archived": True}]

    def get_url(self, context: Context | None) -> str:
        if context and context.get("is_archived"):
            return f"{self.url_base}{self.archived_path}"
        return super().get_url(context)

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        row.setdefault("is_archived", bool(context and context.get("is_archived")))
        return super().post_process(row, context)
