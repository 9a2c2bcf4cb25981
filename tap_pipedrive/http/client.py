"""``PipedriveClient``: the one HTTP client of a run, shared by every stream and thread.

It owns everything between a request description and the rows of its pages: the
session (transport.py), the shared authenticator, the pacer (pacer.py), the budget gate
and its bookkeeping, retries, the sorting of answers into retriable, fatal and "this
stream is not allowed", the envelope checks, and paging. Streams only say what to ask
for (a ``RequestSpec``) and get ``Page`` values back.
"""

from __future__ import annotations

import logging
import random
import typing as t
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlencode, urlparse

import backoff
import msgspec
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_pipedrive.budget import BudgetReached, endpoint_cost, request_cost
from tap_pipedrive.endpoints import scope_hint
from tap_pipedrive.errors import (
    CredentialsRejected,
    DailyBudgetExhausted,
    PipedriveAPIError,
    ServerUnreachable,
    StreamUnavailable,
)
from tap_pipedrive.http.pacer import MAX_RESET_SECONDS, header_number, reset_seconds
from tap_pipedrive.http.pages import (
    JSONTooDeep,
    Page,
    decode_json,
    describe,
    too_deep,
)
from tap_pipedrive.http.paging import (
    PaginatorFactory,
    SinglePagePaginator,
    points_at_itself,
)
from tap_pipedrive.http.transport import TransportSession, host_of
from tap_pipedrive.redact import escape_controls

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tap_pipedrive.budget import Budget
    from tap_pipedrive.http.pacer import RateLimiter
    from tap_pipedrive.progress import Progress

# Consecutive 429s after which throttling is taken to be the daily budget rather than
# the 2-second burst window (Pipedrive exposes no header for the daily budget).
BURST_429_LIMIT = 6
# Attempts at a host that refuses the connection outright. Nothing listens there (a wrong
# api_url, a service that is down), so the patient retries kept for timeouts and
# dropped connections would only delay the error by minutes.
REFUSED_CONNECTION_ATTEMPTS = 3
# What is retried: the SDK's list of transient failures.
RETRIED_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_GONE = (HTTPStatus.NOT_FOUND, HTTPStatus.GONE)
# Why the credentials were refused, by the kind of authenticator that sent them.
_REJECTED = {
    "APIKeyAuthenticator": "Pipedrive rejected the API token: check the api_token "
    "setting (TAP_PIPEDRIVE_API_TOKEN)",
    "BearerTokenAuthenticator": "Pipedrive rejected the token of the access_token "
    "setting: the access_token has expired or was revoked (set client_id, "
    "client_secret and refresh_token to have it refreshed)",
}
_REJECTED_OAUTH = (
    "Pipedrive rejected the OAuth access token even after a refresh: check the "
    "client_id and refresh_token settings, or run `tap-pipedrive --login` again"
)


@t.runtime_checkable
class RefreshingAuthenticator(t.Protocol):
    """An authenticator that can drop a token the API refused and fetch a new one."""

    def invalidate(self, rejected: str | None) -> None: ...


@dataclass(frozen=True)
class RequestSpec:
    """What to ask for: the first page's URL and query, how to page, and for whom.

    Built on the main thread from a stream's declaration and its settled bookmark; a
    background thread fetching ahead only reads it.
    """

    stream: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    paginator: PaginatorFactory = SinglePagePaginator
    # A per-parent request: a parent deleted since the list was read (404/410) is an
    # empty last page, not an error.
    missing_is_empty: bool = False
    # The stream writes its STATE after every page and stops there when the run's token
    # budget is spent: past the cap, no further page of it is asked for.
    stops_at_page_state: bool = False

    @property
    def path(self) -> str:
        return urlparse(self.url).path

    @property
    def cost(self) -> int:
        """Tokens one request of this spec costs."""
        return endpoint_cost(self.url)


def _never() -> bool:
    return False


@dataclass
class _Attempts:
    """What one page's attempts have learnt (kept per call, never on ``requests`` objects)."""

    tries: int = 0
    refused_connections: int = 0
    reauthorized: bool = False


class PipedriveClient:
    """Sends every request of a run and turns the answers into pages."""

    def __init__(
        self,
        *,
        api_root: str,
        authenticator: t.Callable[[requests.PreparedRequest], requests.PreparedRequest],
        pacer: RateLimiter,
        budget: Budget,
        progress: Progress,
        logger: logging.Logger,
        user_agent: str,
        timeout: float = 300,
        max_tries: int = 8,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self.api_root = api_root.rstrip("/")
        self.authenticator = authenticator
        self.pacer = pacer
        self.budget = budget
        self.progress = progress
        self.logger = logger
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_tries = max(1, int(max_tries))
        self.retry_base_seconds = float(retry_base_seconds)
        # No redirects, the proxy and CA environment, size and time caps (transport.py).
        self.session = TransportSession()
        # Built once: the policy is the client's, the facts of each page's tries are its own.
        self._send = backoff.on_exception(
            self._wait_generator,
            RETRIED_EXCEPTIONS,
            max_tries=self.max_tries,
            on_backoff=self._log_retry,
            jitter=None,  # applied in _seconds_before_retry
            logger=None,  # retries are logged by _log_retry, giving up by one error line
        )(self._fetch_once)

    def url(self, version: str, path: str) -> str:
        return f"{self.api_root}/api/{version}{path}"

    # --- pages -------------------------------------------------------------------------
    def pages(self, spec: RequestSpec, ahead: Callable[[], bool] = _never) -> Iterator[Page]:
        """The pages of one request spec, in order, each checked.

        A page's paging error is raised after the page itself has been yielded, so its
        rows are written first. ``ahead`` tells whether the pages are being fetched for a
        stream whose turn has not come (the budget gate refuses those past the cap).
        """
        paginator = spec.paginator()
        while not paginator.finished:
            page = self.fetch(spec, paginator.query(), ahead)
            page.continue_if_empty = paginator.continue_if_empty(page)
            if not page.continue_if_empty and not page.has_rows:
                yield page  # the end of the list: an empty page
                return
            error: PipedriveAPIError | None = None
            try:
                paginator.advance(page)
            except PipedriveAPIError as exc:
                error = exc
            if not paginator.finished:
                page.next_token = paginator.current_value
            yield page
            if error is not None:
                raise error

    def fetch(
        self, spec: RequestSpec, paging: dict[str, str], ahead: Callable[[], bool] = _never
    ) -> Page:
        """One page, retried on transient failures; raises one readable error otherwise."""
        attempts = _Attempts()
        try:
            page: Page = self._send(spec, paging, ahead, attempts)
            return page
        except RetriableAPIError as exc:
            msg = f"Gave up after {_attempts(attempts.tries)}: {exc}"
            raise PipedriveAPIError(msg) from None
        except requests.RequestException as exc:
            msg = (
                f"Gave up after {_attempts(attempts.tries)} on stream {spec.stream}: "
                f"{type(exc).__name__} talking to {host_of(self.api_root)}"
            )
            raise PipedriveAPIError(msg) from None

    def _fetch_once(
        self,
        spec: RequestSpec,
        paging: dict[str, str],
        ahead: Callable[[], bool],
        attempts: _Attempts,
    ) -> Page:
        if not self.budget.fits(spec.cost) and (ahead() or spec.stops_at_page_state):
            # Past the run's cap only what the stream being written needs to reach its
            # next STATE is sent: pages fetched ahead would be paid for and never written.
            msg = f"Not sent: this run's token budget is spent (stream {spec.stream})"
            raise BudgetReached(msg)
        # Pace before sending, so the burst window is never overrun (see pacer.py).
        self.pacer.before_request()
        self.progress.request_sent(spec.stream)
        attempts.tries += 1
        prepared = self._prepare(spec, paging)
        try:
            response = self.session.send(prepared, timeout=self.timeout)
        except requests.exceptions.ConnectionError as exc:
            if not _is_refused(exc):
                raise
            attempts.refused_connections += 1
            if attempts.refused_connections < REFUSED_CONNECTION_ATTEMPTS:
                raise
            msg = (
                f"Cannot connect to {host_of(spec.url)}: connection refused "
                f"({_attempts(attempts.refused_connections)}); check the api_url setting "
                "(or the api_domain written by the OAuth login)"
            )
            raise ServerUnreachable(msg) from None
        return self._read(spec, paging, response, attempts)

    def _prepare(self, spec: RequestSpec, paging: dict[str, str]) -> requests.PreparedRequest:
        query = urlencode([*spec.params, *paging.items()])
        request = requests.Request(
            "GET",
            spec.url + (f"?{query}" if query else ""),
            headers={
                "Accept": "application/json",
                "User-Agent": self.user_agent,
            },
        )
        return self.authenticator(self.session.prepare_request(request))

    # --- answers ---------------------------------------------------------------------------
    def _read(
        self,
        spec: RequestSpec,
        paging: dict[str, str],
        response: requests.Response,
        attempts: _Attempts,
    ) -> Page:
        """Sort an answer into a page, a retry, a refusal of the stream, or the end."""
        self.pacer.observe(response)
        status = response.status_code
        path = spec.path
        facts: dict[str, t.Any] = {
            "asked": paging,
            "attempts": attempts.tries,
            "elapsed": response.elapsed.total_seconds(),
        }
        if spec.missing_is_empty and status in _GONE:
            # The parent was deleted after the list was read: nothing left to read.
            return Page(
                path=path,
                status=status,
                body=b"",
                stream=spec.stream,
                gone=True,
                _decoded={},
                **facts,
            )
        cost = self._charge(spec, response)
        if status == HTTPStatus.UNAUTHORIZED:
            self._unauthorized(spec, response, attempts)
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            self._throttled(spec, response)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status in (408, 425):
            raise RetriableAPIError(self.error_message(spec, response), response)
        if status == HTTPStatus.FORBIDDEN and _is_html(response):
            # Cloudflare answers clients that kept pushing after 429s with an HTML
            # 403: a block to back off from, not a permissions problem.
            raise RetriableAPIError(self.error_message(spec, response), response)
        if status in (HTTPStatus.FORBIDDEN, HTTPStatus.PAYMENT_REQUIRED):
            raise StreamUnavailable(self.error_message(spec, response) + scope_hint(spec.url))
        if status >= HTTPStatus.BAD_REQUEST:
            raise PipedriveAPIError(self.error_message(spec, response))
        where = describe(path, spec.stream)
        body = response.content
        try:
            # Bytes that are not UTF-8 hide inside rows the envelope decoder skips over;
            # caught here they are retried, later they could only end the run.
            body.decode("utf-8")
            page = Page.read(path, status, body, stream=spec.stream, cost=cost, **facts)
        except UnicodeDecodeError:
            msg = f"Malformed JSON from Pipedrive for {where}: not UTF-8"
            raise RetriableAPIError(msg, response) from None
        except JSONTooDeep:
            raise too_deep(where) from None
        except msgspec.ValidationError:
            # JSON, but not an object.
            msg = f"Unexpected JSON from Pipedrive for {where}: not an object"
            raise RetriableAPIError(msg, response) from None
        except msgspec.DecodeError:
            # A truncated or garbled body is a transport fault: ask again.
            msg = f"Malformed JSON from Pipedrive for {where}"
            raise RetriableAPIError(msg, response) from None
        if page.rows_kind not in ("list", "object", "null"):
            # Well-formed JSON of the wrong shape comes back the same when asked again.
            msg = (
                f"Unexpected JSON from Pipedrive for {where}: "
                f"data is a {page.rows_kind}, not a list of rows"
            )
            raise PipedriveAPIError(msg)
        if points_at_itself(page):
            # Following such a page would loop and stopping would lose the rest of the
            # list: ask for the same page again.
            msg = f"Empty page pointing at itself from Pipedrive for {where}"
            raise RetriableAPIError(msg, response)
        return page

    def _charge(self, spec: RequestSpec, response: requests.Response) -> int:
        """Count what the answer costs of the daily budget (every answer passes here)."""
        cost = request_cost(response.url, response.status_code)
        self.budget.charge(cost)
        self.budget.observe_limit(header_number(response, "x-ratelimit-limit"))
        self.budget.observe_date(response.headers.get("Date"))
        self.progress.charge(spec.stream, cost)
        return cost

    def _unauthorized(
        self, spec: RequestSpec, response: requests.Response, attempts: _Attempts
    ) -> None:
        auth = self.authenticator
        sent = (response.request.headers.get("Authorization") or "").removeprefix("Bearer ")
        if isinstance(auth, RefreshingAuthenticator) and not attempts.reauthorized:
            # One retry with a fresh token; a second 401 is final.
            auth.invalidate(sent or None)
            attempts.reauthorized = True
            raise RetriableAPIError(self.error_message(spec, response), response)
        # The cause first: whatever the request was for, the credentials are at fault.
        cause = _REJECTED.get(type(auth).__name__, _REJECTED_OAUTH)
        raise CredentialsRejected(f"{cause}. {self.error_message(spec, response)}")

    def _throttled(self, spec: RequestSpec, response: requests.Response) -> None:
        remaining = header_number(response, "x-ratelimit-remaining")
        streak = self.pacer.note_429()
        if (remaining is not None and remaining >= 1) or streak >= BURST_429_LIMIT:
            msg = (
                "Pipedrive's daily API token budget is used up (429 while the burst window "
                "still had room). The state is kept; the budget resets at midnight in the "
                "Pipedrive company's time zone. Run again after the reset."
            )
            raise DailyBudgetExhausted(msg)
        reset_seconds(response)  # a wait too long to be the burst window ends the run here
        raise RetriableAPIError(self.error_message(spec, response), response)

    @staticmethod
    def error_message(spec: RequestSpec, response: requests.Response) -> str:
        detail = ""
        if not _is_html(response):
            try:
                body = decode_json(response.content)
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
        return f"{response.status_code} from Pipedrive for {describe(spec.path, spec.stream)}" + (
            f": {detail}" if detail else ""
        )

    # --- retries -------------------------------------------------------------------------
    def _wait_generator(self) -> t.Generator[float, t.Any, None]:
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
        base = self.retry_base_seconds
        exponential: float = base * 2 ** (attempt - 1)
        return min(exponential, 60.0) * random.uniform(0.8, 1.2)

    def _log_retry(self, details: t.Any) -> None:
        spec: RequestSpec = details["args"][0]  # _fetch_once's first argument
        exception = details.get("exception")
        # The tap's own messages say what was wrong (malformed JSON, an HTML block page...);
        # for transport errors the type is enough (their text would repeat the query string).
        reason = (
            str(exception) if isinstance(exception, RetriableAPIError) else type(exception).__name__
        )
        self.logger.getChild(spec.stream).warning(
            "Retrying in %.1fs (attempt %d): %s",
            details.get("wait") or 0.0,
            details.get("tries"),
            reason,
        )


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


def _is_html(response: requests.Response) -> bool:
    return "html" in (response.headers.get("content-type") or "").lower()
